"""A variational diffusion model as a NumPyro latent chain, and its analytic ELBO.

Same model as :mod:`ppl_vi.pyro.diffusion` (math.md §2; Kingma et al. 2021)::

    z_T ~ N(0, I);  z_{i-1} | z_i ~ q(z_{i-1} | z_i, x = x̂_θ(z_i; γ_i));  x | z_0 ~ Categorical,

site ``z_i`` at time t = i/T, guide = fixed forward process. The denoiser is pure JAX
(flax is not a dependency): a pair ``(apply_fn, params)`` with
``apply_fn(params, z, gamma) -> eps_hat``, shapes (B, D), (B,) -> (B, D), and ``params``
any pytree. The chain registers it as the param site ``"diffusion_chain$denoiser"`` (and
a learned schedule as ``"diffusion_chain$schedule"``), so ``numpyro.infer.SVI`` with
:class:`DiffusionELBO` and an optax optimizer trains it; pass ``svi_result.params`` to
``sample``/``bpd``.

Example
-------
>>> import jax, jax.numpy as jnp
>>> from ppl_vi.core import schedules
>>> from ppl_vi.numpyro import DiffusionChain, DiffusionELBO
>>> apply_fn = lambda p, z, g: z @ p["w"] + g[:, None] * p["b"]
>>> chain = DiffusionChain((apply_fn, {"w": jnp.eye(2), "b": jnp.zeros(2)}),
...                        schedules.linear(), num_steps=4, num_bins=17)
>>> x = jax.random.randint(jax.random.PRNGKey(0), (8, 2), 0, 17)
>>> float(chain.bpd(x)) > 0
True
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer.elbo import ELBO

from ppl_vi.core import diffusion, schedules
from ppl_vi.core.diffusion import CHAIN_STEPS, DiffusionTerms

__all__ = ["DiffusionChain", "DiffusionELBO"]

DENOISER_SITE = "diffusion_chain$denoiser"
SCHEDULE_SITE = "diffusion_chain$schedule"


class DiffusionChain:
    """Variational diffusion model (VDM) over K-bin discrete data, as a NumPyro program.

    Parameters
    ----------
    denoiser : tuple (apply_fn, params)
        ε-prediction network; ``apply_fn(params, z, gamma) -> eps_hat``.
    schedule : ppl_vi.core.schedules.Schedule
    num_steps : int or None
        T of the discrete-time model; None for continuous time (L_∞); the program of a
        continuous chain is written out with 1000 steps unless ``num_steps`` is given.
    num_bins : int
        K: data are integer bin indices in {0, ..., K − 1}.
    num_dims : int, optional
        D; taken from the first data seen if omitted (``sample`` needs it).
    """

    def __init__(self, denoiser: tuple[Callable, Any], schedule: schedules.Schedule,
                 num_steps: int | None = None, *, num_bins: int = 256,
                 num_dims: int | None = None):
        if not (isinstance(denoiser, tuple) and len(denoiser) == 2 and callable(denoiser[0])):
            raise TypeError("denoiser must be a pair (apply_fn, params) with "
                            f"apply_fn(params, z, gamma) -> eps_hat; got {denoiser!r}")
        self.num_steps = diffusion.check_chain_arguments(schedule, num_steps, num_bins, num_dims)
        self.apply_fn, self.denoiser_params = denoiser
        self.schedule, self.num_bins, self.num_dims = schedule, num_bins, num_dims
        self.schedule_params = {k: jnp.asarray(v) for k, v in schedule.params.items()}
        self._bpd_fns: dict = {}

    @property
    def init_params(self) -> dict:
        """Initial values of the param sites, keyed by site name (as SVI's ``params``)."""
        params = {DENOISER_SITE: self.denoiser_params}
        if self.schedule.learnable:
            params[SCHEDULE_SITE] = self.schedule_params
        return params

    def _split(self, params: dict | None) -> tuple[Any, dict]:
        params = self.init_params if params is None else params
        return (params.get(DENOISER_SITE, self.denoiser_params),
                params.get(SCHEDULE_SITE, self.schedule_params))

    def _param_sites(self) -> tuple[Any, dict]:
        denoiser = numpyro.param(DENOISER_SITE, self.denoiser_params)
        sched = (numpyro.param(SCHEDULE_SITE, self.schedule_params) if self.schedule.learnable
                 else self.schedule_params)
        return denoiser, sched

    def gamma(self, t: jax.Array, schedule_params: dict | None = None) -> tuple[jax.Array, jax.Array]:
        """γ(t) and γ'(t)."""
        sched = self.schedule_params if schedule_params is None else schedule_params
        return schedules.gamma_and_derivative(t, self.schedule, sched)

    def boundary(self, schedule_params: dict | None = None) -> diffusion.BoundaryConstants:
        """Constants of the reconstruction and prior terms at γ(0), γ(1)."""
        sched = self.schedule_params if schedule_params is None else schedule_params
        return diffusion.boundary_constants(*schedules.gamma_endpoints(sched), self.num_bins)

    def _check(self, x: jax.Array) -> None:
        diffusion.check_data(x, self.num_bins, self.num_dims)
        self.num_dims = x.shape[1]

    def model(self, x: jax.Array | None = None, num_samples: int | None = None,
              num_steps: int | None | str = CHAIN_STEPS) -> jax.Array:
        """The generative chain z_T → … → z_0 → x; returns x (observed or sampled)."""
        steps = diffusion.resolve_steps(num_steps, self.num_steps, program=True)
        if x is not None:
            self._check(x)
        batch = diffusion.program_batch_size(x, num_samples, self.num_dims)
        denoiser, sched = self._param_sites()
        g = self.gamma(jnp.linspace(0.0, 1.0, steps + 1), sched)[0]
        with numpyro.plate("data", batch):
            z = numpyro.sample(f"z_{steps}", dist.Normal(jnp.zeros((batch, self.num_dims)), 1.0).to_event(1))
            for i in range(steps, 0, -1):
                eps_hat = self.apply_fn(denoiser, z, jnp.broadcast_to(g[i], (batch,)))
                loc, scale = diffusion.reverse_step_eps(z, eps_hat, g[i - 1], g[i])
                z = numpyro.sample(f"z_{i - 1}", dist.Normal(loc, scale).to_event(1))
            logits = diffusion.decoder_logits(z, self.boundary(sched))
            return numpyro.sample("x", dist.Categorical(logits=logits).to_event(1), obs=x)

    def guide(self, x: jax.Array, num_samples: int | None = None,
              num_steps: int | None | str = CHAIN_STEPS) -> None:
        """The fixed forward process q(z_0 | x) Π_i q(z_i | z_{i-1})."""
        steps = diffusion.resolve_steps(num_steps, self.num_steps, program=True)
        self._check(x)
        _, sched = self._param_sites()
        g, boundary = self.gamma(jnp.linspace(0.0, 1.0, steps + 1), sched)[0], self.boundary(sched)
        x_value = diffusion.bin_values(x, self.num_bins, g)
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z_0", dist.Normal(boundary.alpha_0 * x_value, boundary.sigma_0)
                               .to_event(1))
            for i in range(1, steps + 1):
                loc, scale = diffusion.forward_step(z, g[i - 1], g[i])
                z = numpyro.sample(f"z_{i}", dist.Normal(loc, scale).to_event(1))

    def loss_terms(self, params: dict | None, x: jax.Array, u: jax.Array, eps: jax.Array,
                   eps_0: jax.Array, num_steps: int | None | str = CHAIN_STEPS) -> DiffusionTerms:
        """Negative-ELBO terms per datum (nats) for given noise; ``params`` keyed by site
        name (None: initial values)."""
        self._check(x)
        denoiser, sched = self._split(params)
        return diffusion.negative_elbo_terms(
            x, u, eps, eps_0, lambda z, g: self.apply_fn(denoiser, z, g),
            lambda t: self.gamma(t, sched), self.boundary(sched),
            diffusion.resolve_steps(num_steps, self.num_steps))

    def draw_terms(self, rng_key: jax.Array, params: dict | None, x: jax.Array,
                   num_steps: int | None | str = CHAIN_STEPS) -> DiffusionTerms:
        """:meth:`loss_terms` with fresh noise (low-discrepancy times as in VDM)."""
        key_u, key_eps = jax.random.split(rng_key)
        batch = x.shape[0]
        u = jnp.remainder(jax.random.uniform(key_u) + jnp.arange(batch) / batch, 1.0)
        eps, eps_0 = jax.random.normal(key_eps, (2, batch, x.shape[1]))
        return self.loss_terms(params, x, u, eps, eps_0, num_steps)

    def bpd_terms(self, x: jax.Array, *, rng_key: jax.Array | None = None, params: dict | None = None,
                  num_steps: int | None | str = CHAIN_STEPS, num_particles: int = 1) -> DiffusionTerms:
        """Mean reconstruction / prior / diffusion terms in bits per dimension."""
        self._check(x)
        steps = diffusion.resolve_steps(num_steps, self.num_steps)
        if steps not in self._bpd_fns:
            def mean_terms(keys, params, x):
                draws = jax.vmap(lambda k: diffusion.to_bits_per_dim(
                    self.draw_terms(k, params, x, steps), x.shape[1]))(keys)
                return DiffusionTerms(*(jnp.mean(d) for d in draws))
            self._bpd_fns[steps] = jax.jit(mean_terms)
        keys = jax.random.split(jax.random.PRNGKey(0) if rng_key is None else rng_key, num_particles)
        return self._bpd_fns[steps](keys, self.init_params if params is None else params, x)

    def bpd(self, x: jax.Array, *, rng_key: jax.Array | None = None, params: dict | None = None,
            num_steps: int | None | str = CHAIN_STEPS, num_particles: int = 1) -> jax.Array:
        """Negative ELBO in bits per dimension, averaged over ``x`` (Monte Carlo estimate)."""
        return self.bpd_terms(x, rng_key=rng_key, params=params, num_steps=num_steps,
                              num_particles=num_particles).total

    def sample(self, num_samples: int, *, rng_key: jax.Array | None = None, params: dict | None = None,
               num_steps: int | None | str = CHAIN_STEPS) -> jax.Array:
        """Ancestral samples of x (bin indices), shape (num_samples, num_dims).

        Runs the same steps as :meth:`model` (reverse steps from
        :func:`ppl_vi.core.diffusion.reverse_step`, then the decoder) as one compiled
        ``lax.scan``, so long chains neither unroll nor dispatch op by op.
        """
        diffusion.program_batch_size(None, num_samples, self.num_dims)
        steps = diffusion.resolve_steps(num_steps, self.num_steps, program=True)
        key = jax.random.PRNGKey(0) if rng_key is None else rng_key
        denoiser, sched = self._split(params)
        return self._ancestral(denoiser, sched, key, num_samples, steps)

    @partial(jax.jit, static_argnums=(0, 4, 5))
    def _ancestral(self, denoiser, sched, key, num_samples: int, steps: int) -> jax.Array:
        g = self.gamma(jnp.linspace(0.0, 1.0, steps + 1), sched)[0]
        key_z, key_x, key_steps = jax.random.split(key, 3)

        def reverse(z, inputs):
            g_s, g_t, k = inputs
            eps_hat = self.apply_fn(denoiser, z, jnp.broadcast_to(g_t, (num_samples,)))
            loc, scale = diffusion.reverse_step_eps(z, eps_hat, g_s, g_t)
            return loc + scale * jax.random.normal(k, z.shape), None

        z = jax.random.normal(key_z, (num_samples, self.num_dims))
        keys = jax.random.split(key_steps, steps)
        z, _ = jax.lax.scan(reverse, z, (g[:-1][::-1], g[1:][::-1], keys))
        return jax.random.categorical(key_x, diffusion.decoder_logits(z, self.boundary(sched)))


