"""A sweep in blocks of a local plate's rows (ppl_vi.core.cavi_blocks) is the whole sweep.

The blocked sweep sums the plate's terms block by block and writes each block's
probabilities in place; it must give the whole sweep's state and ELBO (to rounding) on
LDA with pair counts (a per-row scale with fewer dims than the term's batch) and on the
Gaussian mixture (three continuous sites, sufficient statistics), with blocks that do not
divide the plate (a shorter last block). Which plans are blocked is checked too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import models
from ppl_vi.core.cavi_blocks import BLOCK_ENTRIES, MIN_ENTRIES, blocked_plate, with_blocks
from ppl_vi.core.cavi_objective import expected_log_joint
from ppl_vi.core.cavi_sweep import kept_natural, sweep
from ppl_vi.core.ngsvi_batch import RowBlock, batch_plan, gather_rows
from ppl_vi.numpyro import CAVI
from ppl_vi.numpyro.cavi import _cut_rows, _fold, _grad, _paste_rows


def _blocked(plan, rows: int):
    """``plan`` in blocks of ``rows`` rows of its local plate, whatever its size."""
    per_row = sum(int(np.prod(s.batch_shape)) * s.support_size for s in plan.latents.values() if s.discrete) // blocked_plate(plan).size
    return with_blocks(plan, _cut_rows, _paste_rows, _fold, min_entries=1, block_entries=rows * per_row)


def _sweeps(plan, state, count: int) -> tuple:
    step = jax.jit(lambda eta, mu: sweep(plan, eta, mu, _grad))
    eta, mu, values = dict(state.natural), dict(state.mean), []
    for _ in range(count):
        eta, mu, value = step(eta, mu)
        eta = kept_natural(plan, eta)
        values.append(float(value))
    return eta, mu, values


def _assert_blocked_equals_whole(model, rows: int, count: int = 3, **data) -> None:
    cavi = CAVI(model)
    state = cavi.init(jax.random.PRNGKey(0), **data)
    plan = cavi.plan(**data)
    assert plan.blocks is None  # small: swept whole by default
    blocked = _blocked(plan, rows)
    size = blocked.blocks.plate.size
    assert blocked.blocks.rows == rows and size % rows != 0 and size // rows >= 2
    whole_eta, whole_mu, whole_values = _sweeps(plan, state, count)
    eta, mu, values = _sweeps(blocked, state, count)
    np.testing.assert_allclose(values, whole_values, rtol=1e-12)
    assert values[-1] > values[0] + 1.0  # the sweeps moved
    for name in whole_mu:
        for a, b in zip(mu[name], whole_mu[name]):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12, err_msg=name)
    assert set(eta) == set(whole_eta)
    for name in whole_eta:
        for a, b in zip(eta[name], whole_eta[name]):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10, err_msg=name)


def test_lda_pair_counts_blocked_sweep_equals_whole_sweep():
    zoo = models.get("lda")
    raw = zoo.generate_data(0, num_docs=30, num_topics=3, vocab_size=25, doc_length=30)
    data = models.to_backend(zoo.extras["pair_counts"](raw), "numpyro")
    _assert_blocked_equals_whole(zoo.numpyro_model, 97, **data)


def test_gmm_blocked_sweep_equals_whole_sweep():
    zoo = models.get("bayesian_gmm")
    _assert_blocked_equals_whole(zoo.numpyro_model, 23, **zoo.data("numpyro", seed=0, num_data=100))


def test_nested_plate_lda_blocked_over_tokens_equals_whole_sweep():
    """Tokens nested in documents: the tokens plate is blocked, the documents' topic
    proportions (a plated continuous site outside it) get gradients summed over blocks."""
    from benchmarks.ngsvi_lda import lda_docs

    words = jnp.asarray(np.random.default_rng(3).integers(0, 9, size=(40, 5)))
    data = dict(words=words, num_topics=3, vocab_size=9, alpha=0.5, eta=0.3)
    plate = blocked_plate(CAVI(lda_docs).plan(**data))
    assert plate.name == "tokens" and plate.size == 40 and plate.sites == frozenset({"assignment", "words"})
    _assert_blocked_equals_whole(lda_docs, 7, **data)


def test_row_block_cuts_the_rows_that_indices_take():
    zoo = models.get("lda")
    raw = zoo.generate_data(1, num_docs=10, num_topics=3, vocab_size=12, doc_length=20)
    data = models.to_backend(zoo.extras["pair_counts"](raw), "numpyro")
    cavi = CAVI(zoo.numpyro_model)
    state = cavi.init(jax.random.PRNGKey(0), **data)
    plan = _blocked(cavi.plan(**data), 7)
    plate = plan.blocks.plate
    assert plate.name == "tokens" and plate.sites == frozenset({"assignment", "words"})
    block = RowBlock(jnp.asarray(5), 7, _cut_rows)
    by_block = batch_plan(plan, plate, block)
    by_index = batch_plan(plan, plate, jnp.arange(5, 12))
    words = next(t for t in by_block.terms if t.name == "words")
    assert words.scale.shape == (7,) and words.batch_shape == (3, 7)  # the (N,) pair counts are cut too
    locals_ = ("assignment",)
    mu_block = gather_rows(plan, plate, locals_, state.mean, block)
    mu_index = gather_rows(plan, plate, locals_, state.mean, jnp.arange(5, 12))
    np.testing.assert_array_equal(np.asarray(mu_block["assignment"][0]), np.asarray(state.mean["assignment"][0][5:12]))
    assert float(expected_log_joint(by_block, mu_block)) == pytest.approx(float(expected_log_joint(by_index, mu_index)), rel=1e-12)


def test_default_threshold_blocks_large_plans_only():
    """``CAVI.plan`` blocks LDA's pairs from :data:`MIN_ENTRIES` entries (pairs x topics),
    :data:`BLOCK_ENTRIES` of them per block."""
    zoo = models.get("lda")
    for doc_length in (40, 70):
        raw = zoo.generate_data(0, num_docs=2000, vocab_size=1000, num_topics=20, doc_length=doc_length)
        plan = CAVI(zoo.numpyro_model).plan(**models.to_backend(zoo.extras["pair_counts"](raw), "numpyro"))
        entries = plan.latents["assignment"].batch_shape[0] * 20
        assert (entries >= MIN_ENTRIES) == (doc_length == 70)
        assert (plan.blocks is not None) == (entries >= MIN_ENTRIES)
    assert plan.blocks.rows == BLOCK_ENTRIES // 20 and plan.blocks.plate.name == "tokens"


def test_which_plans_are_blocked():
    zoo = models.get("lda")
    raw = zoo.generate_data(0, num_docs=20, num_topics=4, vocab_size=10, doc_length=25)
    data = models.to_backend(zoo.extras["pair_counts"](raw), "numpyro")
    plan = CAVI(zoo.numpyro_model).plan(**data)
    entries = plan.latents["assignment"].batch_shape[0] * 4
    ops = (_cut_rows, _paste_rows, _fold)
    assert with_blocks(plan, *ops, min_entries=entries + 1).blocks is None  # too small
    assert with_blocks(plan, *ops, min_entries=entries, block_entries=entries).blocks is None  # one block
    assert with_blocks(plan, *ops, min_entries=entries, block_entries=40).blocks.rows == 10

    # no discrete site: nothing to block
    normal = models.get("normal_known_variance")
    assert blocked_plate(CAVI(normal.numpyro_model).plan(**normal.data("numpyro", seed=0))) is None


def local_precisions(x):
    """A mixture whose rows also have a continuous latent of their own (a precision)."""
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(2)))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
        tau = numpyro.sample("tau", dist.Gamma(2.0, 2.0))
        numpyro.sample("x", dist.Normal(jnp.asarray([-1.0, 1.0])[z], tau**-0.5), obs=x)


def bernoulli_mixture(x):
    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", dist.Bernoulli(p), infer={"enumerate": "parallel"})
        numpyro.sample("x", dist.Normal(2.0 * z - 1.0, 1.0), obs=x)


def test_a_bernoulli_site_is_not_blocked():
    """A blocked update keeps mean parameters only; a saturated Bernoulli's entropy needs
    its natural ones (probabilities 0 and 1 at data far out): swept whole."""
    x = jnp.asarray(np.concatenate([np.full(20, -50.0), np.full(20, 50.0)]))
    cavi = CAVI(bernoulli_mixture)
    assert blocked_plate(cavi.plan(x)) is None
    result = cavi.run(jax.random.PRNGKey(0), x, num_steps=20)
    assert result.converged and np.all(np.isfinite(result.elbo))


def test_a_plate_with_a_continuous_latent_is_not_blocked():
    """Its rows' continuous sites would need updates of their own in blocks: swept whole."""
    plan = CAVI(local_precisions).plan(jnp.asarray(np.random.default_rng(0).normal(size=50)))
    assert plan.latents["tau"].batch_shape == (50,) and plan.latents["z"].discrete
    assert blocked_plate(plan) is None


