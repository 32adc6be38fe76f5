"""NumPyro NaturalGradientSVI: one full-batch step with rho = 1 is one CAVI sweep, the
minibatch objective is unbiased, minibatch NGSVI reaches the CAVI optimum, bad input errors.

One planned, compiled NGSVI run on the 300-point GMM is shared (compiling dominates).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from benchmarks.ngsvi_lda import lda_docs
from ppl_vi.core import ngsvi as core
from ppl_vi.core.cavi_objective import elbo, expected_log_joint
from ppl_vi.core.cavi_sweep import full_natural, sweep
from ppl_vi.numpyro import NaturalGradientSVI
from ppl_vi.numpyro._compile import abstract_like
from ppl_vi.numpyro.ngsvi import NGSVIState, _grad

GMM = models.get("bayesian_gmm")


@pytest.fixture(scope="module")
def gmm_run():
    """NGSVI with batches of 30 on the 300-point GMM, run for 4 epochs."""
    data = GMM.data("numpyro", seed=0, num_data=300)
    ngsvi = NaturalGradientSVI(GMM.numpyro_model, local_plate="data", num_data=300, batch_size=30)
    return ngsvi, ngsvi.run(jax.random.PRNGKey(0), num_epochs=4, **data)


@pytest.fixture(scope="module")
def cavi_sweep(gmm_run):
    """CAVI's own sweep (``ppl_vi.core.cavi_sweep.sweep``), globals in program order then locals, jitted."""
    ngsvi, _ = gmm_run
    return jax.jit(lambda eta, mu: sweep(ngsvi.plan, eta, mu, _grad, names=ngsvi.globals + ngsvi.locals)[:2])


def _assert_same(a: dict, b: dict, names, tol=1e-10):
    for name in names:
        for x, y in zip(a[name], b[name]):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol, err_msg=name)


def test_step_size_one_full_batch_is_one_cavi_sweep(gmm_run, cavi_sweep):
    ngsvi, result = gmm_run
    eta1, mu1 = cavi_sweep(result.state.natural, result.state.mean)
    eta2, _ = cavi_sweep(eta1, mu1)
    stepped = ngsvi.update(NGSVIState(eta1, mu1, 0), np.arange(300), rho=1.0)
    # the step's local pass leaves the already-optimal locals as they are, then the globals
    # take CAVI's global update; the next local pass is CAVI's local update
    _assert_same(stepped.natural, eta1, ngsvi.locals)
    _assert_same(stepped.natural, eta2, ngsvi.globals)
    evaluated, _ = ngsvi.evaluate(stepped)
    _assert_same(evaluated.natural, eta2, ngsvi.locals)
    moved = np.asarray(eta2["locs"][0]) - np.asarray(result.state.natural["locs"][0])
    assert np.abs(moved).max() > 1e-6  # the sweeps are not at a fixed point


def test_minibatch_objective_is_unbiased(gmm_run):
    """Averaged over the batches of an epoch (equal sizes), ``F_B`` is the full-data ``F``."""
    ngsvi, result = gmm_run
    mu = result.state.mean
    batches = core.epoch_batches(300, 30, np.random.default_rng(0))
    masked = jax.jit(lambda weight, mu: expected_log_joint(core.weighted_plan(ngsvi.plan, ngsvi.plate, weight), mu))
    values = [float(masked(core.plate_weight(b, ngsvi.plate), mu)) for b in batches]
    assert np.mean(values) == pytest.approx(float(masked(np.ones((300,)), mu)), rel=1e-12)
    assert np.std(values) > 1.0  # each batch alone is not the full objective
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(300))