class DiffusionELBO(ELBO):
    """Analytic negative ELBO of a :class:`DiffusionChain` (VDM's estimator).

    ``−ELBO(x) = KL(q(z_1|x) || N(0, I)) + L_T(x) − E_q log p(x | z_0)``, L_T on one
    uniformly drawn step per datum, or L_∞ in continuous time. Like
    ``TraceMeanField_ELBO`` it replaces Monte Carlo terms of ``Trace_ELBO`` by exact ones;
    both estimate the same objective. Takes ``(chain.model, chain.guide)`` and returns the
    sum over the batch.
    """

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        chain = _chain_of(model, guide)
        x = args[0] if args else kwargs["x"]
        num_steps = kwargs.get("num_steps", CHAIN_STEPS)
        keys = jax.random.split(rng_key, self.num_particles)
        totals = self.vectorize_particles_fn(
            lambda k: jnp.sum(chain.draw_terms(k, param_map, x, num_steps).total), keys)
        return {"loss": jnp.mean(totals), "mutable_state": None}


def _chain_of(model, guide) -> DiffusionChain:
    chain = getattr(model, "__self__", None)
    if not isinstance(chain, DiffusionChain) or getattr(guide, "__self__", None) is not chain:
        raise TypeError("DiffusionELBO needs the model and guide of one DiffusionChain "
                        f"(chain.model, chain.guide); got {model!r} and {guide!r}")
    return chain
