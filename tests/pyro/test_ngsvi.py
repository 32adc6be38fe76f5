"""Pyro NaturalGradientSVI: one full-batch step with rho = 1 is one ``CAVI.update``,
minibatch NGSVI reaches ``CAVI.run``'s optimum within 1%, bad input errors.

(The schedule, the minibatch weights' unbiasedness and backend parity are tested in
tests/numpyro/test_ngsvi.py and tests/conformance/test_ngsvi_parity.py.)
"""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch

import models
from ppl_vi.core.cavi_sweep import full_natural
from ppl_vi.pyro import CAVI, NaturalGradientSVI
from ppl_vi.pyro.ngsvi import NGSVIState

GMM = models.get("bayesian_gmm")


def _assert_same(a: dict, b: dict, names, tol=1e-10):
    for name in names:
        for x, y in zip(a[name], b[name]):
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=tol, atol=tol, err_msg=name)


def test_step_size_one_full_batch_is_one_cavi_update():
    data = GMM.data("pyro", seed=1, num_data=100)
    pyro.set_rng_seed(0)
    ngsvi = NaturalGradientSVI(GMM.pyro_model, local_plate="data", batch_size=100, step_size=lambda t: 1.0)
    ngsvi.init(**data)
    cavi = CAVI(GMM.pyro_model, acceleration=None)  # a plain sweep is what the step must equal
    assert cavi.plan(**data).order == ngsvi.globals + ngsvi.locals
    state1, _ = cavi.update(cavi.init())
    state2, _ = cavi.update(state1)
    # CAVI's state keeps no natural parameters for discrete sites; NGSVI's keeps them all
    eta1, eta2 = (full_natural(ngsvi.plan, s.natural, s.mean) for s in (state1, state2))
    stepped = ngsvi.update(NGSVIState(eta1, state1.mean, 0), np.arange(100))
    # the step's local pass keeps the already-optimal locals; the globals take CAVI's update,
    # and the next local pass is CAVI's local update
    _assert_same(stepped.natural, eta1, ngsvi.locals)
    _assert_same(stepped.natural, eta2, ngsvi.globals)
    evaluated, value = ngsvi.evaluate(stepped)
    _assert_same(evaluated.natural, eta2, ngsvi.locals)
    assert value == pytest.approx(float(state2.elbo), rel=1e-12)
    assert not torch.allclose(eta2["locs"][0], eta1["locs"][0])


def test_minibatch_ngsvi_reaches_cavi_optimum():
    data = GMM.data("pyro", seed=0, num_data=300)
    pyro.set_rng_seed(0)
    optimum = CAVI(GMM.pyro_model).run(**data, tol=1e-10).elbo[-1]
    pyro.set_rng_seed(0)
    result = NaturalGradientSVI(GMM.pyro_model, local_plate="data", num_data=300, batch_size=30).run(num_epochs=3, **data)
    assert list(result.elbo_steps) == [10, 20, 30]
    assert abs(result.elbo[-1] - optimum) < 0.01 * abs(optimum)
    assert result.elbo[-1] <= optimum + 1e-9 * abs(optimum)
    assert set(result.posterior) == {"weights", "precisions", "locs"}
    assert result.to_inference_data(num_samples=4).posterior["precisions"].shape == (1, 4, 3, 2, 2)


def test_bad_input_errors():
    data = GMM.data("pyro", seed=0, num_data=20)
    with pytest.raises(ValueError, match="'rows' is not a plate.*'components', 'data'"):
        NaturalGradientSVI(GMM.pyro_model, local_plate="rows", batch_size=5).init(**data)
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, num_data=20\]; got 0"):
        NaturalGradientSVI(GMM.pyro_model, batch_size=0).init(**data)
    with pytest.raises(RuntimeError, match="call init"):
        NaturalGradientSVI(GMM.pyro_model).update(None, np.arange(3))


def test_donating_update_writes_the_rows_in_place_with_the_same_result():
    data = GMM.data("pyro", seed=0, num_data=60)
    pyro.set_rng_seed(0)
    ngsvi = NaturalGradientSVI(GMM.pyro_model, local_plate="data", full_data_start=False)
    state = ngsvi.init(**data)
    assert ngsvi.batch_size == 1  # the default: 60 // 100 steps per epoch, at least 1
    copy = NGSVIState(*({n: tuple(a.clone() for a in arrays) for n, arrays in tree.items()} for tree in state[:2]), 0)
    batch = np.array([3, 17, 40, 59])
    fresh = ngsvi.update(state, batch)
    donated = ngsvi.update(copy, batch, donate=True)
    _assert_same(donated.natural, fresh.natural, ngsvi.locals + ngsvi.globals, tol=0.0)
    _assert_same(donated.mean, fresh.mean, ngsvi.locals + ngsvi.globals, tol=0.0)
    for name in ngsvi.locals:  # written into the donated tensors; the other state's are untouched
        assert donated.natural[name][0].data_ptr() == copy.natural[name][0].data_ptr()
        assert fresh.natural[name][0].data_ptr() != state.natural[name][0].data_ptr()
    assert not torch.equal(fresh.natural["assignment"][0], state.natural["assignment"][0])
