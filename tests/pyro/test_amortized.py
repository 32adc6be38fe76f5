"""AmortizedGuide, vae_loss and amortization_gap (Pyro) on a linear-Gaussian VAE,
whose posterior p(z|x) and evidence p(x) are exact."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.stats as st
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

from ppl_vi.pyro import AmortizedGuide, amortization_gap, vae_loss

RNG = np.random.default_rng(11)
N, D, K, SIGMA = 10, 4, 2, 0.6
A = np.linalg.qr(RNG.normal(size=(D, K)))[0] * np.array([1.5, 0.8])  # orthogonal columns
BIAS = RNG.normal(size=D)
X = torch.as_tensor(RNG.normal(size=(N, D)) * 1.5 + BIAS)
COV = np.linalg.inv(np.eye(K) + A.T @ A / SIGMA**2)  # diagonal: mean field is exact
LOG_EVIDENCE = st.multivariate_normal(BIAS, A @ A.T + SIGMA**2 * np.eye(D)).logpdf(X.numpy())


class Encoder(torch.nn.Module):
    """Linear encoder; ``shift_offset``/``scale_factor`` move it off the exact posterior."""

    def __init__(self, shift_offset=0.0, scale_factor=1.0):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.as_tensor(A @ COV.T / SIGMA**2))
        self.shift = torch.nn.Parameter(torch.as_tensor(-BIAS @ A @ COV.T / SIGMA**2 + shift_offset))
        self.log_scale = torch.nn.Parameter(torch.as_tensor(np.log(scale_factor * np.sqrt(np.diag(COV)))))

    def forward(self, x):
        loc = x @ self.weight + self.shift
        return loc, self.log_scale.exp().expand(loc.shape)


class Decoder(torch.nn.Module):
    def forward(self, z):
        return z @ torch.as_tensor(A.T) + torch.as_tensor(BIAS)


def model(x, subsample_size=None):
    with pyro.plate("data", N, subsample_size=subsample_size) as idx:
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
        pyro.sample("x", dist.Normal(Decoder()(z), SIGMA).to_event(1), obs=x[idx])


def test_vae_loss_matches_trace_elbo_monte_carlo():
    pyro.set_rng_seed(0)
    encoder = Encoder(0.7, 2.0)
    guide = AmortizedGuide(model, encoder, "data")
    elbo = Trace_ELBO(num_particles=4000, vectorize_particles=True, max_plate_nesting=1)
    with torch.no_grad():
        host_mean = elbo.loss(model, guide, X)
        host = torch.stack([Trace_ELBO().loss(model, guide, X) * torch.ones(()) for _ in range(300)])
        ours = torch.stack([vae_loss(encoder, Decoder(), X, sigma=SIGMA) for _ in range(4000)])
    error = 4 * math.sqrt(host.var() / 4000 + ours.var() / 4000)
    assert abs(host_mean - ours.mean()) < error
    assert ours.var() < host.var()  # the analytic KL removes part of the variance


def test_minibatch_loss_at_the_exact_posterior_is_scaled_evidence():
    """With q = p(z|x) the host ELBO of any minibatch is (N/|B|) Σ_{i∈B} log p(x_i)."""
    guide = AmortizedGuide(model, Encoder(), "data")
    for _ in range(3):
        guide_trace = poutine.trace(guide).get_trace(X, 4)
        model_trace = poutine.trace(poutine.replay(model, guide_trace)).get_trace(X, 4)
        indices = guide_trace.nodes["data"]["value"].numpy()
        log_ratio = model_trace.log_prob_sum() - guide_trace.log_prob_sum()
        assert len(indices) == 4 and guide.num_data == N
        np.testing.assert_allclose(log_ratio.item(), N / 4 * LOG_EVIDENCE[indices].sum(), rtol=1e-10)


def test_guide_trains_with_host_svi_and_with_torch_optim():
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    guide = AmortizedGuide(model, Encoder(0.7, 2.0), "data")
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    first = np.mean([svi.step(X, 5) for _ in range(20)])
    last = np.mean([svi.step(X, 5) for _ in range(200)][-20:])
    assert last < first - 5.0
    assert "amortized_encoder$$$shift" in pyro.get_param_store()
    elbo_module = Trace_ELBO()(model, guide)
    assert {n for n, _ in elbo_module.named_parameters()} == {
        "guide.encoder.weight", "guide.encoder.shift", "guide.encoder.log_scale"
    }


def test_amortization_gap_recovers_the_exact_posterior():
    pyro.set_rng_seed(2)
    x = X[:4]
    gap = amortization_gap(Encoder(0.7, 2.0), Decoder(), x, sigma=SIGMA, num_steps=800, step_size=0.02,
                           num_particles=32, num_eval_particles=20_000, progress_bar=False)
    evidence = LOG_EVIDENCE[:4]
    assert torch.all(gap.gap > 0.5)
    np.testing.assert_allclose(gap.elbo_optimized, evidence, atol=0.05)
    np.testing.assert_allclose(gap.iwae, evidence, atol=0.02)
    with torch.no_grad():
        np.testing.assert_allclose(gap.loc, Encoder()(x)[0], atol=0.05)
    exact = amortization_gap(Encoder(), Decoder(), x, sigma=SIGMA, num_steps=50, progress_bar=False)
    assert torch.all(exact.gap.abs() < 0.02)


def test_errors_name_plate_site_and_shape():
    with pytest.raises(ValueError, match=r"no plate named 'batch'.*\['data'\]"):
        AmortizedGuide(model, Encoder(), "batch")(X)

    class Wrong(torch.nn.Module):
        def forward(self, x):
            return x[:, :K], torch.ones(x.shape[0], K + 1)

    with pytest.raises(ValueError, match=r"site 'z': expected \(loc, scale\) of shape \(10, 2\)"):
        AmortizedGuide(model, Wrong(), "data")(X)
    with pytest.raises(ValueError, match=r"site 'z': expected"):
        vae_loss(Wrong(), Decoder(), X, sigma=SIGMA)
    with pytest.raises(TypeError, match="encoder must be a torch.nn.Module"):
        AmortizedGuide(model, lambda x: x, "data")

    def with_global(x):
        pyro.sample("g", dist.Normal(0.0, 1.0))
        model(x)

    with pytest.raises(ValueError, match="latent site 'g' is outside plate 'data'"):
        AmortizedGuide(with_global, Encoder(), "data")(X)


def test_mlp_encoder_shapes_and_guide():
    from ppl_vi.pyro.amortized import MLPEncoder, local_site_shapes

    shapes = local_site_shapes(model, X, local_plate="data")
    assert shapes == {"z": (K,)}
    encoder = MLPEncoder(D, shapes, hidden=(16, 8))
    loc, scale = encoder(X)["z"]
    assert loc.shape == scale.shape == (N, K) and torch.all(scale > 0)
    guide = AmortizedGuide(model, encoder, "data")
    trace = poutine.trace(guide).get_trace(X, 4)
    assert trace.nodes["z"]["value"].shape == (4, K)
    torch.testing.assert_close(guide.median(X)["z"], loc.detach())
