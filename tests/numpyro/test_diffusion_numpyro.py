"""DiffusionChain / DiffusionELBO on NumPyro: the program, its agreement with Trace_ELBO,
training through numpyro.infer.SVI + optax, sampling and errors."""

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

NUM_BINS, NUM_DIMS, NUM_HIDDEN = 5, 3, 16


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
    chain = make_chain(num_steps=3)
    x = jnp.zeros((6, NUM_DIMS), dtype=jnp.int32)
    model_tr = handlers.trace(handlers.seed(chain.model, 0)).get_trace(x)
    guide_tr = handlers.trace(handlers.seed(chain.guide, 0)).get_trace(x)
    assert [n for n, s in model_tr.items() if s["type"] == "sample"] == ["z_3", "z_2", "z_1", "z_0", "x"]
    assert [n for n, s in guide_tr.items() if s["type"] == "sample"] == ["z_0", "z_1", "z_2", "z_3"]
    assert model_tr["x"]["is_observed"] and model_tr[DENOISER_SITE]["type"] == "param"


@pytest.mark.parametrize("kind", ["linear", "learned"])
def test_trace_elbo_agrees_with_analytic_elbo(kind):
    chain = make_chain(kind)
    batch, reps = 2000, 10
    x = jnp.broadcast_to(jnp.array([[0, 2, 4]]), (batch, NUM_DIMS))
    params = chain.init_params
    keys = jax.random.split(jax.random.PRNGKey(1), reps)

    def losses(elbo):
        return np.array(jax.jit(jax.vmap(lambda k: elbo.loss(k, params, chain.model, chain.guide, x)))(keys)) / batch

    generic, analytic = losses(Trace_ELBO()), losses(DiffusionELBO())
    se = math.sqrt(generic.var(ddof=1) / reps + analytic.var(ddof=1) / reps)
    assert abs(generic.mean() - analytic.mean()) < 4 * se


def test_svi_training_lowers_the_loss_and_trains_the_schedule():
    chain = make_chain("learned")
    x = jax.random.randint(jax.random.PRNGKey(2), (64, NUM_DIMS), 0, NUM_BINS)
    elbo = DiffusionELBO(num_particles=4)
    svi = SVI(chain.model, chain.guide, optax.adam(1e-2), elbo)
    result = svi.run(jax.random.PRNGKey(3), 150, x, progress_bar=False)
    assert set(result.params) == {DENOISER_SITE, SCHEDULE_SITE}
    assert result.losses[-20:].mean() < 0.8 * result.losses[:5].mean()
    assert not np.allclose(result.params[SCHEDULE_SITE]["w2_raw"], chain.schedule_params["w2_raw"])


def test_sample_and_bpd():
    chain = make_chain(num_steps=None)
    x = jax.random.randint(jax.random.PRNGKey(4), (32, NUM_DIMS), 0, NUM_BINS)
    terms = chain.bpd_terms(x, num_particles=2)
    assert all(float(v) >= 0 for v in terms)
    assert float(chain.bpd(x, num_steps=10)) > 0
    samples = chain.sample(5, num_steps=6, rng_key=jax.random.PRNGKey(5))
    assert samples.shape == (5, NUM_DIMS)
    assert samples.min() >= 0 and samples.max() < NUM_BINS


def test_errors():
    chain = make_chain()
    with pytest.raises(ValueError, match="site 'x' expects integer bin indices"):
        chain.bpd(jnp.zeros((4, NUM_DIMS)))
    with pytest.raises(ValueError, match=r"bin indices in \[0, 4\]"):
        chain.bpd(jnp.full((4, NUM_DIMS), 5))
    with pytest.raises(TypeError, match="apply_fn"):
        DiffusionChain(mlp_apply, schedules.linear())
    with pytest.raises(ValueError, match="num_samples and a known num_dims"):
        make_chain().sample(3)
    with pytest.raises(TypeError, match="model and guide of one DiffusionChain"):
        DiffusionELBO().loss(jax.random.PRNGKey(0), {}, lambda x: None, chain.guide,
                             jnp.zeros((2, NUM_DIMS), dtype=jnp.int32))
