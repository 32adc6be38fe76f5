"""Langevin samplers for jax score functions and NumPyro programs.

``langevin`` (ULA, or MALA with ``mala=True``) and ``annealed_langevin`` (Song & Ermon
2019) run any score function on a batch of chains with ``jax.lax.scan``; the step
formulas are :mod:`ppl_vi.core.langevin`. ``posterior_score`` turns a NumPyro program into
the score of its log joint in unconstrained space (NumPyro's ``initialize_model`` and
potential energy, differentiated by jax), and ``langevin_posterior`` samples its posterior
with MALA and returns constrained draws per site.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import initialize_model
from tqdm.auto import tqdm

from ppl_vi.core import langevin as _core

__all__ = [
    "LangevinState",
    "LangevinInfo",
    "LangevinResult",
    "init_state",
    "step",
    "langevin",
    "annealed_langevin",
    "PosteriorScore",
    "posterior_score",
    "LangevinPosterior",
    "langevin_posterior",
]


class LangevinState(NamedTuple):
    """Chains at one iteration: ``position``/``score`` (..., D), ``log_density`` (...) or None."""

    position: jax.Array
    score: jax.Array
    log_density: Optional[jax.Array]


class LangevinInfo(NamedTuple):
    """MALA acceptance probability and decision per chain (ones/True for ULA without a density)."""

    acceptance_probability: jax.Array
    is_accepted: jax.Array


class LangevinResult(NamedTuple):
    """``position``: final chains (..., D); ``samples``: kept positions (K, ..., D) or None;
    ``acceptance_rate``: mean MALA acceptance probability (None without a log density)."""

    position: jax.Array
    samples: Optional[jax.Array]
    acceptance_rate: Optional[jax.Array]


def _evaluator(score_fn: Optional[Callable], log_density_fn: Optional[Callable]) -> Callable:
    """``x -> (score, log_density or None)``; the score from autodiff when not given."""
    if score_fn is None and log_density_fn is None:
        raise ValueError("langevin: pass `score_fn`, `log_density_fn`, or both")
    if score_fn is None:
        def evaluate(x):
            log_density, vjp = jax.vjp(log_density_fn, x)
            return vjp(jnp.ones_like(log_density))[0], log_density
        return evaluate
    return lambda x: (score_fn(x), None if log_density_fn is None else log_density_fn(x))


def init_state(position: jax.Array, score_fn: Optional[Callable] = None, log_density_fn: Optional[Callable] = None) -> LangevinState:
    """State at ``position`` (shape (..., D))."""
    return LangevinState(jnp.asarray(position), *_evaluator(score_fn, log_density_fn)(jnp.asarray(position)))


def step(
    rng_key: jax.Array,
    state: LangevinState,
    step_size,
    score_fn: Optional[Callable] = None,
    log_density_fn: Optional[Callable] = None,
    mala: bool = False,
) -> tuple[LangevinState, LangevinInfo]:
    """One ULA (or MALA) step of every chain; returns ``(LangevinState, LangevinInfo)``.

    The MALA acceptance probability is computed whenever a log density is available
    (it drives step-size adaptation), but proposals are rejected only when ``mala``.
    """
    if mala and log_density_fn is None:
        raise ValueError("langevin: mala=True needs `log_density_fn` for the Metropolis correction")
    evaluate = _evaluator(score_fn, log_density_fn)
    key_noise, key_accept = jax.random.split(rng_key)
    x = state.position
    noise = jax.random.normal(key_noise, x.shape, dtype=x.dtype)
    proposal = _core.ula_step(x, state.score, noise, step_size)
    score_new, log_density_new = evaluate(proposal)
    new = LangevinState(proposal, score_new, log_density_new)
    if log_density_new is None:
        ones = jnp.ones(x.shape[:-1], dtype=x.dtype)
        return new, LangevinInfo(ones, ones > 0)
    log_ratio = _core.mala_log_acceptance(x, proposal, state.log_density, log_density_new, state.score, score_new, step_size)
    acceptance = _core.acceptance_probability(log_ratio)
    if not mala:
        return new, LangevinInfo(acceptance, jnp.ones_like(acceptance, dtype=bool))
    log_uniform = jnp.log(jax.random.uniform(key_accept, acceptance.shape, dtype=x.dtype))
    position, accepted = _core.mala_select(x, proposal, log_ratio, log_uniform)
    keep = accepted[..., None]
    score = jnp.where(keep, score_new, state.score)
    log_density = jnp.where(accepted, log_density_new, state.log_density)
    return LangevinState(position, score, log_density), LangevinInfo(acceptance, accepted)


def _as_key(rng_key):
    return jax.random.PRNGKey(rng_key) if isinstance(rng_key, int) else rng_key


def _scan(body: Callable, carry, xs, progress_bar: bool, desc: str):
    """Jitted ``lax.scan(body, carry, xs)``; with a progress bar, in at most 20 jitted chunks."""
    run = jax.jit(lambda c, x: jax.lax.scan(body, c, x))
    if not progress_bar:
        return run(carry, xs)
    length = jax.tree_util.tree_leaves(xs)[0].shape[0]
    chunk, outputs = -(-length // 20), []
    with tqdm(total=length, desc=desc) as bar:
        for start in range(0, length, chunk):
            carry, output = run(carry, jax.tree_util.tree_map(lambda a: a[start:start + chunk], xs))
            outputs.append(output)
            bar.update(min(chunk, length - start))
    return carry, jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *outputs)


def langevin(
    score_fn: Optional[Callable],
    init: jax.Array,
    num_steps: int,
    step_size: float,
    rng_key,
    *,
    mala: bool = False,
    log_density_fn: Optional[Callable] = None,
    thinning: Optional[int] = None,
    progress_bar: bool = False,
) -> LangevinResult:
    """Run Langevin dynamics ``x ← x + h s(x) + sqrt(2h) ε`` on a batch of chains.

    Parameters
    ----------
    score_fn : callable or None
        ``(..., D) -> (..., D)``, ``∇ log p``; None to take it from ``log_density_fn`` by autodiff.
    init : jax.Array, shape (..., D)
        Initial positions; leading axes are independent chains.
    num_steps : int
    step_size : float
        ``h``.
    rng_key : jax.Array or int
    mala : bool
        Metropolis-adjust each step (needs ``log_density_fn``), removing ULA's bias.
    log_density_fn : callable, optional
        ``(..., D) -> (...)``, ``log p`` up to a constant.
    thinning : int, optional
        Keep every ``thinning``-th position in ``samples``; None keeps only the final one.
    progress_bar : bool
        Show a tqdm bar (runs step blocks from Python).

    Returns
    -------
    LangevinResult

    Examples
    --------
    >>> import jax
    >>> res = langevin(lambda x: -x, jax.numpy.zeros((1000, 1)), 200, 0.1, 0)
    >>> res.position.shape
    (1000, 1)
    """
    if num_steps < 1:
        raise ValueError(f"langevin: `num_steps` must be ≥ 1; got {num_steps}")
    if thinning is not None and not 1 <= thinning <= num_steps:
        raise ValueError(f"langevin: `thinning` must be in [1, num_steps={num_steps}]; got {thinning}")
    block_size = thinning or 1
    num_blocks = num_steps // block_size if thinning else num_steps

    def advance(state, key):
        state, info = step(key, state, step_size, score_fn, log_density_fn, mala)
        return state, jnp.mean(info.acceptance_probability)

    def block(state, key):
        state, acceptance = jax.lax.scan(advance, state, jax.random.split(key, block_size))
        return state, (state.position if thinning else None, jnp.sum(acceptance))

    state = init_state(init, score_fn, log_density_fn)
    keys = jax.random.split(_as_key(rng_key), num_blocks)
    state, (kept, acceptance) = _scan(block, state, keys, progress_bar, "langevin")
    rate = None if state.log_density is None else jnp.sum(acceptance) / (num_blocks * block_size)
    return LangevinResult(state.position, kept, rate)


def annealed_langevin(
    score_fn: Callable,
    init: jax.Array,
    sigmas,
    steps_per_level: int,
    eps: float,
    rng_key,
    *,
    progress_bar: bool = False,
) -> LangevinResult:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1).

    For each level ``σ_i`` (decreasing), ``steps_per_level`` ULA steps with the score
    ``score_fn(x, σ_i)`` of the σ_i-perturbed density and step size ``α_i = ε σ_i²/σ_L²``.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(x, sigma)`` with ``x`` of shape (..., D) and ``sigma`` a scalar.
    init : jax.Array, shape (..., D)
    sigmas : array-like, shape (L,)
        Noise levels σ_1 > … > σ_L.
    steps_per_level : int
    eps : float
        ``ε``, the step size at the last level.
    rng_key : jax.Array or int
    progress_bar : bool

    Returns
    -------
    LangevinResult
        ``samples`` holds the positions at the end of each level, shape (L, ..., D).
    """
    sigmas = jnp.asarray(sigmas, dtype=jnp.asarray(init).dtype)
    if sigmas.ndim != 1 or not bool(jnp.all(sigmas[1:] < sigmas[:-1])):
        raise ValueError(f"annealed_langevin: `sigmas` must be a strictly decreasing 1-D array; got {sigmas}")
    step_sizes = _core.annealed_step_sizes(sigmas, eps)

    @jax.jit
    def level(x, key, sigma, alpha):
        def advance(x, k):
            noise = jax.random.normal(k, x.shape, dtype=x.dtype)
            return _core.ula_step(x, score_fn(x, sigma), noise, alpha), None
        return jax.lax.scan(advance, x, jax.random.split(key, steps_per_level))[0]

    x, ends = jnp.asarray(init), []
    keys = jax.random.split(_as_key(rng_key), sigmas.shape[0])
    for i in tqdm(range(sigmas.shape[0]), desc="annealed langevin", disable=not progress_bar):
        x = level(x, keys[i], sigmas[i], step_sizes[i])
        ends.append(x)
    return LangevinResult(x, jnp.stack(ends), None)


