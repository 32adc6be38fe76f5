"""The minibatch plan (ppl_vi.core.ngsvi_batch) computes the masked full-data objective from
the batch rows alone.

``F_B`` is defined on the full plan with the local terms weighted ``N/|B|`` on the batch
and 0 elsewhere (``plate_weight`` + ``weighted_plan``, the old masking); the batch plan
(``batch_plan``, scaled ``N/|B|``) at the gathered rows must give the same value and the
same gradient with respect to the global mean parameters (those make the global step),
on a nested-plate LDA (a token's gather index points into its document's row of a local
latent, and is renumbered) and on the Gaussian mixture. Its arrays have ``|B|`` rows, so
the step's cost does not grow with ``N``. Dependencies that cross plate rows are refused.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import models
from benchmarks.ngsvi_lda import lda_docs
from ppl_vi.core import ngsvi as core
from ppl_vi.core.cavi_objective import expected_log_joint
from ppl_vi.core.ngsvi_batch import batch_plan, gather_rows
from ppl_vi.numpyro import NaturalGradientSVI


def _setup(model, plate, batch_size, **data):
    ngsvi = NaturalGradientSVI(model, local_plate=plate, batch_size=batch_size, full_data_start=False)
    state = ngsvi.init(jax.random.PRNGKey(0), **data)  # CAVI's random start: every local row differs
    return ngsvi, state


def _objectives(ngsvi, mu, indices):
    """``(F_B on the weighted full plan, F_B on the scaled batch plan)`` as functions of the global mean parameters."""
    plan, plate = ngsvi.plan, ngsvi.plate
    masked = core.weighted_plan(plan, plate, jnp.asarray(core.plate_weight(indices, plate)))
    idx = jnp.asarray(indices)
    batch = core.weighted_plan(batch_plan(plan, plate, idx), plate, plate.size / idx.shape[0])
    mu_batch = gather_rows(plan, plate, ngsvi.locals, mu, idx)

    def full_fn(globals_mu):
        return expected_log_joint(masked, {**mu, **globals_mu})

    def batch_fn(globals_mu):
        return expected_log_joint(batch, {**mu_batch, **globals_mu})

    return jax.jit(full_fn), jax.jit(batch_fn), batch


def _assert_batch_equals_masked(ngsvi, mu, indices):
    full_fn, batch_fn, batch = _objectives(ngsvi, mu, indices)
    globals_mu = {n: mu[n] for n in ngsvi.globals}
    full_value, batch_value = float(full_fn(globals_mu)), float(batch_fn(globals_mu))
    assert batch_value == pytest.approx(full_value, rel=1e-10, abs=1e-10)
    full_grad, batch_grad = jax.jit(jax.grad(full_fn))(globals_mu), jax.jit(jax.grad(batch_fn))(globals_mu)
    for name in ngsvi.globals:
        for a, b in zip(full_grad[name], batch_grad[name]):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-10, atol=1e-10, err_msg=name)
    # not trivially equal: another batch gives another value
    other = np.setdiff1d(np.arange(ngsvi.plate.size), indices)[: len(indices)]
    assert abs(float(_objectives(ngsvi, mu, other)[1](globals_mu)) - batch_value) > 1e-3
    return batch


def test_nested_plate_lda_batch_plan_equals_masked_full_plan():
    rng = np.random.default_rng(0)
    num_docs, length, batch_size = 23, 6, 5
    words = jnp.asarray(rng.integers(0, 9, size=(length, num_docs)))
    ngsvi, state = _setup(lda_docs, "docs", batch_size, words=words, num_topics=3, vocab_size=9, alpha=0.5, eta=0.3)
    assert ngsvi.locals == ("doc_topics", "assignment") and ngsvi.globals == ("topics",)
    indices = np.array([17, 3, 22, 8, 0])
    batch = _assert_batch_equals_masked(ngsvi, state.mean, indices)
    # O(|B|): every local array has |B| rows along the docs plate, none has N
    terms = {t.name: t for t in batch.terms}
    assert terms["words"].batch_shape == (3, length, batch_size)
    assert terms["words"].value[1][0].shape == (length, batch_size)
    assert terms["doc_topics"].batch_shape == (batch_size,)
    assert batch.latents["assignment"].batch_shape == (length, batch_size)
    assert batch.latents["doc_topics"].shape == (batch_size, 3)
    # the token -> document gather index is renumbered to batch positions
    np.testing.assert_array_equal(np.asarray(terms["assignment"].params["probs"].index), np.arange(batch_size))


@pytest.fixture(scope="module")
def gmm():
    zoo = models.get("bayesian_gmm")
    return _setup(zoo.numpyro_model, "data", 7, **zoo.data("numpyro", seed=0, num_data=40))


def test_gmm_batch_plan_equals_masked_full_plan(gmm):
    ngsvi, state = gmm
    batch = _assert_batch_equals_masked(ngsvi, state.mean, np.random.default_rng(1).permutation(40)[:7])
    x = next(t for t in batch.terms if t.name == "x")
    assert x.value[1][0].shape == (7, 2) and x.value[1][1].shape == (7, 2, 2) and x.batch_shape == (3, 7)


def hierarchical_regression(x, features, noise):
    """Global weights (one Gaussian block, a dense dependency), a local mean per group, per-row noise."""
    weights = numpyro.sample("weights", dist.Normal(0.0, 1.0).expand([features.shape[1]]).to_event(1))
    tau = numpyro.sample("tau", dist.Gamma(2.0, 2.0))
    with numpyro.plate("groups", x.shape[1], dim=-1):
        theta = numpyro.sample("theta", dist.Normal(features @ weights, tau**-0.5))
        with numpyro.plate("replicates", x.shape[0], dim=-2):
            numpyro.sample("x", dist.Normal(theta, noise), obs=x)


def test_dense_dependency_and_per_row_constants_batch_plan_equals_masked_full_plan():
    rng = np.random.default_rng(2)
    features, noise = rng.normal(size=(12, 2)), np.exp(rng.normal(size=(3, 12)))
    x = features @ np.array([1.0, -2.0]) + rng.normal(size=(3, 12))
    ngsvi, state = _setup(hierarchical_regression, "groups", 4, x=jnp.asarray(x), features=jnp.asarray(features), noise=jnp.asarray(noise))
    assert ngsvi.locals == ("theta",) and ngsvi.globals == ("weights", "tau")
    batch = _assert_batch_equals_masked(ngsvi, state.mean, np.array([11, 0, 5, 6]))
    terms = {t.name: t for t in batch.terms}
    assert terms["theta"].params["loc"].kind == "dense" and terms["theta"].params["loc"].jacobian.shape == (4, 2)
    assert terms["x"].params["scale"].moments[0].shape == (3, 4)


def test_full_batch_plan_is_the_plan(gmm):
    """Indices ``0..N-1`` in order: the batch plan computes exactly the full plan's ``F``."""
    ngsvi, state = gmm
    batch = batch_plan(ngsvi.plan, ngsvi.plate, jnp.arange(40))
    value = jax.jit(lambda mu: expected_log_joint(batch, mu))(state.mean)
    assert float(value) == pytest.approx(float(jax.jit(lambda mu: expected_log_joint(ngsvi.plan, mu))(state.mean)), rel=1e-12)