def test_minibatch_ngsvi_reaches_cavi_optimum(gmm_run, cavi_sweep):
    """After 4 epochs, within 1% of the CAVI optimum that full CAVI sweeps reach from there.

    (The sweeps are CAVI's own ``sweep``; the Pyro test compares with ``CAVI.run``.)
    """
    ngsvi, result = gmm_run
    eta, mu = result.state.natural, result.state.mean
    for _ in range(20):
        eta, mu = cavi_sweep(eta, mu)
    exact_elbo = jax.jit(lambda mu, eta: elbo(ngsvi.plan, mu, eta))
    optimum = float(exact_elbo(mu, eta))
    polished = cavi_sweep(eta, mu)
    assert float(exact_elbo(polished[1], polished[0])) == pytest.approx(optimum, rel=1e-7)  # converged
    assert result.num_steps == 40 and list(result.elbo_steps) == [10, 20, 30, 40]
    assert abs(result.elbo[-1] - optimum) < 0.01 * abs(optimum)
    assert result.elbo[-1] <= optimum + 1e-9 * abs(optimum)
    assert result.elbo[-1] > result.elbo[0]
    assert set(result.posterior) == {"weights", "precisions", "locs"}
    assert result.posterior["locs"].batch_shape == (3,) and result.posterior["locs"].event_shape == (2,)


def _uses_compiled_ahead(compilation, *args) -> bool:
    """Whether ``compilation`` (a ``BackgroundCompilation``) gives its ahead-of-time program for ``args``."""
    return compilation.program(*args) is not compilation._jitted


def test_run_uses_the_programs_compiled_ahead_for_its_states(gmm_run):
    """``init`` compiles the (donating) step, the full-data start's passes and ``evaluate``
    from the plan's shapes while the start is computed; the states that ``run`` meets (here
    its last one, after steps and an evaluation) must have those shapes and dtypes, else
    each program is compiled again on its first call. The step compiled ahead of time
    computes what the plain jitted step computes."""
    ngsvi, result = gmm_run
    eta, mu = result.state.natural, result.state.mean
    indices, rho = core.check_indices(np.arange(30), ngsvi.plate), np.asarray(0.5)
    assert abstract_like(ngsvi._abstract) == abstract_like((eta, mu))
    assert _uses_compiled_ahead(ngsvi._step_donating, eta, mu, indices, rho)
    assert _uses_compiled_ahead(ngsvi._fitting_globals, eta, mu)
    assert _uses_compiled_ahead(ngsvi._evaluating, eta, mu, np.asarray(core.EVALUATE_TOL))
    expected = ngsvi.update(result.state, indices, rho=0.5)  # the plain jitted step, no donation
    stepped = ngsvi.update(jax.tree_util.tree_map(jnp.copy, result.state), indices, rho=0.5, donate=True)
    assert abstract_like((stepped.natural, stepped.mean)) == abstract_like((eta, mu))
    _assert_same(stepped.natural, expected.natural, ngsvi.globals + ngsvi.locals, tol=1e-12)
    _assert_same(stepped.mean, expected.mean, ngsvi.globals + ngsvi.locals, tol=1e-12)


def test_init_without_full_data_start_compiles_only_the_step_ahead_for_its_state():
    """The benchmark's configuration (LDA, tokens nested in documents, CAVI's random start):
    the step is compiled ahead of time for the start's shapes and the step's output's;
    ``evaluate`` is left to its first call (``run`` starts it after ``init``)."""
    ngsvi = NaturalGradientSVI(lda_docs, local_plate="docs", batch_size=16, full_data_start=False)
    state = ngsvi.init(jax.random.PRNGKey(0), **_lda_corpus(64, 10, 3, 20))
    assert ngsvi._evaluating is None
    indices, rho = core.check_indices(np.arange(16), ngsvi.plate), np.asarray(0.5)
    assert _uses_compiled_ahead(ngsvi._step_donating, state.natural, state.mean, indices, rho)
    stepped = ngsvi.update(state, indices, donate=True)
    assert _uses_compiled_ahead(ngsvi._step_donating, stepped.natural, stepped.mean, indices, rho)
    assert stepped.step == 1 and np.isfinite(np.asarray(stepped.natural["topics"][0])).all()


def test_run_keys_are_the_eager_split_and_draw():
    """``run`` derives its keys in one compiled program: the same as the eager calls."""
    from ppl_vi.numpyro.ngsvi import _run_keys

    key = jax.random.PRNGKey(3)
    init_key, batch_key = jax.random.split(key)
    got_key, got_seed = _run_keys(key)
    np.testing.assert_array_equal(np.asarray(got_key), np.asarray(init_key))
    assert int(got_seed) == int(jax.random.randint(batch_key, (), 0, 2**31 - 1))


