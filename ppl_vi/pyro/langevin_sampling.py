"""Langevin samplers for torch score functions and Pyro programs.

``langevin`` (ULA, or MALA with ``mala=True``) and ``annealed_langevin`` (Song & Ermon
2019) run any score function on a batch of chains in a torch loop; the step formulas are
:mod:`ppl_vi.core.langevin`. ``posterior_score`` turns a Pyro program into the score of
its log joint in unconstrained space (Pyro's ``initialize_model`` potential energy,
differentiated by autograd), and ``langevin_posterior`` samples its posterior with MALA and
returns constrained draws per site. Randomness comes from torch's global RNG (seeded by
``pyro.set_rng_seed``) or a given ``torch.Generator``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import pyro
import torch
from pyro import poutine
from pyro.infer.mcmc.util import initialize_model
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

    position: torch.Tensor
    score: torch.Tensor
    log_density: Optional[torch.Tensor]


class LangevinInfo(NamedTuple):
    """MALA acceptance probability and decision per chain (ones/True for ULA without a density)."""

    acceptance_probability: torch.Tensor
    is_accepted: torch.Tensor


class LangevinResult(NamedTuple):
    """``position``: final chains (..., D); ``samples``: kept positions (K, ..., D) or None;
    ``acceptance_rate``: mean MALA acceptance probability (None without a log density)."""

    position: torch.Tensor
    samples: Optional[torch.Tensor]
    acceptance_rate: Optional[torch.Tensor]


def _evaluator(score_fn: Optional[Callable], log_density_fn: Optional[Callable]) -> Callable:
    """``x -> (score, log_density or None)``, detached; the score from autograd when not given."""
    if score_fn is None and log_density_fn is None:
        raise ValueError("langevin: pass `score_fn`, `log_density_fn`, or both")

    def evaluate(x):
        if score_fn is not None:
            with torch.no_grad():
                return score_fn(x), None if log_density_fn is None else log_density_fn(x)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            log_density = log_density_fn(x)
            (score,) = torch.autograd.grad(log_density.sum(), x)
        return score, log_density.detach()

    return evaluate


def init_state(position: torch.Tensor, score_fn: Optional[Callable] = None, log_density_fn: Optional[Callable] = None) -> LangevinState:
    """State at ``position`` (shape (..., D))."""
    return LangevinState(position, *_evaluator(score_fn, log_density_fn)(position))


def step(
    state: LangevinState,
    step_size,
    score_fn: Optional[Callable] = None,
    log_density_fn: Optional[Callable] = None,
    mala: bool = False,
    generator: Optional[torch.Generator] = None,
) -> tuple[LangevinState, LangevinInfo]:
    """One ULA (or MALA) step of every chain; returns ``(LangevinState, LangevinInfo)``.

    The MALA acceptance probability is computed whenever a log density is available
    (it drives step-size adaptation), but proposals are rejected only when ``mala``.
    """
    if mala and log_density_fn is None:
        raise ValueError("langevin: mala=True needs `log_density_fn` for the Metropolis correction")
    x = state.position
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    proposal = _core.ula_step(x, state.score, noise, step_size)
    score_new, log_density_new = _evaluator(score_fn, log_density_fn)(proposal)
    new = LangevinState(proposal, score_new, log_density_new)
    if log_density_new is None:
        ones = torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device)
        return new, LangevinInfo(ones, ones > 0)
    log_ratio = _core.mala_log_acceptance(x, proposal, state.log_density, log_density_new, state.score, score_new, step_size)
    acceptance = _core.acceptance_probability(log_ratio)
    if not mala:
        return new, LangevinInfo(acceptance, torch.ones_like(acceptance, dtype=torch.bool))
    log_uniform = torch.log(torch.rand(acceptance.shape, generator=generator, dtype=x.dtype, device=x.device))
    position, accepted = _core.mala_select(x, proposal, log_ratio, log_uniform)
    score = torch.where(accepted[..., None], score_new, state.score)
    log_density = torch.where(accepted, log_density_new, state.log_density)
    return LangevinState(position, score, log_density), LangevinInfo(acceptance, accepted)


def langevin(
    score_fn: Optional[Callable],
    init: torch.Tensor,
    num_steps: int,
    step_size: float,
    generator: Optional[torch.Generator] = None,
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
        ``(..., D) -> (..., D)``, ``∇ log p``; None to take it from ``log_density_fn`` by autograd.
    init : torch.Tensor, shape (..., D)
        Initial positions; leading axes are independent chains.
    num_steps : int
    step_size : float
        ``h``.
    generator : torch.Generator, optional
        Source of randomness; torch's global RNG when None.
    mala : bool
        Metropolis-adjust each step (needs ``log_density_fn``), removing ULA's bias.
    log_density_fn : callable, optional
        ``(..., D) -> (...)``, ``log p`` up to a constant.
    thinning : int, optional
        Keep every ``thinning``-th position in ``samples``; None keeps only the final one.
    progress_bar : bool

    Returns
    -------
    LangevinResult

    Examples
    --------
    >>> import torch
    >>> res = langevin(lambda x: -x, torch.zeros(1000, 1), 200, 0.1)
    >>> res.position.shape
    torch.Size([1000, 1])
    """
    if num_steps < 1:
        raise ValueError(f"langevin: `num_steps` must be ≥ 1; got {num_steps}")
    if thinning is not None and not 1 <= thinning <= num_steps:
        raise ValueError(f"langevin: `thinning` must be in [1, num_steps={num_steps}]; got {thinning}")
    state = init_state(init, score_fn, log_density_fn)
    kept, acceptance_sum = [], 0.0
    for i in tqdm(range(num_steps), desc="langevin", disable=not progress_bar):
        state, info = step(state, step_size, score_fn, log_density_fn, mala, generator)
        acceptance_sum = acceptance_sum + info.acceptance_probability.mean()
        if thinning and (i + 1) % thinning == 0:
            kept.append(state.position)
    rate = None if state.log_density is None else acceptance_sum / num_steps
    return LangevinResult(state.position, torch.stack(kept) if kept else None, rate)