def test_epoch_batches_equal_sizes_cover_every_point():
    rng = np.random.default_rng(0)
    batches = core.epoch_batches(10, 4, rng)
    assert [b.size for b in batches] == [4, 4, 4]
    assert all(np.unique(b).size == 4 for b in batches)
    np.testing.assert_array_equal(np.unique(np.concatenate(batches)), np.arange(10))
    # the top-up is drawn from the other points: every 4-subset containing the 2 leftovers is possible
    tops = {tuple(sorted(core.epoch_batches(10, 4, np.random.default_rng(s))[-1])) for s in range(200)}
    assert len(tops) > 20


def _crossing(x, perm):
    with numpyro.plate("groups", x.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(theta[perm], 1.0), obs=x)


def _global_reads_local(x):
    with numpyro.plate("groups", x.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(theta, 1.0), obs=x)
    numpyro.sample("y", dist.Normal(theta[0], 1.0), obs=0.5)


def test_dependencies_across_rows_are_refused():
    x = jnp.linspace(-1.0, 1.0, 6)
    key = jax.random.PRNGKey(0)
    with pytest.raises(NotImplementedError, match=r"site 'x' \(Normal loc\) reads the local site 'theta' across plate rows"):
        NaturalGradientSVI(_crossing, local_plate="groups", batch_size=2).init(key, x, jnp.array([1, 0, 2, 3, 5, 4]))
    with pytest.raises(NotImplementedError, match="global site 'y' depends on the local site 'theta'.*Put 'y' inside plate"):
        NaturalGradientSVI(_global_reads_local, local_plate="groups", batch_size=2).init(key, x)
    # the same program with rows read in order is accepted
    NaturalGradientSVI(_crossing, local_plate="groups", batch_size=2).init(key, x, jnp.arange(6))