class PosteriorScore(NamedTuple):
    """A NumPyro program's log joint in unconstrained space, flattened to one vector.

    ``log_density_fn``: (..., D) -> (...), log joint including the log-Jacobian of the
    transforms to unconstrained space; ``score_fn``: its gradient, (..., D) -> (..., D);
    ``constrain_fn``: (..., D) -> dict site -> (..., *site_shape) constrained values;
    ``init_position``: initial chains from NumPyro's ``init_to_uniform``, (C, D) or (D,).
    """

    score_fn: Callable
    log_density_fn: Callable
    constrain_fn: Callable
    init_position: jax.Array
    dim: int


def _batched(fn: Callable, dim: int) -> Callable:
    """Apply a single-vector function to (..., D) inputs via vmap."""
    def apply(x):
        flat = jnp.reshape(x, (-1, dim))
        out = jax.vmap(fn)(flat)
        return jax.tree_util.tree_map(lambda a: jnp.reshape(a, x.shape[:-1] + a.shape[1:]), out)
    return apply


def _build_posterior_score(model, model_args, model_kwargs, rng_key, num_chains: Optional[int]) -> PosteriorScore:
    keys = rng_key if num_chains is None else jax.random.split(rng_key, num_chains)
    info = initialize_model(keys, model, model_args=model_args, model_kwargs=model_kwargs)
    if not info.param_info.z:
        raise ValueError("posterior_score: the model has no continuous latent sample site")
    if num_chains is None:
        init, unravel = ravel_pytree(info.param_info.z)
    else:
        unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], info.param_info.z))[1]
        init = jax.vmap(lambda z: ravel_pytree(z)[0])(info.param_info.z)
    dim = init.shape[-1]

    def log_joint(u):
        return -info.potential_fn(unravel(u))

    return PosteriorScore(
        score_fn=jax.jit(_batched(jax.grad(log_joint), dim)),
        log_density_fn=jax.jit(_batched(log_joint, dim)),
        constrain_fn=jax.jit(_batched(lambda u: info.postprocess_fn(unravel(u)), dim)),
        init_position=init,
        dim=dim,
    )


