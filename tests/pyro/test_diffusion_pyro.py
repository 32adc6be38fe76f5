"""DiffusionChain / DiffusionELBO on Pyro: the program, its agreement with Trace_ELBO,
training through pyro.infer.SVI, sampling and errors."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from ppl_vi.core import schedules
from ppl_vi.core.diffusion import PROGRAM_STEPS_CONTINUOUS
from ppl_vi.pyro import DiffusionChain, DiffusionELBO

NUM_BINS, NUM_DIMS = 5, 3


class MLP(torch.nn.Module):
    def __init__(self, num_dims: int = NUM_DIMS, num_hidden: int = 16):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(num_dims + 1, num_hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(num_hidden, num_dims))

    def forward(self, z, gamma):
        return self.net(torch.cat([z, gamma[:, None] / 5], -1))


@pytest.fixture(autouse=True)
def _fresh_param_store():
    pyro.clear_param_store()
    torch.manual_seed(0)


def make_chain(kind: str = "linear", num_steps: int | None = 4) -> DiffusionChain:
    sched = schedules.learned(-5.0, 3.0, num_hidden=8) if kind == "learned" else getattr(schedules, kind)(-5.0, 3.0)
    return DiffusionChain(MLP(), sched, num_steps=num_steps, num_bins=NUM_BINS)


def test_program_sites_and_plates():
    chain = make_chain(num_steps=3)
    x = torch.randint(0, NUM_BINS, (6, NUM_DIMS))
    model_tr = pyro.poutine.trace(chain.model).get_trace(x)
    guide_tr = pyro.poutine.trace(chain.guide).get_trace(x)
    model_sites = [n for n, s in model_tr.nodes.items() if s["type"] == "sample"]
    guide_sites = [n for n, s in guide_tr.nodes.items() if s["type"] == "sample"]
    assert model_sites[1:] == ["z_3", "z_2", "z_1", "z_0", "x"]  # first is the plate
    assert guide_sites[1:] == ["z_0", "z_1", "z_2", "z_3"]
    assert model_tr.nodes["x"]["is_observed"]
    assert model_tr.nodes["z_1"]["fn"].event_shape == (NUM_DIMS,)
    assert any(n.startswith("diffusion_chain$$$denoiser") for n in model_tr.nodes)


def test_elbo_exposes_the_program_traces():
    chain = make_chain(num_steps=2)
    x = torch.randint(0, NUM_BINS, (4, NUM_DIMS))
    model_tr, guide_tr = DiffusionELBO()._get_trace(chain.model, chain.guide, (x,), {})
    assert {"z_0", "z_1", "z_2"} <= set(guide_tr.stochastic_nodes)
    assert torch.isfinite(model_tr.log_prob_sum() - guide_tr.log_prob_sum())


def test_continuous_chain_program_length():
    chain = make_chain(num_steps=None)
    x = torch.randint(0, NUM_BINS, (2, NUM_DIMS))
    assert "z_7" in pyro.poutine.trace(chain.guide).get_trace(x, num_steps=7).nodes
    with torch.no_grad():
        tr = pyro.poutine.trace(chain.model).get_trace(x)
    assert f"z_{PROGRAM_STEPS_CONTINUOUS}" in tr.nodes


@pytest.mark.parametrize("kind", ["linear", "learned"])
def test_trace_elbo_agrees_with_analytic_elbo(kind):
    """Generic Monte Carlo ELBO of (model, guide) = prior KL + Σ step KLs + reconstruction
    in expectation (math.md §2, latent chain)."""
    chain = make_chain(kind)
    batch, reps = 2000, 10
    x = torch.tensor([[0, 2, 4]]).expand(batch, NUM_DIMS)
    with torch.no_grad():
        generic = torch.tensor([Trace_ELBO().loss(chain.model, chain.guide, x) / batch for _ in range(reps)])
        analytic = torch.tensor([DiffusionELBO().loss(chain.model, chain.guide, x) / batch for _ in range(reps)])
    se = math.sqrt(generic.var() / reps + analytic.var() / reps)
    assert abs(generic.mean() - analytic.mean()) < 4 * se


def test_svi_training_lowers_the_loss_and_trains_the_schedule():
    chain = make_chain("learned")
    x = torch.randint(0, NUM_BINS, (64, NUM_DIMS))
    elbo = DiffusionELBO(num_particles=2)
    before = sum(elbo.loss(chain.model, chain.guide, x) for _ in range(5)) / 5
    svi = SVI(chain.model, chain.guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
    start = chain.schedule_params["w2_raw"].detach().clone()
    for _ in range(100):
        svi.step(x)
    after = sum(elbo.loss(chain.model, chain.guide, x) for _ in range(5)) / 5
    assert after < 0.8 * before
    assert not torch.equal(start, chain.schedule_params["w2_raw"])


def test_sample_and_bpd():
    chain = make_chain(num_steps=None)
    x = torch.randint(0, NUM_BINS, (32, NUM_DIMS))
    terms = chain.bpd_terms(x, num_particles=2)
    assert all(v.item() >= 0 for v in terms)
    assert chain.bpd(x, num_steps=10).item() > 0
    samples = chain.sample(5, num_steps=6)
    assert samples.shape == (5, NUM_DIMS) and samples.dtype == torch.int64
    assert samples.min() >= 0 and samples.max() < NUM_BINS


def test_errors():
    chain = make_chain()
    with pytest.raises(ValueError, match="site 'x' expects integer bin indices"):
        chain.bpd(torch.zeros(4, NUM_DIMS))
    with pytest.raises(ValueError, match=r"bin indices in \[0, 4\]"):
        chain.bpd(torch.full((4, NUM_DIMS), 5))
    with pytest.raises(ValueError, match="num_steps must be a positive int"):
        DiffusionChain(MLP(), schedules.linear(), num_steps=0)
    with pytest.raises(TypeError, match="Schedule"):
        DiffusionChain(MLP(), "cosine")
    with pytest.raises(ValueError, match="num_samples and a known num_dims"):
        make_chain().sample(3)
    with pytest.raises(TypeError, match="model and guide of one DiffusionChain"):
        DiffusionELBO().loss(lambda x: None, chain.guide, torch.zeros(2, NUM_DIMS, dtype=torch.long))


def test_boundary_constants_follow_the_schedule_buffers():
    """The cached γ(0)/γ(1) constants of a fixed schedule are recomputed after
    ``load_state_dict`` (in-place buffer change) and ``.float()`` (new buffers)."""
    chain = make_chain()
    assert chain.boundary().alpha_0.item() == pytest.approx(math.sqrt(1 / (1 + math.exp(-5.0))), rel=1e-12)
    state = chain.state_dict()
    state["schedule_gamma_min"] = torch.tensor(-2.0)
    chain.load_state_dict(state)
    assert chain.boundary().alpha_0.item() == pytest.approx(math.sqrt(1 / (1 + math.exp(-2.0))), rel=1e-12)
    assert chain.float().boundary().decoder_means.dtype == torch.float32


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_bins=1), "num_bins must be an int >= 2; got 1"),
    (dict(num_bins=4.5), "num_bins must be an int >= 2; got 4.5"),
    (dict(num_dims=0), "num_dims must be an int >= 1; got 0"),
])
def test_construction_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionChain(MLP(), schedules.linear(), 4, **kwargs)