def test_robbins_monro_schedule():
    rho = core.robbins_monro()
    assert rho(0) == pytest.approx(10.0**-0.7) and rho(90) == pytest.approx(100.0**-0.7)
    with pytest.raises(ValueError, match="kappa"):
        core.robbins_monro(kappa=0.5)
    np.testing.assert_allclose(core.blend((np.array([2.0]),), (np.array([4.0]),), 0.25)[0], [2.5])


def test_bad_input_errors():
    data = GMM.data("numpyro", seed=0, num_data=20)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="'rows' is not a plate.*'components', 'data'"):
        NaturalGradientSVI(GMM.numpyro_model, local_plate="rows", batch_size=5).init(key, **data)
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, num_data=20\]; got 21"):
        NaturalGradientSVI(GMM.numpyro_model, batch_size=21).init(key, **data)
    with pytest.raises(ValueError, match="num_data=30 but plate 'data' has size 20"):
        NaturalGradientSVI(GMM.numpyro_model, num_data=30, batch_size=5).init(key, **data)
    plate = core.LocalPlate("data", -1, 20, frozenset())
    with pytest.raises(ValueError, match=r"distinct positions of plate 'data'; repeated: \[1\]"):
        core.check_indices(np.array([1, 1, 2]), plate)
    with pytest.raises(ValueError, match=r"must lie in \[0, 20\) \(plate 'data'\); got \[3, 20\]"):
        core.check_indices(np.array([3, 20]), plate)
    with pytest.raises(ValueError, match="1-D integer array; got dtype float64"):
        core.check_indices(np.array([1.0, 2.0]), plate)


def test_row_change_is_the_rows_mean_of_their_largest_mean_change():
    """Two local sites on a plate of 3 rows (dim -1): a (2, 3, 4) site (a nested plate of 2, 4 categories) and a (3,) site."""
    from types import SimpleNamespace

    plan = SimpleNamespace(latents={"z": SimpleNamespace(batch_shape=(2, 3)), "theta": SimpleNamespace(batch_shape=(3,))})
    plate = core.LocalPlate("rows", -1, 3, frozenset({"z", "theta"}))
    rng = np.random.default_rng(0)
    old = {"z": (rng.normal(size=(2, 3, 4)),), "theta": (rng.normal(size=(3,)),)}
    new = {"z": (old["z"][0] + rng.normal(size=(2, 3, 4)),), "theta": (old["theta"][0] + np.array([0.1, 5.0, 0.2]),)}
    z_rows = np.abs(new["z"][0] - old["z"][0]).mean(axis=(0, 2))                 # each row's mean over its 2 x 4 entries
    expected = np.maximum(z_rows, [0.1, 5.0, 0.2]).mean()                         # the slow row 1 counts for a third
    value = core.row_change(plan, plate, {k: tuple(map(jax.numpy.asarray, v)) for k, v in new.items()},
                            {k: tuple(map(jax.numpy.asarray, v)) for k, v in old.items()}, ("z", "theta"))
    assert float(value) == pytest.approx(expected, rel=1e-12)
    assert float(value) < 5.0 / 2  # not the largest row's change


def _lda_corpus(num_docs: int, doc_length: int, num_topics: int, vocab_size: int) -> dict:
    raw = models.get("lda").generate_data(0, num_docs=num_docs, vocab_size=vocab_size, num_topics=num_topics, doc_length=doc_length)
    return dict(words=jax.numpy.asarray(raw["words"].reshape(num_docs, doc_length).T), num_topics=num_topics,
                vocab_size=vocab_size, alpha=raw["alpha"], eta=raw["eta"])


