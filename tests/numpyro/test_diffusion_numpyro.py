"""DiffusionChain / DiffusionELBO on NumPyro: the program, its agreement with Trace_ELBO,
training through numpyro.infer.SVI + optax, and errors (sampling: tests/conformance)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO

from ppl_vi.core import schedules
from ppl_vi.numpyro import DiffusionChain, DiffusionELBO
from ppl_vi.numpyro.diffusion import DENOISER_SITE, SCHEDULE_SITE

NUM_BINS, NUM_DIMS, NUM_HIDDEN, BATCH = 5, 3, 16, 8


def mlp_apply(params, z, gamma):
    h = jnp.tanh(jnp.concatenate([z, gamma[:, None] / 5], -1) @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def make_chain(kind: str = "linear", num_steps: int | None = 4) -> DiffusionChain:
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    params = {"w1": 0.5 * jax.random.normal(k1, (NUM_DIMS + 1, NUM_HIDDEN)), "b1": jnp.zeros(NUM_HIDDEN),
              "w2": 0.3 * jax.random.normal(k2, (NUM_HIDDEN, NUM_DIMS)), "b2": jnp.zeros(NUM_DIMS)}
    sched = schedules.learned(-5.0, 3.0, num_hidden=8) if kind == "learned" else getattr(schedules, kind)(-5.0, 3.0)
    return DiffusionChain((mlp_apply, params), sched, num_steps=num_steps, num_bins=NUM_BINS)


def test_program_sites():
    """Site structure, read by tracing abstractly (jax.eval_shape: no compilation)."""
    chain = make_chain("learned", num_steps=3)
    seen = {}

    def record(x):
        for name, fn in (("model", chain.model), ("guide", chain.guide)):
            seen[name] = handlers.trace(handlers.seed(fn, 0)).get_trace(x)
        return 0.0

    jax.eval_shape(record, jnp.zeros((BATCH, NUM_DIMS), dtype=jnp.int32))
    model_tr, guide_tr = seen["model"], seen["guide"]
    assert [n for n, s in model_tr.items() if s["type"] == "sample"] == ["z_3", "z_2", "z_1", "z_0", "x"]
    assert [n for n, s in guide_tr.items() if s["type"] == "sample"] == ["z_0", "z_1", "z_2", "z_3"]
    assert model_tr["x"]["is_observed"] and model_tr[DENOISER_SITE]["type"] == "param"
    assert model_tr["z_1"]["fn"].event_shape == (NUM_DIMS,)
    assert model_tr[SCHEDULE_SITE]["type"] == "param" and guide_tr[SCHEDULE_SITE]["type"] == "param"


def test_trace_elbo_agrees_with_analytic_elbo():
    """Generic Monte Carlo ELBO of (model, guide) = analytic terms in expectation (one
    compiled function for both estimators; the Pyro test covers the learned schedule)."""
    chain = make_chain("linear", num_steps=2)
    batch, reps = 2000, 10
    x = jnp.broadcast_to(jnp.array([[0, 2, 4]]), (batch, NUM_DIMS))
    params = chain.init_params
    keys = jax.random.split(jax.random.PRNGKey(1), reps)

    def both(key):
        return jnp.stack([elbo.loss(key, params, chain.model, chain.guide, x)
                          for elbo in (Trace_ELBO(), DiffusionELBO())])

    generic, analytic = np.array(jax.jit(jax.vmap(both))(keys)).T / batch
    se = math.sqrt(generic.var(ddof=1) / reps + analytic.var(ddof=1) / reps)
    assert abs(generic.mean() - analytic.mean()) < 4 * se


def test_svi_training():
    """SVI + optax through DiffusionELBO (fixed schedule here: compiling the learned one
    doubles the time; its training is tested on the Pyro side, its values in parity).
    ``sample`` is tested against the exact distribution in the conformance tests."""
    chain = make_chain("linear")
    x = jax.random.randint(jax.random.PRNGKey(2), (BATCH, NUM_DIMS), 0, NUM_BINS)
    svi = SVI(chain.model, chain.guide, optax.adam(1e-2), DiffusionELBO())
    # compiled init and update (what svi.run does, without its second compilation)
    state, update = jax.jit(svi.init)(jax.random.PRNGKey(3), x), jax.jit(svi.update)
    losses = []
    for _ in range(200):
        state, loss = update(state, x)
        losses.append(float(loss))
    params = svi.get_params(state)
    assert set(params) == {DENOISER_SITE}
    assert np.mean(losses[-20:]) < 0.8 * np.mean(losses[:5])


def test_bpd_terms():
    chain = make_chain("linear", num_steps=None)
    x = jax.random.randint(jax.random.PRNGKey(4), (BATCH, NUM_DIMS), 0, NUM_BINS)
    terms = chain.bpd_terms(x, num_particles=2)
    assert all(float(v) >= 0 for v in terms)
    # the prior term is exact: mean over data of ½ Σ_d (σ_1² + a_1² x_d² − 1 − log σ_1²) / (D log 2)
    var_1, values = 1 / (1 + np.exp(-3.0)), (2 * np.asarray(x) + 1) / NUM_BINS - 1
    prior = 0.5 * (var_1 + (1 - var_1) * values ** 2 - 1 - np.log(var_1)).sum(-1).mean()
    assert float(terms.prior) == pytest.approx(prior / (NUM_DIMS * np.log(2)), rel=1e-12)
    # σ_0 = 0.08 is a fifth of the bin spacing 0.4: the decoder is nearly exact (a few
    # hundredths of a bit per dimension, against log2 K = 2.3 for an uninformative one)
    assert 0 < float(terms.reconstruction) < 0.1


def test_errors():
    chain = make_chain()
    with pytest.raises(ValueError, match="site 'x' expects integer bin indices"):
        chain.bpd(jnp.zeros((4, NUM_DIMS)))
    with pytest.raises(ValueError, match=r"bin indices in \[0, 4\]"):
        chain.bpd(jnp.full((4, NUM_DIMS), 5, dtype=jnp.int32))
    with pytest.raises(TypeError, match="apply_fn"):
        DiffusionChain(mlp_apply, schedules.linear())
    with pytest.raises(ValueError, match="num_samples and a known num_dims"):
        make_chain().sample(3)
    with pytest.raises(TypeError, match="model and guide of one DiffusionChain"):
        DiffusionELBO().loss(jax.random.PRNGKey(0), {}, lambda x: None, chain.guide,
                             jnp.zeros((2, NUM_DIMS), dtype=jnp.int32))
