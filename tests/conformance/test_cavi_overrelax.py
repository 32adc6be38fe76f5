"""Adaptive over-relaxed CAVI: valid domains, never worse than a plain sweep, the same
fixed point, and fewer steps on overlapping mixtures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_vi.core.cavi_extrapolation import in_domain
from ppl_vi.core.cavi_overrelax import overrelaxed_sweep
from ppl_vi.core.cavi_sweep import sweep
from ppl_vi.numpyro import CAVI
from ppl_vi.numpyro.cavi import _grad


@pytest.mark.parametrize(
    "family, valid, invalid",
    [
        ("Normal", (jnp.array([1.0]), jnp.array([-0.5])), (jnp.array([1.0]), jnp.array([0.1]))),
        ("Gamma", (jnp.array([0.5]), jnp.array([-2.0])), (jnp.array([-1.5]), jnp.array([-2.0]))),
        ("Beta", (jnp.array([0.5]), jnp.array([-0.5])), (jnp.array([0.5]), jnp.array([-1.2]))),
        ("Dirichlet", (jnp.array([0.5, -0.5, 2.0]),), (jnp.array([0.5, -1.5, 2.0]),)),
        ("MultivariateNormal", (jnp.zeros(2), -0.5 * jnp.eye(2)), (jnp.zeros(2), jnp.array([[-0.5, 0.0], [0.0, 0.2]]))),
        ("Wishart", (-0.5 * jnp.eye(2), jnp.array(1.0)), (-0.5 * jnp.eye(2), jnp.array(-1.5))),
    ],
)
def test_in_domain(family, valid, invalid):
    assert bool(in_domain(family, valid))
    assert not bool(in_domain(family, invalid))


def test_step_is_never_worse_than_a_plain_sweep(mixture):
    zoo, _, data = mixture
    cavi = CAVI(zoo.numpyro_model, acceleration=None)
    state = cavi.init(jax.random.PRNGKey(0), **data)
    plan = cavi.plan(**data)
    step = jax.jit(lambda eta, mu, factor: overrelaxed_sweep(plan, eta, mu, _grad, factor))
    plain = jax.jit(lambda eta, mu: sweep(plan, eta, mu, _grad))
    eta, mu, factor, kept = state.natural, state.mean, jnp.zeros(()), 0
    for _ in range(40):
        value_plain = plain(eta, mu)[2]
        eta, mu, value, factor = step(eta, mu, factor)
        assert float(value) >= float(value_plain) - 1e-10 * abs(float(value_plain))
        kept += float(factor) > 1.0
    assert kept > 5  # the extrapolation is taken, not always rejected


def test_same_fixed_point_in_fewer_steps(mixture):
    zoo, _, data = mixture
    fits = {o: CAVI(zoo.numpyro_model, acceleration="overrelax" if o else None).run(jax.random.PRNGKey(0), **data, tol=1e-12) for o in (True, False)}
    assert all(f.converged for f in fits.values())
    for fit in fits.values():
        assert np.all(np.diff(fit.elbo) >= -1e-10 * abs(fit.elbo[-1]))
    np.testing.assert_allclose(fits[True].elbo[-1], fits[False].elbo[-1], rtol=1e-9)
    np.testing.assert_allclose(fits[True].posterior["locs"].loc, fits[False].posterior["locs"].loc, atol=1e-3)  # slow, flat convergence: 1e-4 apart at tol 1e-12
    assert fits[True].num_steps < 0.6 * fits[False].num_steps, (fits[True].num_steps, fits[False].num_steps)


def test_a_family_without_a_domain_check_is_named_with_the_way_out():
    with pytest.raises(ValueError, match=r"family 'Poisson' \(supported: Normal.*use acceleration=None"):
        in_domain("Poisson", (jnp.array([1.0]),))