def annealed_langevin(
    score_fn: Callable,
    init: torch.Tensor,
    sigmas,
    steps_per_level: int,
    eps: float,
    generator: Optional[torch.Generator] = None,
    *,
    progress_bar: bool = False,
) -> LangevinResult:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1).

    For each level ``σ_i`` (decreasing), ``steps_per_level`` ULA steps with the score
    ``score_fn(x, σ_i)`` of the σ_i-perturbed density and step size ``α_i = ε σ_i²/σ_L²``.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(x, sigma)`` with ``x`` of shape (..., D) and ``sigma`` a 0-d tensor.
    init : torch.Tensor, shape (..., D)
    sigmas : array-like, shape (L,)
        Noise levels σ_1 > … > σ_L.
    steps_per_level : int
    eps : float
        ``ε``, the step size at the last level.
    generator : torch.Generator, optional
    progress_bar : bool

    Returns
    -------
    LangevinResult
        ``samples`` holds the positions at the end of each level, shape (L, ..., D).
    """
    sigmas = torch.as_tensor(sigmas, dtype=init.dtype, device=init.device)
    if sigmas.ndim != 1 or not bool(torch.all(sigmas[1:] < sigmas[:-1])):
        raise ValueError(f"annealed_langevin: `sigmas` must be a strictly decreasing 1-D array; got {sigmas}")
    step_sizes = _core.annealed_step_sizes(sigmas, eps)
    x, ends = init, []
    with torch.no_grad():
        for sigma, alpha in tqdm(list(zip(sigmas, step_sizes)), desc="annealed langevin", disable=not progress_bar):
            for _ in range(steps_per_level):
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                x = _core.ula_step(x, score_fn(x, sigma), noise, alpha)
            ends.append(x)
    return LangevinResult(x, torch.stack(ends), None)


class PosteriorScore(NamedTuple):
    """A Pyro program's log joint in unconstrained space, flattened to one vector.

    ``log_density_fn``: (..., D) -> (...), log joint including the log-Jacobian of the
    transforms to unconstrained space; ``score_fn``: its gradient, (..., D) -> (..., D);
    ``constrain_fn``: (..., D) -> dict site -> (..., *site_shape) constrained values;
    ``init_position``: initial chains from Pyro's ``init_to_uniform``, (C, D) or (D,).
    """

    score_fn: Callable
    log_density_fn: Callable
    constrain_fn: Callable
    init_position: torch.Tensor
    dim: int


def _plate_nesting(trace) -> int:
    dims = [-frame.dim for site in trace.nodes.values() if site["type"] == "sample"
            for frame in site["cond_indep_stack"] if frame.vectorized]
    return max(dims, default=0)


def _chain_plate_log_density(model, model_args, model_kwargs, transforms, trace, unflatten) -> Callable:
    """Log joint of all chains in one trace: the model runs inside a plate over chains.

    ``(C, D) -> (C,)``. Valid for models that broadcast under an outer plate, as
    ``Predictive(parallel=True)`` assumes; :func:`_build_posterior_score` checks it against
    the per-chain potential energy before using it.
    """
    nesting = _plate_nesting(trace)
    batch_dims = {name: len(getattr(site["fn"], "batch_shape", ())) for name, site in trace.iter_stochastic_nodes()}

    def log_density(flat):
        num_chains = flat.shape[0]
        data, log_joint = {}, torch.zeros(num_chains, dtype=flat.dtype, device=flat.device)
        for name, u in unflatten(flat).items():
            value = transforms[name].inv(u)
            log_joint = log_joint + transforms[name].inv.log_abs_det_jacobian(u, value).reshape(num_chains, -1).sum(-1)
            data[name] = value.reshape((num_chains,) + (1,) * (nesting - batch_dims[name]) + value.shape[1:])
        with pyro.plate("_langevin_chains", num_chains, dim=-nesting - 1):
            chain_trace = poutine.trace(poutine.condition(model, data)).get_trace(*model_args, **model_kwargs)
        chain_trace.compute_log_prob()
        for site in chain_trace.nodes.values():
            if site["type"] == "sample":
                log_prob = site["log_prob"]
                log_prob = log_prob.sum(dim=tuple(range(log_prob.ndim - nesting, log_prob.ndim))) if nesting else log_prob
                log_joint = log_joint + log_prob.reshape(-1)
        return log_joint

    return log_density


def _build_posterior_score(model, model_args, model_kwargs, num_chains: Optional[int]) -> PosteriorScore:
    init_params, potential_fn, transforms, trace = initialize_model(
        model, model_args, model_kwargs, num_chains=num_chains or 1
    )
    if not init_params:
        raise ValueError("posterior_score: the model has no continuous latent sample site")
    batch = 0 if num_chains is None else 1
    shapes = {name: value.shape[batch:] for name, value in init_params.items()}
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    dim = sum(sizes.values())

    def unflatten(x):
        out, offset = {}, 0
        for name, shape in shapes.items():
            out[name] = x[..., offset:offset + sizes[name]].reshape(x.shape[:-1] + shape)
            offset += sizes[name]
        return out

    def per_chain_log_density(flat):
        return torch.stack([-potential_fn(unflatten(row)) for row in flat])

    init = torch.cat([v.reshape(v.shape[:batch] + (-1,)) for v in init_params.values()], dim=-1).detach()
    chains_log_density = per_chain_log_density
    vectorized = _chain_plate_log_density(model, model_args, model_kwargs, transforms, trace, unflatten)
    probe = torch.stack([init.reshape(-1, dim)[0], init.reshape(-1, dim)[0] + 0.1])
    enumerated = any(getattr(site["fn"], "has_enumerate_support", False) and not site["is_observed"]
                     for site in trace.nodes.values() if site["type"] == "sample")
    try:
        if enumerated:  # discrete sites are summed out by Pyro's potential energy, not by the plate
            raise NotImplementedError
        with torch.no_grad():
            if torch.allclose(vectorized(probe), per_chain_log_density(probe), rtol=1e-9, atol=1e-9):
                chains_log_density = vectorized
    except Exception:  # enumerated sites, or a model that does not broadcast over a plate: loop
        pass

    def log_density_fn(x):
        return chains_log_density(x.reshape(-1, dim)).reshape(x.shape[:-1])

    def score_fn(x):
        return _evaluator(None, log_density_fn)(x)[0]

    def constrain_fn(x):
        return {name: transforms[name].inv(value) if name in transforms else value
                for name, value in unflatten(x).items()}

    return PosteriorScore(score_fn, log_density_fn, constrain_fn, init, dim)


def posterior_score(model: Callable, *args, **kwargs) -> PosteriorScore:
    """Score of a Pyro program's posterior in unconstrained space, by autograd.

    ``∇_u [log p(x, T⁻¹(u)) + log |det J_{T⁻¹}(u)|]`` where ``T`` maps each latent site's
    support to ℝⁿ (Pyro's ``initialize_model`` potential energy). ``args`` and ``kwargs``
    are the model's arguments (observed data included). All chains are evaluated in one
    trace under a plate over chains when the model broadcasts (checked against Pyro's
    potential energy), otherwise one trace per chain.

    Returns
    -------
    PosteriorScore

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> def model(y):
    ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    ...     pyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    >>> post = posterior_score(model, torch.tensor(2.0))
    >>> float(post.score_fn(torch.zeros(1))[0])    # d/dmu [log N(mu;0,1) + log N(2;mu,1)] at 0
    2.0
    """
    return _build_posterior_score(model, args, kwargs, None)


class LangevinPosterior(NamedTuple):
    """``samples``: dict site -> (num_chains, num_samples, *site_shape) constrained draws;
    ``acceptance_rate``: mean MALA acceptance probability while sampling; ``step_size``:
    the adapted step size of each chain, shape (num_chains,)."""

    samples: dict
    acceptance_rate: torch.Tensor
    step_size: torch.Tensor


def langevin_posterior(
    model: Callable,
    model_args: tuple = (),
    model_kwargs: Optional[dict] = None,
    *,
    seed: Optional[int] = None,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    num_chains: int = 4,
    step_size: Optional[float] = None,
    mala: bool = True,
    progress_bar: bool = False,
) -> LangevinPosterior:
    """Sample a Pyro program's posterior with Langevin dynamics (MALA by default).

    Chains start from Pyro's ``init_to_uniform``; during ``num_warmup`` steps the step
    size is adapted (Robbins–Monro on ``log h``) towards MALA's optimal acceptance 0.574
    unless ``step_size`` is given (one step size per chain); then ``num_samples`` steps
    are kept. ``seed`` seeds
    Pyro's RNG (``pyro.set_rng_seed``) when given.

    Returns
    -------
    LangevinPosterior
    """
    if seed is not None:
        pyro.set_rng_seed(seed)
    post = _build_posterior_score(model, model_args, model_kwargs or {}, num_chains)
    init = post.init_position.reshape(num_chains, post.dim)
    state = init_state(init, log_density_fn=post.log_density_fn)
    # one step size per chain: a chain started far out (steep gradients) must not be
    # frozen by a step size tuned to the chains already in the bulk
    h0 = 0.1 / post.dim ** (1 / 3) if step_size is None else step_size
    log_h = torch.full((num_chains,), math.log(h0), dtype=init.dtype)
    for t in tqdm(range(num_warmup), desc="langevin warmup", disable=not progress_bar):
        state, info = step(state, log_h.exp()[:, None], None, post.log_density_fn, mala)
        if step_size is None:
            log_h = _core.adapt_log_step_size(log_h, info.acceptance_probability.detach(), t)
    result = langevin(None, state.position, num_samples, log_h.exp()[:, None], mala=mala,
                      log_density_fn=post.log_density_fn, thinning=1, progress_bar=progress_bar)
    draws = result.samples.transpose(0, 1)
    with torch.no_grad():
        samples = post.constrain_fn(draws)
    return LangevinPosterior(samples, result.acceptance_rate, log_h.exp())