def _assert_reaches_cavi_on_lda(data: dict, cavi_seeds: tuple, num_epochs: int, expected_batch: int) -> None:
    """NGSVI with every default (schedule (10 + t)^-0.7, batch size, start) ends within 1% of
    the best converged CAVI ELBO of ``cavi_seeds`` after ``num_epochs`` epochs."""
    from ppl_vi.numpyro import CAVI

    fits = [CAVI(lda_docs).run(jax.random.PRNGKey(s), **data) for s in cavi_seeds]
    assert all(f.converged for f in fits)
    optimum = max(float(f.elbo[-1]) for f in fits)
    ngsvi = NaturalGradientSVI(lda_docs, local_plate="docs")
    num_docs = data["words"].shape[1]
    steps = num_epochs * -(-num_docs // expected_batch)
    # one evaluation, at the end: the per-epoch evaluations would refit every document's locals in between
    result = ngsvi.run(jax.random.PRNGKey(0), num_epochs=num_epochs, elbo_every=steps, **data)
    assert ngsvi.batch_size == expected_batch and list(result.elbo_steps) == [steps]
    gap = (optimum - result.elbo[-1]) / abs(optimum)
    assert gap < 0.01, f"NGSVI is {100 * gap:.2f}% below CAVI's optimum after {num_epochs} epochs"


def test_lda_reaches_cavi_optimum_within_one_percent_with_the_defaults():
    """800 documents x 50 tokens, 5 topics, 100 words: 3 epochs of batches of 8 (the default).

    The CAVI optimum is seed 2's, the best of seeds 0-2 (-146,067 vs -146,739 and -146,707:
    this small corpus has several optima). Measured: 0.26-0.45% below it after 3 epochs
    (NGSVI seeds 0-2); with the former default batch of 128 (7 steps per epoch) 2.3-3.1%
    after 3 epochs and 1.3-2.5% after 6. (Evaluating after every epoch, which refits all
    the documents' locals in between, changes these by under 0.02.)
    """
    _assert_reaches_cavi_on_lda(_lda_corpus(800, 50, 5, 100), cavi_seeds=(2,), num_epochs=3, expected_batch=8)


@pytest.mark.slow
def test_lda_benchmark_corpus_reaches_cavi_optimum_within_one_percent_with_the_defaults():
    """``benchmarks/ngsvi_lda.py``'s training corpus (1,800 documents x 50 tokens, 20 topics, 1,000 words), 3 epochs
    of batches of 18. Measured: 0.83% below CAVI's optimum (seed 0, evaluated at the end only); evaluated after
    every epoch, 0.79-0.87% (NGSVI seeds 0-2), and with batches of 128 1.60-1.69%."""
    data = _lda_corpus(2000, 50, 20, 1000)
    data["words"] = data["words"][:, :1800]
    _assert_reaches_cavi_on_lda(data, cavi_seeds=(0, 1), num_epochs=3, expected_batch=18)


def test_start_scored_at_start_tol_is_the_one_scored_at_evaluate_tol(monkeypatch):
    """The full-data start scores its two candidates after a local fit to ``START_TOL``
    (cheap); it must keep the candidate that the exact scoring (``EVALUATE_TOL``) keeps.
    Here that is the data-seeded candidate, which does not depend on the tolerance; the
    other one (locals fitted to CAVI's random globals) would differ between the two."""
    data = _lda_corpus(400, 30, 5, 100)
    key = jax.random.PRNGKey(0)
    ngsvi = NaturalGradientSVI(lda_docs, local_plate="docs")
    cheap = ngsvi.init(key, **data)
    # the scoring separates the candidates: the other one (built as init builds it) scores lower
    start, score = ngsvi.cavi.init(key), ngsvi._evaluated  # init's program, compiled ahead of time
    other = core.start_passes(ngsvi.split, *score(full_natural(ngsvi.plan, start.natural, start.mean), start.mean, core.START_TOL)[:2], _grad)
    assert float(score(cheap.natural, cheap.mean, core.START_TOL)[2]) > float(score(*other, core.START_TOL)[2]) + 10.0  # about 50 nats here
    monkeypatch.setattr(core, "START_TOL", core.EVALUATE_TOL)
    exact = NaturalGradientSVI(lda_docs, local_plate="docs").init(key, **data)
    for name in ("topics", "doc_topics", "assignment"):
        np.testing.assert_allclose(np.asarray(cheap.natural[name][0]), np.asarray(exact.natural[name][0]), rtol=1e-12, atol=1e-12)
