"""NaturalGradientSVI: Pyro and NumPyro take the same steps on the same minibatch sequence.

Both start from the NumPyro start (converted to torch), both are fed the same minibatch
indices and the same Robbins–Monro schedule; natural parameters must agree to 1e-8
after several steps, and the exact ELBO after a full local pass to 1e-8 (relative).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

import models
from ppl_vi.core.ngsvi import epoch_batches
from ppl_vi.numpyro import NaturalGradientSVI as JaxNGSVI
from ppl_vi.pyro import NaturalGradientSVI as TorchNGSVI
from ppl_vi.pyro.ngsvi import NGSVIState


def _to_torch(tree):
    return {k: tuple(torch.as_tensor(np.asarray(a)) for a in v) for k, v in tree.items()}


@pytest.mark.parametrize("name, plate, sizes, batch", [("bayesian_gmm", "data", {"num_data": 120}, 25)])
def test_same_minibatch_sequence_same_steps(name, plate, sizes, batch):
    zoo = models.get(name)
    jax_ng = JaxNGSVI(zoo.numpyro_model, local_plate=plate, batch_size=batch)
    torch_ng = TorchNGSVI(zoo.pyro_model, local_plate=plate, batch_size=batch)
    jax_state = jax_ng.init(jax.random.PRNGKey(1), **zoo.data("numpyro", seed=3, **sizes))
    torch_ng.init(**zoo.data("pyro", seed=3, **sizes))
    torch_state = NGSVIState(_to_torch(jax_state.natural), _to_torch(jax_state.mean), 0)
    batches = epoch_batches(jax_ng.plate.size, batch, np.random.default_rng(0))
    for indices in batches + batches[:2]:
        jax_state = jax_ng.update(jax_state, indices)
        torch_state = torch_ng.update(torch_state, indices)
    for site, eta in jax_state.natural.items():
        for a, b in zip(eta, torch_state.natural[site]):
            np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-8, atol=1e-8, err_msg=site)
    _, jax_elbo = jax_ng.evaluate(jax_state)
    _, torch_elbo = torch_ng.evaluate(torch_state)
    assert jax_elbo == pytest.approx(torch_elbo, rel=1e-8)
