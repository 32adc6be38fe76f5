"""DSM trains a network towards the data score; the seed notes' sign trains it away (math.md §3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppl_vi.pyro import dsm_loss, langevin

CENTRE, DATA_SD, SIGMA = torch.tensor([2.0, -1.0]), 0.3, 0.5


def _train(seed_sign: bool) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.SiLU(), torch.nn.Linear(32, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-2)
    # the seed notes' target (x − x0)/σ² is minus the correct one: train −net on the correct loss
    score_fn = (lambda x: -net(x)) if seed_sign else net
    for _ in range(300):
        x0 = CENTRE + DATA_SD * torch.randn(256, 2, generator=generator)
        optimizer.zero_grad()
        dsm_loss(score_fn, x0, SIGMA, generator).backward()
        optimizer.step()
    return net


@pytest.fixture(scope="module")
def probes() -> torch.Tensor:
    angles = torch.linspace(0, 2 * np.pi, 17)[:-1]
    ring = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return torch.cat([CENTRE + 0.5 * ring, CENTRE + 1.0 * ring])


def _cosines(net, probes):
    with torch.no_grad():
        learned = net(probes)
    towards_data = CENTRE - probes
    return torch.nn.functional.cosine_similarity(learned, towards_data, dim=1)


def test_correct_dsm_target_learns_a_score_pointing_at_the_data(probes):
    net = _train(seed_sign=False)
    assert bool(torch.all(_cosines(net, probes) > 0.9))
    exact = (CENTRE - probes) / (DATA_SD**2 + SIGMA**2)  # score of the σ-perturbed data N(c, (s²+σ²) I)
    with torch.no_grad():
        relative_error = torch.linalg.norm(net(probes) - exact, dim=1) / torch.linalg.norm(exact, dim=1)
    assert float(relative_error.mean()) < 0.2
    with torch.no_grad():
        init = CENTRE + 0.5 * torch.randn(500, 2, generator=torch.Generator().manual_seed(2))
        draws = langevin(net, init, 300, 0.02, torch.Generator().manual_seed(1)).position
    # Langevin with the learned score samples the perturbed data N(c, (s² + σ²) I)
    np.testing.assert_allclose(draws.mean(0).numpy(), CENTRE.numpy(), atol=0.15)
    np.testing.assert_allclose(draws.var(0).numpy(), DATA_SD**2 + SIGMA**2, rtol=0.25)


def test_seed_sign_learns_a_score_pointing_away_and_langevin_diverges(probes):
    net = _train(seed_sign=True)
    assert bool(torch.all(_cosines(net, probes) < -0.9))
    with torch.no_grad():
        draws = langevin(net, CENTRE + torch.zeros(500, 2), 300, 0.02, torch.Generator().manual_seed(1)).position
    assert float(torch.linalg.norm(draws - CENTRE, dim=1).median()) > 3.0
