"""NaturalGradientSVI: Pyro and NumPyro take the same steps on the same minibatch sequence.

A hierarchical Normal model with a continuous local latent per group (``theta``, with
replicated observations in a nested plate) and two coupled globals (``mu``, and the
Gamma precision ``tau``) — a layout the GMM tests do not cover. Both backends start
from the NumPyro start (converted to torch) and are fed the same minibatches and the
same Robbins–Monro schedule; natural parameters agree to 1e-8 after more than an epoch,
and so does the exact ELBO.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import pytest
import torch

from ppl_vi.core.ngsvi import epoch_batches
from ppl_vi.numpyro import NaturalGradientSVI as JaxNGSVI
from ppl_vi.pyro import NaturalGradientSVI as TorchNGSVI
from ppl_vi.pyro.ngsvi import NGSVIState


def numpyro_model(x):
    mu = numpyro.sample("mu", ndist.Normal(0.0, 10.0))
    tau = numpyro.sample("tau", ndist.Gamma(2.0, 2.0))
    with numpyro.plate("groups", x.shape[1], dim=-1):
        theta = numpyro.sample("theta", ndist.Normal(mu, tau**-0.5))
        with numpyro.plate("replicates", x.shape[0], dim=-2):
            numpyro.sample("x", ndist.Normal(theta, 1.0), obs=x)


def pyro_model(x):
    mu = pyro.sample("mu", pdist.Normal(0.0, 10.0))
    tau = pyro.sample("tau", pdist.Gamma(2.0, 2.0))
    with pyro.plate("groups", x.shape[1], dim=-1):
        theta = pyro.sample("theta", pdist.Normal(mu, tau**-0.5))
        with pyro.plate("replicates", x.shape[0], dim=-2):
            pyro.sample("x", pdist.Normal(theta, 1.0), obs=x)


def _to_torch(tree):
    return {k: tuple(torch.tensor(np.array(a)) for a in v) for k, v in tree.items()}


def test_same_minibatch_sequence_same_steps():
    rng = np.random.default_rng(0)
    x = 1.5 + rng.normal(size=40)[None, :] * 0.8 + rng.normal(size=(3, 40))
    jax_ng = JaxNGSVI(numpyro_model, local_plate="groups", num_data=40, batch_size=8)
    torch_ng = TorchNGSVI(pyro_model, local_plate="groups", num_data=40, batch_size=8)
    jax_state = jax_ng.init(jax.random.PRNGKey(1), jnp.asarray(x))
    torch_ng.init(torch.tensor(x))
    assert jax_ng.locals == torch_ng.locals == ("theta",) and jax_ng.globals == torch_ng.globals == ("mu", "tau")
    torch_state = NGSVIState(_to_torch(jax_state.natural), _to_torch(jax_state.mean), 0)
    batches = epoch_batches(40, 8, np.random.default_rng(0))
    for indices in batches + batches[:3]:
        jax_state = jax_ng.update(jax_state, indices)
        torch_state = torch_ng.update(torch_state, indices)
    assert jax_state.step == torch_state.step == 8
    for site, eta in jax_state.natural.items():
        for a, b in zip(eta, torch_state.natural[site]):
            np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-8, atol=1e-8, err_msg=site)
    jax_state, jax_elbo = jax_ng.evaluate(jax_state)
    _, torch_elbo = torch_ng.evaluate(torch_state)
    assert jax_elbo == pytest.approx(torch_elbo, rel=1e-8)
    # the steps moved the globals towards the data (mu near the group mean)
    assert abs(float(jax_state.mean["mu"][0]) - x.mean()) < 0.5