def posterior_score(model: Callable, *args, **kwargs) -> PosteriorScore:
    """Score of a NumPyro program's posterior in unconstrained space, by autodiff.

    ``∇_u [log p(x, T⁻¹(u)) + log |det J_{T⁻¹}(u)|]`` where ``T`` maps each latent site's
    support to ℝⁿ (NumPyro's ``initialize_model`` / potential energy). ``args`` and
    ``kwargs`` are the model's arguments (observed data included).

    Returns
    -------
    PosteriorScore

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def model(y):
    ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    >>> post = posterior_score(model, 2.0)
    >>> float(post.score_fn(jax.numpy.zeros(1))[0])    # d/dmu [log N(mu;0,1) + log N(2;mu,1)] at 0
    2.0
    """
    return _build_posterior_score(model, args, kwargs, jax.random.PRNGKey(0), None)


class LangevinPosterior(NamedTuple):
    """``samples``: dict site -> (num_chains, num_samples, *site_shape) constrained draws;
    ``acceptance_rate``: mean MALA acceptance probability while sampling; ``step_size``:
    the adapted step size of each chain, shape (num_chains,)."""

    samples: dict
    acceptance_rate: jax.Array
    step_size: jax.Array


def langevin_posterior(
    model: Callable,
    model_args: tuple = (),
    model_kwargs: Optional[dict] = None,
    *,
    rng_key=0,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    num_chains: int = 4,
    step_size: Optional[float] = None,
    mala: bool = True,
    progress_bar: bool = False,
) -> LangevinPosterior:
    """Sample a NumPyro program's posterior with Langevin dynamics (MALA by default).

    Chains start from NumPyro's ``init_to_uniform``; during ``num_warmup`` steps the step
    size of each chain is adapted (Robbins–Monro on ``log h``) towards MALA's optimal
    acceptance 0.574 unless ``step_size`` is given; then ``num_samples`` steps are kept.

    Returns
    -------
    LangevinPosterior
    """
    key_init, key_run = jax.random.split(_as_key(rng_key))
    post = _build_posterior_score(model, model_args, model_kwargs or {}, key_init, num_chains)
    adapt = step_size is None
    # one step size per chain: a chain started far out (steep gradients) must not be
    # frozen by a step size tuned to the chains already in the bulk
    h0 = 0.1 / post.dim ** (1 / 3) if adapt else step_size
    log_h = jnp.full((num_chains,), jnp.log(h0), dtype=post.init_position.dtype)

    def advance(carry, xs):
        state, log_h = carry
        key, t = xs
        state, info = step(key, state, jnp.exp(log_h)[:, None], post.score_fn, post.log_density_fn, mala)
        if adapt:
            log_h = jnp.where(t < num_warmup, _core.adapt_log_step_size(log_h, info.acceptance_probability, t), log_h)
        return (state, log_h), (state.position, jnp.mean(info.acceptance_probability))

    num_steps = num_warmup + num_samples
    xs = (jax.random.split(key_run, num_steps), jnp.arange(num_steps))
    state = init_state(post.init_position, post.score_fn, post.log_density_fn)
    (_, log_h), (positions, acceptance) = _scan(advance, (state, log_h), xs, progress_bar, "langevin posterior")
    draws = jnp.swapaxes(positions[num_warmup:], 0, 1)
    return LangevinPosterior(post.constrain_fn(draws), jnp.mean(acceptance[num_warmup:]), jnp.exp(log_h))
