"""LocalGuide (Pyro): unbiased minibatch gradients, same optimum full/minibatch, errors."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger

from ppl_vi.pyro import LocalGuide

N, SIGMA, TAU = 12, 0.5, 0.7
RNG = np.random.default_rng(0)
X = torch.as_tensor(np.linspace(-1.0, 1.0, N))
Y = torch.as_tensor(1.5 * np.linspace(-1.0, 1.0, N) + RNG.normal(0.0, 0.8, N))


def regression(x, y, subsample_size=None):
    """Linear regression with a local offset z_i per datapoint (Gaussian target)."""
    w = pyro.sample("w", dist.Normal(0.0, 1.0))
    with pyro.plate("data", N, subsample_size=subsample_size) as idx:
        z = pyro.sample("z", dist.Normal(0.0, TAU))
        pyro.sample("y", dist.Normal(w * x[idx] + z, SIGMA), obs=y[idx])


def exact_mean_field_optimum():
    """Gaussian target: mean-field optimum = exact means, sd = 1/sqrt(diag precision)."""
    x, y = X.numpy(), Y.numpy()
    precision = np.zeros((N + 1, N + 1))
    precision[0, 0] = 1.0 + np.sum(x**2) / SIGMA**2
    precision[0, 1:] = precision[1:, 0] = x / SIGMA**2
    precision[1:, 1:] = np.eye(N) * (1.0 / TAU**2 + 1.0 / SIGMA**2)
    shift = np.concatenate([[np.sum(x * y)], y]) / SIGMA**2
    mean = np.linalg.solve(precision, shift)
    return mean, 1.0 / np.sqrt(np.diag(precision))


class FixedNoise(Messenger):
    """Plate subsample ``indices``; real guide sites ``loc + scale * noise``."""

    def __init__(self, noise, indices):
        super().__init__()
        self.noise, self.indices = noise, indices

    def _pyro_sample(self, msg):
        if msg["name"] == "data":
            msg["value"], msg["done"] = self.indices, True
        elif msg["name"] in self.noise and not msg["is_observed"]:
            eps = self.noise[msg["name"]]
            eps = eps[self.indices] if eps.dim() else eps
            msg["value"], msg["done"] = msg["fn"].loc + msg["fn"].scale * eps, True


def _data_plate(*data, subsample_size=None):
    return pyro.plate("data", N, subsample_size=subsample_size)


def test_minibatch_gradient_is_unbiased_over_a_partition():
    pyro.clear_param_store()
    guide = LocalGuide(regression, "data", N, create_plates=_data_plate)
    guide(X, Y)
    params = list(guide.parameters())
    with torch.no_grad():
        for p in params:
            p.add_(0.1 * torch.randn(p.shape))
    noise = {"w": torch.tensor(0.3), "z": torch.as_tensor(RNG.normal(size=N))}

    def grad(indices):
        size = len(indices) if len(indices) < N else None
        loss = Trace_ELBO().differentiable_loss(regression, FixedNoise(noise, indices)(guide), X, Y, size)
        return torch.autograd.grad(loss, params)

    full_grad = grad(torch.arange(N))
    batches = torch.as_tensor(RNG.permutation(N)).reshape(4, 3)  # a partition into 4 batches
    batch_grads = [grad(batch) for batch in batches]
    for k, full in enumerate(full_grad):
        mean = sum(g[k] for g in batch_grads) / len(batches)
        torch.testing.assert_close(mean, full, rtol=1e-10, atol=1e-10)
    # a step touches only the minibatch: zero gradient outside it
    loc_index = [n for n, _ in guide.named_parameters()].index("locs.z_unconstrained")
    outside = np.setdiff1d(np.arange(N), batches[0].numpy())
    assert torch.all(batch_grads[0][loc_index][outside] == 0)
    assert torch.all(batch_grads[0][loc_index][batches[0]] != 0)


def _fit_average(model, guide, *args, num_steps=1500, **kwargs):
    """Adam (torch.optim through ELBOModule) with a decaying step; tail-averaged params."""
    pyro.set_rng_seed(0)
    elbo = TraceMeanField_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)(model, guide)
    elbo(*args, **kwargs)
    optimizer = torch.optim.Adam(elbo.parameters(), lr=0.05)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.02 ** (1.0 / num_steps))
    tail = []
    for step in range(num_steps):
        optimizer.zero_grad()
        elbo(*args, **kwargs).backward()
        optimizer.step()
        schedule.step()
        if step >= num_steps * 3 // 4:
            tail.append({n: p.detach().clone() for n, p in guide.named_parameters()})
    return {n: torch.stack([t[n] for t in tail]).mean(0) for n in tail[0]}


@pytest.mark.parametrize("subsample_size", [None, 4])
def test_full_and_minibatch_reach_the_exact_mean_field_optimum(subsample_size):
    pyro.clear_param_store()
    guide = LocalGuide(regression, "data", N)
    params = _fit_average(regression, guide, X, Y, subsample_size=subsample_size)
    mean, sd = exact_mean_field_optimum()
    softplus = torch.nn.functional.softplus
    assert guide.local_sites == ("z",) and guide.global_sites == ("w",)
    np.testing.assert_allclose(params["locs.w_unconstrained"], mean[0], atol=0.04)
    np.testing.assert_allclose(softplus(params["scales.w_unconstrained"]), sd[0], atol=0.04)
    np.testing.assert_allclose(params["locs.z_unconstrained"], mean[1:], atol=0.06)
    np.testing.assert_allclose(softplus(params["scales.z_unconstrained"]), sd[1:], atol=0.06)


def test_sgd_step_moves_only_the_minibatch_and_guide_contract():
    pyro.clear_param_store()
    guide = LocalGuide(regression, "data", N)
    svi = SVI(regression, guide, pyro.optim.SGD({"lr": 0.01}), Trace_ELBO())
    svi.step(X, Y, subsample_size=3)
    before = guide.local_params()["z"][0].clone()
    svi.step(X, Y, subsample_size=3)
    loc, scale = guide.local_params()["z"]
    moved = torch.nonzero(loc != before).flatten()
    assert len(moved) == 3
    picked_loc, picked_scale = guide.local_params(moved)["z"]
    torch.testing.assert_close(picked_loc, loc[moved])
    torch.testing.assert_close(picked_scale, scale[moved])
    assert guide.median()["z"].shape == (N,)
    draws = Predictive(regression, guide=guide, num_samples=5)(X, Y, subsample_size=3)
    assert draws["y"].shape == (5, 3) and draws["w"].shape == (5, 1)


def test_errors_name_the_plate_and_the_size():
    with pytest.raises(ValueError, match=r"no plate named 'dta'.*\['data'\]"):
        LocalGuide(regression, "dta", N)(X, Y)
    with pytest.raises(ValueError, match=r"plate 'data' has full size 12 .* num_data=13"):
        LocalGuide(regression, "data", N + 1)(X, Y)
    with pytest.raises(ValueError, match="num_data must be a positive integer"):
        LocalGuide(regression, "data", 2.5)

