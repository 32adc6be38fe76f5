"""SQUAREM-accelerated CAVI: never worse than the plain sweeps it extrapolates, valid
domains, a fixed point of CAVI, fewer sweeps on an overlapping mixture, the same step in
both backends, and what ``acceleration="auto"`` picks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import models
from ppl_vi.core.cavi_acceleration import PLAIN_SWEEPS_FIRST, resolve_acceleration
from ppl_vi.core.cavi_extrapolation import in_domain
from ppl_vi.core.cavi_squarem import squarem_parts, squarem_step
from ppl_vi.core.cavi_sweep import kept_natural, sweep
from ppl_vi.numpyro import CAVI
from ppl_vi.numpyro.cavi import _grad, _restart_keys
from ppl_vi.pyro import CAVI as PyroCAVI


def test_step_is_never_worse_than_two_plain_sweeps_and_extrapolates(mixture):
    zoo, _, data = mixture
    cavi = CAVI(zoo.numpyro_model, acceleration=None)
    state = cavi.init(jax.random.PRNGKey(0), **data)
    plan = cavi._plan
    step = jax.jit(lambda eta, mu, bound: squarem_step(eta, mu, bound, *squarem_parts(plan, _grad)))
    two_plain = jax.jit(lambda eta, mu: sweep(plan, *sweep(plan, eta, mu, _grad)[:2], _grad)[2])
    eta, mu, bound, bounds = state.natural, state.mean, jnp.zeros(()), []
    for _ in range(30):
        reference = float(two_plain(eta, mu))
        eta, mu, value, bound = step(eta, mu, bound)
        assert float(value) >= reference - 1e-10 * abs(reference)
        assert all(bool(in_domain(plan.latents[n].q_family, eta[n])) for n in eta)
        bounds.append(float(bound))
    assert bounds[0] == 4.0  # the first step (length 1: three plain sweeps) is kept at the bound, which grows
    assert max(bounds) >= 64.0  # extrapolations are taken, not always rejected


def test_converges_to_a_fixed_point_of_cavi_in_fewer_sweeps(mixture):
    zoo, _, data = mixture
    fits = {a: CAVI(zoo.numpyro_model, acceleration=a).run(jax.random.PRNGKey(0), **data, tol=1e-12) for a in ("squarem", None)}
    assert all(f.converged for f in fits.values())
    fit = fits["squarem"]
    assert np.all(np.diff(fit.elbo) >= -1e-10 * abs(fit.elbo[-1]))
    # a plain sweep from SQUAREM's end changes nothing: it is a fixed point of CAVI
    cavi = CAVI(zoo.numpyro_model)
    plan = cavi.plan(**data)
    eta, mu, value = sweep(plan, fit.state.natural, fit.state.mean, _grad)
    np.testing.assert_allclose(float(value), fit.elbo[-1], rtol=1e-11)
    for name, params in kept_natural(plan, eta).items():
        for new, old in zip(params, fit.state.natural[name]):
            np.testing.assert_allclose(new, old, rtol=1e-4, atol=1e-6 * float(jnp.max(jnp.abs(old))))
    # three sweeps and an update of the assignments per step, against plain sweeps
    assert 3.5 * fit.num_steps < 0.5 * fits[None].num_steps, (fit.num_steps, fits[None].num_steps)


def test_extrapolation_backs_off_into_the_natural_domain():
    zoo = models.get("normal_gamma")
    cavi = CAVI(zoo.numpyro_model)
    plan = cavi.plan(**models.to_backend(zoo.generate_data(0, num_data=20), "numpyro"))
    state, _ = cavi.update(cavi.init(jax.random.PRNGKey(0)))  # valid natural parameters
    _, extrapolate, _ = squarem_parts(plan, _grad)
    eta_0 = state.natural
    gamma = [n for n in eta_0 if plan.latents[n].q_family == "Gamma"][0]
    rate = -eta_0[gamma][1]
    # a secant r = 0.2 rate, v = -0.02 rate on the Gamma's -rate (|r| / |v| = 10): the point
    # -rate (1 - 0.4 a + 0.02 a^2) is outside the domain for a = 10, 5.5, 3.25, inside for 2.125
    eta_1 = {**eta_0, gamma: (eta_0[gamma][0], eta_0[gamma][1] + 0.2 * rate)}
    eta_2 = {**eta_0, gamma: (eta_0[gamma][0], eta_0[gamma][1] + 0.38 * rate)}
    point, _, length = extrapolate(eta_0, eta_1, eta_2, state.mean, jnp.asarray(1e3))
    np.testing.assert_allclose(float(length), 2.125)
    assert bool(in_domain("Gamma", point[gamma]))
    # a secant outside the domain at every length tried but 1: the plain point eta_2, exactly
    eta_1 = {**eta_0, gamma: (eta_0[gamma][0], eta_0[gamma][1] + 0.5 * rate)}
    eta_2 = {**eta_0, gamma: (eta_0[gamma][0], eta_0[gamma][1] + 0.95 * rate)}
    point, _, length = extrapolate(eta_0, eta_1, eta_2, state.mean, jnp.asarray(1e3))
    assert float(length) == 1.0
    for new, old in zip(point[gamma], eta_2[gamma]):
        np.testing.assert_array_equal(new, old)
    assert bool(in_domain("Gamma", point[gamma]))


def test_same_step_in_both_backends(mixture):
    zoo, raw, data = mixture
    cavi = CAVI(zoo.numpyro_model, acceleration="squarem")
    state = cavi.init(jax.random.PRNGKey(1), **data)
    for _ in range(3):
        state, _ = cavi.update(state)
    pyro_cavi = PyroCAVI(zoo.pyro_model, acceleration="squarem")
    pyro_state = pyro_cavi.init(**models.to_backend(raw, "pyro"))

    def to_torch(tree):
        return {n: tuple(torch.as_tensor(np.array(p)) for p in v) for n, v in tree.items()}

    pyro_state = pyro_state._replace(natural=to_torch(state.natural), mean=to_torch(state.mean),
                                     elbo=torch.as_tensor(float(state.elbo)), relaxation=torch.as_tensor(float(state.relaxation)))
    for _ in range(3):
        state, info = cavi.update(state)
        pyro_state, pyro_info = pyro_cavi.update(pyro_state)
        np.testing.assert_allclose(float(pyro_info.elbo), float(info.elbo), rtol=1e-10)
        assert float(pyro_state.relaxation) == float(state.relaxation)
    np.testing.assert_allclose(pyro_state.mean["locs"][0].numpy(), np.asarray(state.mean["locs"][0]), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(
    "name, expected",
    [("bayesian_gmm", "squarem"), ("lda", "squarem"), ("normal_gamma", None), ("beta_bernoulli", None)],
)
def test_auto_takes_squarem_where_discrete_and_continuous_sites_meet(name, expected):
    zoo = models.get(name)
    plan = CAVI(zoo.numpyro_model).plan(**models.to_backend(zoo.generate_data(0), "numpyro"))
    assert resolve_acceleration(plan, "auto") == expected
    assert resolve_acceleration(plan, "overrelax") == "overrelax"  # a choice of one's own stands (continuous sites here)


def test_nothing_to_extrapolate_without_continuous_sites():
    def model(x):
        import numpyro
        import numpyro.distributions as dist

        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", dist.Bernoulli(0.3))
            numpyro.sample("x", dist.Normal(2.0 * z, 1.0), obs=x)

    cavi = CAVI(model, acceleration="squarem")
    with pytest.warns(UserWarning, match="acceleration='squarem' has nothing to extrapolate"):
        result = cavi.run(jax.random.PRNGKey(0), jnp.array([0.1, 2.2, 1.9]))
    assert cavi.step_kind is None and result.converged


def test_the_former_overrelax_argument_names_its_replacement():
    for engine in (CAVI, PyroCAVI):
        with pytest.raises(TypeError, match="pass acceleration='overrelax'"):
            engine(lambda: None, overrelax=True)
        with pytest.raises(TypeError, match="pass acceleration=None"):
            engine(lambda: None, overrelax=False)


def test_unknown_acceleration_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="acceleration must be one of .*squarem.*got 'fast'"):
        CAVI(lambda: None, acceleration="fast")
    with pytest.raises(ValueError, match="acceleration must be one of"):
        PyroCAVI(lambda: None, acceleration="fast")


@pytest.mark.parametrize("num_restarts", [1, 2])
def test_run_takes_plain_sweeps_first_then_squarem_steps(mixture, num_restarts):
    zoo, _, data = mixture
    key = jax.random.PRNGKey(3)
    num_steps = PLAIN_SWEEPS_FIRST + 5
    fit = CAVI(zoo.numpyro_model, num_restarts=num_restarts).run(key, **data, num_steps=num_steps, tol=0.0)
    # the same start stepped by hand: plain sweeps, then SQUAREM steps, each one program
    cavi = CAVI(zoo.numpyro_model)
    plain, squarem = CAVI(zoo.numpyro_model, acceleration=None), CAVI(zoo.numpyro_model, acceleration="squarem")
    starts = [cavi.init(k, **data) for k in _restart_keys(key, num_restarts)]
    plain.plan(**data)
    squarem.plan(**data)
    plain_step, squarem_step_fn = jax.jit(plain.update), jax.jit(squarem.update)
    by_hand = []
    for state in starts:
        values = []
        for taken in range(num_steps):
            state, info = (plain_step if taken < PLAIN_SWEEPS_FIRST else squarem_step_fn)(state)
            values.append(float(info.elbo))
        by_hand.append(values)
    best = int(np.argmax([v[-1] for v in by_hand]))
    np.testing.assert_allclose(fit.elbo, by_hand[best], rtol=1e-12)
    np.testing.assert_allclose(fit.restart_elbos, [v[-1] for v in by_hand], rtol=1e-12)
    # and compiled_update, a loop of one's own, takes the same steps
    state = starts[0]
    step, values = cavi.compiled_update(state), []
    for _ in range(num_steps):
        state, info = step(state)
        values.append(float(info.elbo))
    np.testing.assert_allclose(values, by_hand[0], rtol=1e-12)


def test_a_short_run_takes_plain_sweeps_only(mixture):
    zoo, _, data = mixture
    key = jax.random.PRNGKey(3)
    fits = [CAVI(zoo.numpyro_model, acceleration=a).run(key, **data, num_steps=PLAIN_SWEEPS_FIRST, tol=0.0) for a in ("auto", None)]
    np.testing.assert_allclose(fits[0].elbo, fits[1].elbo, rtol=1e-12)
    assert float(fits[0].state.relaxation) == 0.0  # no SQUAREM step taken


def test_pyro_run_follows_the_same_schedule(mixture):
    zoo, raw, _ = mixture
    data = models.to_backend(raw, "pyro")
    num_steps = PLAIN_SWEEPS_FIRST + 3
    torch.manual_seed(0)
    fit = PyroCAVI(zoo.pyro_model).run(**data, num_steps=num_steps, tol=0.0)
    torch.manual_seed(0)
    cavi = PyroCAVI(zoo.pyro_model)
    state = cavi.init(**data)
    plain = PyroCAVI(zoo.pyro_model, acceleration=None)
    plain.plan(**data)
    values = []
    for taken in range(num_steps):
        state, info = (plain if taken < PLAIN_SWEEPS_FIRST else cavi).update(state)
        values.append(float(info.elbo))
    np.testing.assert_allclose(fit.elbo, values, rtol=1e-12)
    assert float(fit.state.relaxation) >= 4.0  # SQUAREM steps were taken, and kept