def test_default_batch_size_gives_about_100_steps_per_epoch_at_most_128_rows():
    frames = {"w": [("topic_plate", -1, 3)], "theta": [("docs", -1, 1850)], "z": [("docs", -1, 1850), ("tokens", -2, 5)]}
    plate, batch_size = core.local_plate("docs", frames, None, None, core.default_batch_size)
    assert (plate.size, plate.dim, plate.sites, batch_size) == (1850, -1, frozenset({"theta", "z"}), 18)
    assert core.local_plate("docs", frames, 1850, 7, core.default_batch_size)[1] == 7
    assert [core.default_batch_size(n) for n in (1, 99, 250, 12_899, 12_900, 100_000)] == [1, 1, 2, 128, 128, 128]
    small = {"theta": [("docs", -1, 20)]}
    assert core.local_plate("docs", small, None, None, core.default_batch_size)[1] == 1
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, num_data=20\]; got 21"):
        core.local_plate("docs", small, None, 21, core.default_batch_size)


def test_local_cavi_stops_at_the_first_pass_whose_mean_row_change_is_below_tol():
    """LDA (two local sites): ``local_cavi`` equals the passes of ``local_pass`` up to the first one whose
    :func:`row_change` (mean over the documents) is <= tol, where the slowest document's change is still above it."""
    from ppl_vi.numpyro.ngsvi import _HOST, _grad

    rng = np.random.default_rng(1)
    words = jnp.asarray(rng.integers(0, 9, size=(6, 23)))
    ngsvi, state = _setup(lda_docs, "docs", 5, words=words, num_topics=3, vocab_size=9, alpha=0.5, eta=0.3)
    plan, plate, names, tol = ngsvi.plan, ngsvi.plate, ngsvi.locals, 1e-3
    one_pass = jax.jit(lambda eta, mu: core.local_pass(plan, names, eta, mu, _grad))

    def slowest(new, old):  # the largest document's mean change, over both sites
        axis = {n: len(plan.latents[n].batch_shape) + plate.dim for n in names}
        return max(float(np.max(np.mean(np.abs(np.asarray(a) - np.asarray(b)), axis=tuple(i for i in range(a.ndim) if i != axis[n]))))
                   for n in names for a, b in zip(new[n], old[n]))

    eta, mu = state.natural, state.mean
    for passes in range(1, 101):
        new_eta, new_mu = one_pass(eta, mu)
        change, largest = float(core.row_change(plan, plate, new_mu, mu, names)), slowest(new_mu, mu)
        eta, mu = new_eta, new_mu
        if change <= tol:
            break
    assert 2 < passes < 100 and largest > tol
    stopped = jax.jit(lambda eta, mu: core.local_cavi(plan, plate, names, eta, mu, _HOST, tol, 100))(state.natural, state.mean)
    for name in names:
        np.testing.assert_allclose(np.asarray(stopped[0][name][0]), np.asarray(eta[name][0]), rtol=1e-12, atol=1e-12, err_msg=name)
    # a cap of 0 or 1 passes still makes the first pass (it runs inside the loop)
    first = one_pass(state.natural, state.mean)
    for cap in (0, 1):
        capped = jax.jit(lambda eta, mu: core.local_cavi(plan, plate, names, eta, mu, _HOST, tol, cap))(state.natural, state.mean)
        for name in names:
            np.testing.assert_allclose(np.asarray(capped[0][name][0]), np.asarray(first[0][name][0]), rtol=1e-12, atol=1e-12, err_msg=name)
