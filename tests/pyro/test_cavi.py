"""Pyro CAVI: init/update, restarts, guide with Predictive, samples, ArviZ, plates."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive, Trace_ELBO

import models
from ppl_vi.pyro import CAVI


def beta_bernoulli(x, scale=1.0, mask=None):
    p = pyro.sample("p", dist.Beta(2.0, 3.0))
    with pyro.plate("data", x.shape[0]), poutine.scale(scale=scale), poutine.mask(mask=True if mask is None else mask):
        pyro.sample("x", dist.Bernoulli(p), obs=x)


def test_init_update_match_run():
    zoo = models.get("normal_gamma")
    data = zoo.data("pyro", seed=0)
    cavi = CAVI(zoo.pyro_model)
    state = cavi.init(**data)
    elbos = []
    for _ in range(20):
        state, info = cavi.update(state)
        elbos.append(float(info.elbo))
    result = cavi.run(**data, tol=1e-14, num_steps=20)
    np.testing.assert_allclose(elbos[-1], result.elbo[-1], rtol=1e-12)
    assert state.step == 20


def test_plate_scale_and_mask_are_honoured():
    x = torch.tensor([1.0, 0.0, 1.0, 1.0])
    tiled = CAVI(beta_bernoulli).run(x.repeat(3))
    scaled = CAVI(beta_bernoulli).run(x, scale=3.0)
    torch.testing.assert_close(scaled.posterior["p"].concentration1, tiled.posterior["p"].concentration1)
    torch.testing.assert_close(scaled.posterior["p"].concentration0, tiled.posterior["p"].concentration0)
    masked = CAVI(beta_bernoulli).run(x, mask=torch.tensor([True, False, True, False]))
    assert float(masked.posterior["p"].concentration1) == 4.0
    assert float(masked.posterior["p"].concentration0) == 3.0


def test_subsampled_plate_is_scaled():
    """A plate with a fixed subsample scales the likelihood by N / B, as Pyro's SVI does."""

    def model(x):
        p = pyro.sample("p", dist.Beta(2.0, 3.0))
        with pyro.plate("data", 8, subsample=torch.arange(4)) as idx:
            pyro.sample("x", dist.Bernoulli(p), obs=x[idx])

    x = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    result = CAVI(model).run(x)
    assert float(result.posterior["p"].concentration1) == pytest.approx(2.0 + 2 * 3.0)
    assert float(result.posterior["p"].concentration0) == pytest.approx(3.0 + 2 * 1.0)


def test_elbo_has_trace_elbo_constants():
    zoo = models.get("normal_gamma")
    data = zoo.data("pyro", seed=0)
    cavi = CAVI(zoo.pyro_model)
    result = cavi.run(**data)
    pyro.set_rng_seed(1)
    loss = Trace_ELBO(num_particles=5000, vectorize_particles=True, max_plate_nesting=1).loss(
        zoo.pyro_model, cavi.guide(result), **data
    )
    np.testing.assert_allclose(-loss, result.elbo[-1], atol=0.1)


@pytest.mark.filterwarnings("ignore:Singular sample detected")  # torch Wishart.rsample retries
def test_restarts_guide_predictive_samples_and_inference_data():
    zoo = models.get("bayesian_gmm")
    data = zoo.data("pyro", seed=0, num_data=90)
    pyro.set_rng_seed(0)
    cavi = CAVI(zoo.pyro_model, num_restarts=2)
    result = cavi.run(**data)
    assert result.restart_elbos.shape == (2,)
    assert result.elbo[-1] == pytest.approx(result.restart_elbos.max())
    draws = cavi.sample_posterior(result, 30)
    assert draws["locs"].shape == (30, 3, 2) and draws["assignment"].shape == (30, 90)
    out = Predictive(zoo.pyro_model, guide=cavi.guide(result), num_samples=30, return_sites=["locs", "x"])(**data)
    assert out["locs"].shape == (30, 3, 2)
    torch.testing.assert_close(out["locs"].mean(0), result.posterior["locs"].loc, atol=0.2, rtol=0.0)
    idata = result.to_inference_data(num_samples=50)
    assert dict(idata.posterior.sizes)["draw"] == 50
    assert set(idata.posterior.data_vars) == {"weights", "precisions", "locs", "assignment"}


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_restarts"):
        CAVI(beta_bernoulli, num_restarts=0)
    with pytest.raises(RuntimeError, match="init"):
        CAVI(beta_bernoulli).update(None)


def test_enumerated_bernoulli_mixture_updates_are_the_cavi_formulas():
    """``z_n ~ Bernoulli(p)`` selecting ``locs[z_n]``: at convergence q(p) and q(locs)
    satisfy their closed-form CAVI updates given the responsibilities r_n = q(z_n = 1)."""

    def model(x):
        p = pyro.sample("p", dist.Beta(1.0, 1.0))
        with pyro.plate("components", 2):
            locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(p), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(locs[z.long()], 1.0), obs=x)

    rng = np.random.default_rng(0)
    x = torch.as_tensor(np.concatenate([rng.normal(-3, 1, 30), rng.normal(4, 1, 20)]))
    pyro.set_rng_seed(0)
    result = CAVI(model).run(x, tol=1e-13)
    r = result.posterior["z"].probs
    torch.testing.assert_close(result.posterior["p"].concentration1, 1.0 + r.sum())
    torch.testing.assert_close(result.posterior["p"].concentration0, 1.0 + (1.0 - r).sum())
    weights = torch.stack([1.0 - r, r])
    torch.testing.assert_close(result.posterior["locs"].loc, (weights @ x) / (weights.sum(-1) + 0.01))
    assert float(r[:30].mean()) > 0.99 or float(r[:30].mean()) < 0.01
