"""The objective's layout rewrites give the same values and sweeps as the plain forms.

Two rewrites of :mod:`ppl_vi.core.cavi_objective` change how enumerated terms are
computed, not what: an enumerated Categorical term read as gathered rows or columns in
the probabilities' layout (``_categorical_log_probs``), and a mixture's prior term
reading the child's total weights (:class:`~ppl_vi.core.cavi_enumeration.WeightSums`).
Each is switched off here and the results compared, in both backends; the tests also
check that the rewrites are taken on the models they were written for.
"""

from __future__ import annotations

import numpy as np
import pytest

import models
import ppl_vi.core.cavi_enumeration as enumeration
import ppl_vi.core.cavi_objective as objective
from ppl_vi.core.cavi_objective import elbo
from ppl_vi.core.cavi_sweep import sweep

_DATA = {"lda": {"num_docs": 12, "vocab_size": 15, "num_topics": 3, "doc_length": 6}, "bayesian_gmm": {"num_data": 40}}


def _engine(backend: str, name: str):
    """Plan and start of the zoo model ``name``; the backend's gradient and NumPy conversion."""
    zoo = models.get(name)
    data = zoo.data(backend, seed=3, **_DATA[name])
    if backend == "numpyro":
        import jax

        from ppl_vi.numpyro import CAVI

        cavi = CAVI(zoo.numpyro_model)
        state = cavi.init(jax.random.PRNGKey(0), **data)
        return cavi._plan, state, lambda fn, x: jax.grad(fn)(x), np.asarray
    import torch

    from ppl_vi.pyro import CAVI

    def grad(fn, x):
        x = tuple(t.detach().requires_grad_(True) for t in x)
        return torch.autograd.grad(fn(x), x)

    torch.manual_seed(0)
    cavi = CAVI(zoo.pyro_model)
    state = cavi.init(**data)
    return cavi._plan, state, grad, lambda t: t.detach().numpy()


def _swept(plan, eta, mu, grad, to_numpy) -> tuple:
    eta, mu, value = sweep(plan, eta, mu, grad)
    return float(to_numpy(elbo(plan, mu, eta))), float(to_numpy(value)), {n: [to_numpy(s) for s in mu[n]] for n in plan.latents}


@pytest.mark.parametrize("name", ["lda", "bayesian_gmm"])
def test_rewrites_change_no_value(backend, name, monkeypatch):
    plan, state, grad, to_numpy = _engine(backend, name)
    eta, mu, _ = sweep(plan, state.natural, state.mean, grad)  # a state with every q set (the start's are partly placeholders)
    taken = {"layout": 0, "shared": 0}
    layout, get = objective._categorical_log_probs, enumeration.WeightSums.get

    def counted_layout(*args):
        out = layout(*args)
        taken["layout"] += out is not None
        return out

    def counted_get(self, *args):
        out = get(self, *args)
        taken["shared"] += out is not None
        return out

    monkeypatch.setattr(objective, "_categorical_log_probs", counted_layout)
    monkeypatch.setattr(enumeration.WeightSums, "get", counted_get)
    full_before = float(to_numpy(elbo(plan, mu, eta)))
    counts = dict(taken)
    rewritten = _swept(plan, eta, mu, grad, to_numpy)
    if name == "lda":  # both forms: the prior's rows and the child's columns
        assert counts["layout"] == 2
    else:  # the prior term reads the child's total weights
        assert counts["shared"] == 1
    monkeypatch.setattr(objective, "_categorical_log_probs", lambda *args: None)
    monkeypatch.setattr(enumeration.WeightSums, "get", lambda self, *args: None)
    np.testing.assert_allclose(float(to_numpy(elbo(plan, mu, eta))), full_before, rtol=1e-12)
    plain = _swept(plan, eta, mu, grad, to_numpy)
    np.testing.assert_allclose(rewritten[0], plain[0], rtol=1e-12)
    np.testing.assert_allclose(rewritten[1], plain[1], rtol=1e-12)
    for n in plan.latents:
        for a, b in zip(rewritten[2][n], plain[2][n]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