def test_run_in_blocks_with_restarts_and_squarem_equals_run_whole(monkeypatch):
    """``CAVI.run``'s compiled steps (vmapped restarts, SQUAREM after the first plain sweeps)
    on a plan in blocks follow the whole sweep's trajectory."""
    import ppl_vi.numpyro.cavi as numpyro_cavi
    from ppl_vi.core.cavi_acceleration import PLAIN_SWEEPS_FIRST

    zoo = models.get("lda")
    raw = zoo.generate_data(2, num_docs=25, num_topics=3, vocab_size=20, doc_length=30)
    data = models.to_backend(zoo.extras["pair_counts"](raw), "numpyro")
    steps = PLAIN_SWEEPS_FIRST + 4
    whole = CAVI(zoo.numpyro_model, num_restarts=2).run(jax.random.PRNGKey(3), **data, num_steps=steps, tol=0.0)
    monkeypatch.setattr(numpyro_cavi, "with_blocks", lambda plan, *ops: _blocked(plan, 31))
    cavi = CAVI(zoo.numpyro_model, num_restarts=2)
    blocked = cavi.run(jax.random.PRNGKey(3), **data, num_steps=steps, tol=0.0)
    assert cavi._plan.blocks is not None and cavi._plan.blocks.rows == 31
    assert blocked.num_steps == whole.num_steps == steps
    np.testing.assert_allclose(blocked.elbo, whole.elbo, rtol=1e-10)
    np.testing.assert_allclose(blocked.restart_elbos, whole.restart_elbos, rtol=1e-10)
