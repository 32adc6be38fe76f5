"""NaturalGradientSVI on a subsampled plate that holds no latent site (both backends)."""

from __future__ import annotations

import numpy as np
import pytest
from pyroapi import distributions as dist
from pyroapi import pyro

import models
from models import ZooModel
from ppl_vi.core import expfam


def _global_mean(x) -> None:
    """Only an observation in the plate: no local latent site."""
    m = pyro.sample("m", dist.Normal(0.0, 10.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(m, 1.0), obs=x)


_GLOBAL_MEAN = ZooModel("global_mean", "test model", _global_mean, ("m",), True, "exact", lambda seed: {})


def test_plate_without_local_sites_steps_to_the_exact_posterior(backend):
    """Step size 1 on the full batch gives the conjugate posterior; minibatch runs work."""
    x = 2.0 + np.random.default_rng(0).standard_normal(200)
    exact_loc = x.sum() / (x.size + 0.01)
    data = models.to_backend({"x": x}, backend)
    model = _GLOBAL_MEAN.model(backend)
    if backend == "numpyro":
        import jax

        from ppl_vi.numpyro import NaturalGradientSVI

        state = (ngsvi := NaturalGradientSVI(model, local_plate="data")).init(jax.random.PRNGKey(0), **data)
        run = lambda svi: svi.run(jax.random.PRNGKey(1), num_epochs=2, **data)  # noqa: E731
    else:
        import torch

        from ppl_vi.pyro import NaturalGradientSVI

        torch.manual_seed(0)
        state = (ngsvi := NaturalGradientSVI(model, local_plate="data")).init(**data)
        run = lambda svi: svi.run(num_epochs=2, **data)  # noqa: E731
    state = ngsvi.update(state, np.arange(x.size), rho=1.0)
    params = expfam.family("Normal").params_from_natural(state.natural["m"])
    assert float(params["loc"]) == pytest.approx(exact_loc, rel=1e-10)
    assert float(params["scale"]) == pytest.approx((x.size + 0.01) ** -0.5, rel=1e-10)
    result = run(NaturalGradientSVI(model, local_plate="data", batch_size=20))
    assert abs(float(result.posterior["m"].loc) - exact_loc) < 0.3
