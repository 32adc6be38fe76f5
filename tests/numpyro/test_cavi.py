"""NumPyro CAVI: pure init/update, restarts, guide with Predictive, samples, ArviZ, plates.

That the closed-form ELBO carries ``Trace_ELBO``'s constants is checked on Pyro
(tests/pyro/test_cavi.py); both backends give the same ELBO to 1e-8
(tests/conformance/test_cavi_exact.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import Predictive

import models
from ppl_vi.core.cavi_acceleration import scheduled
from ppl_vi.numpyro import CAVI
from ppl_vi.numpyro import _compile
from ppl_vi.numpyro._compile import BackgroundCompilation, abstract_like, supported_compiler_options
from ppl_vi.numpyro.cavi import _restart_keys, _split_mean


def beta_bernoulli(x, scale=1.0, mask=None):
    p = numpyro.sample("p", dist.Beta(2.0, 3.0))
    with numpyro.plate("data", x.shape[0]), handlers.scale(scale=scale):
        with handlers.mask(mask=True if mask is None else mask):
            numpyro.sample("x", dist.Bernoulli(p), obs=x)


def test_jitted_init_update_match_run():
    zoo = models.get("normal_gamma")
    data = zoo.data("numpyro", seed=0)
    cavi = CAVI(zoo.numpyro_model)
    state = cavi.init(jax.random.PRNGKey(0), **data)
    update = jax.jit(cavi.update)
    elbos = []
    for _ in range(30):
        state, info = update(state)
        elbos.append(float(info.elbo))
    result = cavi.run(jax.random.PRNGKey(0), **data, tol=1e-14, num_steps=30)
    np.testing.assert_allclose(elbos[-1], result.elbo[-1], rtol=1e-12)
    assert np.all(np.diff(elbos) >= -1e-10 * np.abs(elbos[1:]))
    assert int(state.step) == 30


def test_plate_scale_and_mask_are_honoured():
    x = jnp.array([1.0, 0.0, 1.0, 1.0])
    scaled = CAVI(beta_bernoulli).run(jax.random.PRNGKey(0), x, scale=3.0)
    assert float(scaled.posterior["p"].concentration1) == pytest.approx(2.0 + 3 * 3.0)
    assert float(scaled.posterior["p"].concentration0) == pytest.approx(3.0 + 3 * 1.0)
    masked = CAVI(beta_bernoulli).run(jax.random.PRNGKey(0), x, mask=jnp.array([True, False, True, False]))
    assert float(masked.posterior["p"].concentration1) == pytest.approx(2.0 + 2.0)
    assert float(masked.posterior["p"].concentration0) == pytest.approx(3.0 + 0.0)


def test_restarts_guide_predictive_samples_and_inference_data():
    x = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0])
    cavi = CAVI(beta_bernoulli, num_restarts=3)
    result = cavi.run(jax.random.PRNGKey(0), x)
    assert result.restart_elbos.shape == (3,)
    assert result.elbo[-1] == pytest.approx(result.restart_elbos.max())
    draws = cavi.sample_posterior(jax.random.PRNGKey(1), result, 400)
    assert draws["p"].shape == (400,)
    predictive = Predictive(beta_bernoulli, guide=cavi.guide(result), num_samples=400, return_sites=["p", "x"])
    out = predictive(jax.random.PRNGKey(2), x)
    assert out["x"].shape == (400, 5)
    q = result.posterior["p"]
    assert abs(float(out["p"].mean()) - float(q.mean)) < 4 * float(jnp.sqrt(q.variance)) / 20
    idata = result.to_inference_data(num_samples=100)
    assert dict(idata.posterior.sizes)["chain"] == 1 and dict(idata.posterior.sizes)["draw"] == 100
    assert set(idata.posterior.data_vars) == {"p"}


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_restarts"):
        CAVI(beta_bernoulli, num_restarts=0)
    with pytest.raises(RuntimeError, match="init"):
        CAVI(beta_bernoulli).update(None)


def test_program_that_needs_concrete_data_is_planned_with_data_as_constants():
    """The planner passes array arguments to its compiled probes as arguments; a program
    that reads an array argument as a Python number must still work (it falls back to
    embedding the data as constants)."""

    def concrete_prior(x, a):
        p = numpyro.sample("p", dist.Beta(float(a), 3.0))  # float() needs a concrete value
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", dist.Bernoulli(p), obs=x)

    x = jnp.array([1.0, 0.0, 1.0, 1.0])
    result = CAVI(concrete_prior).run(jax.random.PRNGKey(0), x, jnp.array(2.0))
    assert float(result.posterior["p"].concentration1) == pytest.approx(2.0 + 3.0)
    assert float(result.posterior["p"].concentration0) == pytest.approx(3.0 + 1.0)


def test_plan_updates_sites_in_program_order():
    # jax.jit returns dicts with sorted keys; the sweep must still follow the program
    m = models.get("bayesian_gmm")
    plan = CAVI(m.numpyro_model).plan(**m.data("numpyro", seed=0, num_data=50))
    assert plan.order == ("weights", "precisions", "locs", "assignment")


@pytest.mark.parametrize("name", [n for n in models.names() if models.get(n).conjugate])
def test_run_compiles_its_programs_for_the_starting_state_shapes(name):
    """``run`` compiles its step's programs from the plan's shapes while the start is built:
    those shapes and dtypes must be the start's and the sweeps' (else each falls back to
    compiling when first called)."""
    zoo = models.get(name)
    cavi = CAVI(zoo.numpyro_model)
    state = cavi.init(jax.random.PRNGKey(0), **zoo.data("numpyro", seed=0))
    assert jax.tree_util.tree_structure(cavi._abstract_state()) == jax.tree_util.tree_structure(state)
    assert abstract_like(cavi._abstract_state()) == abstract_like(state)
    programs = cavi._compile_step(cavi._abstract_state(), False, True)
    step = programs[0].program(*_split_mean(state))
    assert step is not programs[0]._jitted  # the ahead-of-time program is used
    first_kind = scheduled(cavi.step_kind, 0)
    expected = float(jax.jit(lambda s: cavi._update(s, first_kind))(state)[1].elbo)
    if cavi.step_kind == "squarem":  # its extrapolation and acceptance, ahead of time too
        swept = (state.natural, state.mean, state.elbo)
        assert programs[1].program(state.natural, state.natural, state.natural, state.mean, state.relaxation) is not programs[1]._jitted
        assert programs[2].program(_split_mean(state)[0], swept, swept, state.relaxation, state.relaxation) is not programs[2]._jitted
    assert len(programs) == (3 if cavi.step_kind == "squarem" else 1)
    discrete = [n for n, spec in cavi._plan.latents.items() if spec.discrete]
    buffers = {n: state.mean[n][0].unsafe_buffer_pointer() for n in discrete}
    new_state, info = step(*_split_mean(state))
    np.testing.assert_allclose(float(info.elbo), expected, rtol=1e-12)
    # the mean parameters were donated: the discrete sites' new responsibilities (the large
    # arrays) are written in place of the old ones, which are gone
    for n in discrete:
        assert state.mean[n][0].is_deleted()
        assert new_state.mean[n][0].unsafe_buffer_pointer() == buffers[n]
    step(*_split_mean(new_state))  # a sweep's output state has the input's shapes and dtypes again


def test_background_compilation_falls_back_and_reports_errors():
    compiling = BackgroundCompilation(lambda x: 2.0 * x, jax.ShapeDtypeStruct((3,), jnp.float64))
    assert compiling.program(jnp.ones(3)) is not compiling._jitted
    np.testing.assert_allclose(compiling.program(jnp.ones(4))(jnp.ones(4)), 2.0)  # other shapes: plain jit
    failing = BackgroundCompilation(lambda x: x @ x, jax.ShapeDtypeStruct((3, 2), jnp.float64))
    with pytest.raises(TypeError, match="dot_general"):
        failing.program(jnp.ones((3, 2)))


def test_supported_compiler_options_keeps_known_options_only(monkeypatch):
    assert supported_compiler_options({"xla_backend_optimization_level": 0}) == {"xla_backend_optimization_level": 0}
    assert supported_compiler_options({"xla_no_such_option_anywhere": True}) == {}
    mixed = {"xla_backend_optimization_level": 1, "xla_no_such_option_anywhere": True}
    assert supported_compiler_options(mixed) == {"xla_backend_optimization_level": 1}  # the unknown one dropped
    # a name accepted once is not checked again (each check is a compilation), with any value
    checks = []
    monkeypatch.setattr(_compile, "_known_to_xla", lambda options: checks.append(options) or True)
    assert supported_compiler_options({"xla_backend_optimization_level": 2}) == {"xla_backend_optimization_level": 2}
    assert checks == []


def test_background_compilation_after_another_starts_when_it_has_finished():
    order = []

    def first(x):
        order.append("first traced")
        return jnp.sin(x)

    def second(x):
        order.append("second traced")
        return jnp.cos(x)

    abstract = jax.ShapeDtypeStruct((4,), jnp.float64)
    compiling_first = BackgroundCompilation(first, abstract)
    compiling_second = BackgroundCompilation(second, abstract, after=compiling_first)
    np.testing.assert_allclose(compiling_second.program(jnp.zeros(4))(jnp.zeros(4)), 1.0)
    assert order == ["first traced", "second traced"]


def test_restart_keys_are_the_split_keys():
    key = jax.random.PRNGKey(7)
    for num in (1, 3):
        np.testing.assert_array_equal(np.stack(_restart_keys(key, num)), np.asarray(jax.random.split(key, num)))
