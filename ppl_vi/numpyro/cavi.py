"""Coordinate-ascent variational inference derived from a NumPyro program.

Mean-field ``q(z) = prod_j q_j(z_j)`` with ``q_j`` in the prior's family; each sweep
sets ``q_j(z_j) ∝ exp E_{q_-j}[log p(x, z)]`` exactly (Bishop, PRML §10.1; Blei et al.
2017). How the update is derived without model-specific code — expected log-densities
by rule, dependencies found by probing the program, natural parameters by
``jax.grad`` — is explained in :mod:`ppl_vi.core.cavi_objective` and
:mod:`ppl_vi.core.cavi_plan`. Sites without a conjugate update are refused before any
iteration; for those models use SVI (``numpyro.infer.SVI`` with an ``AutoNormal``
guide, or :class:`ppl_vi.numpyro.LocalGuide`).

Example
-------
>>> import jax, numpyro, numpyro.distributions as dist
>>> from ppl_vi.numpyro import CAVI
>>> def model(x):
...     p = numpyro.sample("p", dist.Beta(2.0, 2.0))
...     with numpyro.plate("data", x.shape[0]):
...         numpyro.sample("x", dist.Bernoulli(p), obs=x)
>>> result = CAVI(model).run(jax.random.PRNGKey(0), jax.numpy.array([1.0, 0.0, 1.0]))
>>> result.posterior["p"].concentration1          # doctest: +SKIP
Array(4., dtype=float64)
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ppl_vi.core import expfam
from ppl_vi.core.cavi_acceleration import PLAIN_SWEEPS_FIRST, accelerated_step, check_acceleration, resolve_acceleration, scheduled
from ppl_vi.core.cavi_blocks import with_blocks
from ppl_vi.core.cavi_objective import Plan
from ppl_vi.core.cavi_plan import build_plan
from ppl_vi.core.cavi_result import inference_data, stop_reason
from ppl_vi.core.cavi_squarem import squarem_parts, squarem_step
from ppl_vi.core.cavi_start import initial_responsibilities, initial_state
from ppl_vi.core.cavi_sweep import kept_natural, relative_change
from ppl_vi.numpyro._compile import BackgroundCompilation, abstract_like, run_once_compiler_options, supported_compiler_options
from ppl_vi.numpyro._trace import run_sites, to_jax

__all__ = ["CAVI", "CAVIState", "CAVIInfo", "CAVIResult"]

# The step's programs compile with LLVM's -O1 instead of XLA's default -O3: as a process's
# first compilation the LDA sweep (90k tokens) compiled in 0.57-0.60 s instead of 0.67-0.72 s
# and ran in 9.8-9.9 ms instead of 10.3-15 ms; the 100k-point mixture's compiled in 1.0 s
# instead of 1.2 s and ran in 4.0-4.4 ms against 4.2-5.1 ms (minima of 8 and of 3 x 20
# sweeps, alternating, one process).
_STEP_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


class CAVIState(NamedTuple):
    """CAVI state (a pytree): natural (continuous sites only,
    :func:`~ppl_vi.core.cavi_sweep.kept_natural`) and mean parameters per latent site, last ELBO,
    step count and the extrapolation record of :func:`~ppl_vi.core.cavi_acceleration.accelerated_step`
    (0 before the first step)."""

    natural: dict
    mean: dict
    elbo: jax.Array
    step: jax.Array
    relaxation: jax.Array


class CAVIInfo(NamedTuple):
    """What one step reports: the ELBO after it and its relative change."""

    elbo: jax.Array
    relative_change: jax.Array


class CAVIResult(NamedTuple):
    """Result of :meth:`CAVI.run`.

    Attributes
    ----------
    posterior : dict
        Latent site name -> NumPyro distribution ``q_j``.
    elbo : ndarray, shape (num_steps,)
        Exact ELBO after each step, a sweep or a SQUAREM step (best restart).
    converged : bool
    num_steps : int
    stop_reason : {"converged", "max_steps", "nan"}
    wall_time : float
        Seconds.
    restart_elbos : ndarray, shape (num_restarts,)
        Final ELBO of every restart.
    state : CAVIState
        Final state of the best restart.
    """

    posterior: dict
    elbo: np.ndarray
    converged: bool
    num_steps: int
    stop_reason: str
    wall_time: float
    restart_elbos: np.ndarray
    state: Any

    def to_inference_data(self, num_samples: int = 1000, seed: int = 0, var_names=None):
        """``arviz.InferenceData`` of ``num_samples`` draws from ``q`` (one chain)."""
        keys = jax.random.split(jax.random.PRNGKey(seed), len(self.posterior))
        names = list(self.posterior) if var_names is None else list(var_names)
        draws = {n: np.asarray(q.sample(k, (num_samples,))) for (n, q), k in zip(self.posterior.items(), keys) if n in names}
        return inference_data(draws, names)


def _grad(fn: Callable, x: Any) -> Any:
    return jax.grad(fn)(x)


_DIST = {
    "Normal": dist.Normal,
    "MultivariateNormal": dist.MultivariateNormal,
    "Gamma": dist.Gamma,
    "Beta": dist.Beta,
    "Dirichlet": dist.Dirichlet,
    "Categorical": dist.Categorical,
    "Bernoulli": dist.Bernoulli,
}


def _distribution(q_family: str, eta: Optional[tuple], mu: Optional[tuple] = None) -> dist.Distribution:
    """``q_j`` as a NumPyro distribution, from its natural parameters ``eta`` (a discrete
    site's from its probabilities ``mu``, when given). Its parameters are valid by
    construction, and validating them would run eagerly even under ``jit`` (a compilation
    per check, as NumPyro checks constant masks at trace time); distributions that leave
    ``jit`` keep no validation flag anyway (``tree_unflatten``)."""
    if q_family == "Wishart":
        params = expfam.family("Wishart").params_from_natural(eta)
        return dist.Wishart(params["df"], scale_matrix=params["scale_matrix"], validate_args=False)
    if q_family in ("Categorical", "Bernoulli"):
        probs = mu[0] if mu is not None else expfam.family(q_family).mean_from_natural(eta)[0]
        return _DIST[q_family](probs=probs, validate_args=False)
    return _DIST[q_family](**expfam.family(q_family).params_from_natural(eta), validate_args=False)


def _cut_rows(a: jax.Array, start: Any, size: int, axis: int) -> jax.Array:
    """Rows ``start .. start + size - 1`` of ``a`` along ``axis`` (a slice, not a gather)."""
    return jax.lax.dynamic_slice_in_dim(a, start, size, axis)


def _paste_rows(full: jax.Array, part: jax.Array, start: Any, axis: int) -> jax.Array:
    """``full`` with the rows from ``start`` along ``axis`` replaced by ``part`` (in place under jit)."""
    return jax.lax.dynamic_update_slice_in_dim(full, part, start, axis)


def _fold(body: Callable, init: Any, count: int) -> Any:
    """``body(i, carry) -> carry`` for ``i = 0 .. count - 1`` (one loop in the program)."""
    return jax.lax.fori_loop(0, count, body, init)


def _restart_keys(rng_key: jax.Array, num: int) -> list:
    """``list(jax.random.split(rng_key, num))`` by one program compiled for running once
    (eagerly, the split and the list's unstacking compiled with full optimization: about
    0.1 s of a first fit)."""
    return list(jax.jit(lambda key: tuple(jax.random.split(key, num)), compiler_options=run_once_compiler_options())(rng_key))


def _split_mean(state: CAVIState) -> tuple[CAVIState, dict]:
    """``(state without its mean parameters, its mean parameters)``: the step's compiled
    programs take them apart, the mean parameters donated (:meth:`CAVI._compile_step`)."""
    return state._replace(mean=None), state.mean


def _starting_state(plan: Plan, eta: dict, mu: dict) -> CAVIState:
    """The state before the first sweep: no ELBO yet (``-inf``), step 0, no extrapolation."""
    dtype = jnp.result_type(float)
    return CAVIState(kept_natural(plan, eta), mu, jnp.full((), -jnp.inf, dtype=dtype), jnp.zeros((), dtype=jnp.int32), jnp.zeros((), dtype=dtype))


class CAVI:
    """Exact mean-field CAVI for a conditionally conjugate NumPyro program.

    Parameters
    ----------
    model : callable
        An ordinary NumPyro program.
    num_restarts : int
        Independent starts run in parallel (``jax.vmap``); the best final ELBO is kept.
    acceleration : {"auto", "squarem", "overrelax", None}
        How far a step goes, the ELBO monotone either way (:mod:`ppl_vi.core.cavi_acceleration`):
        ``"auto"`` takes SQUAREM steps for mixtures and topic models, plain sweeps otherwise.
    seed_from_data : bool
        Start a discrete site that selects the Dirichlet row of a Categorical observation
        (LDA's topics) from the counts of random groups of observations; ``False``:
        Dirichlet(1) responsibilities (:mod:`ppl_vi.core.cavi_start`, with when each did
        better).
    overrelax : None
        Replaced by ``acceleration``; anything but ``None`` raises a ``TypeError`` naming
        the equivalent ``acceleration`` value.

    Notes
    -----
    ``init(rng_key, *args, **kwargs)`` derives the plan from the program called with
    ``args`` and returns a :class:`CAVIState` (stacked over restarts when
    ``num_restarts > 1`` is used by :meth:`run`); ``update(state)`` is a pure,
    jit-able step for that plan (a sweep, or a step of the resolved acceleration),
    returning ``(state, CAVIInfo)``; :meth:`compiled_update` is the step as :meth:`run`
    schedules and compiles it.
    """

    def __init__(self, model: Callable, *, num_restarts: int = 1, acceleration: Optional[str] = "auto", seed_from_data: bool = True,
                 overrelax: Optional[bool] = None):
        if num_restarts < 1:
            raise ValueError(f"num_restarts must be >= 1; got {num_restarts}")
        self.model = model
        self.num_restarts = num_restarts
        self.acceleration = check_acceleration(acceleration, overrelax)
        self.step_kind: Optional[str] = None  # the acceleration resolved for the plan (plan())
        self.seed_from_data = seed_from_data
        self._plan: Optional[Plan] = None
        self._run_sites = None

    # -- derivation -------------------------------------------------------------
    def plan(self, *args: Any, **kwargs: Any) -> Plan:
        """Derive (or refuse) the CAVI plan of ``model(*args, **kwargs)``."""
        self._run_sites = run_sites(self.model, args, kwargs)
        plan, _ = build_plan(self._run_sites, np.random.default_rng(0), to_jax, "numpyro")
        self._plan = with_blocks(plan, _cut_rows, _paste_rows, _fold)
        self.step_kind = resolve_acceleration(self._plan, self.acceleration)
        return self._plan

    def init(self, rng_key: jax.Array, *args: Any, **kwargs: Any) -> CAVIState:
        """Plan the program and return the starting state for ``rng_key``."""
        if args or kwargs or self._plan is None:
            self.plan(*args, **kwargs)
        return self._init_from_plan(rng_key)

    def _init_from_plan(self, rng_key: jax.Array) -> CAVIState:
        plan = self._plan
        # a NumPy seed from the key's bits (no random-bit program to compile)
        seed = int(np.random.SeedSequence(np.asarray(jax.random.key_data(rng_key)).ravel().tolist()).generate_state(1)[0])
        rng = np.random.default_rng(seed)
        prior = self._run_sites(None, seed)
        base = {n: to_jax(prior[n].value) for n, s in plan.latents.items() if not s.discrete}
        # one BLAS thread: the start's products are small (data x support, a few columns),
        # and OpenBLAS's idle threads spin on the core the sweep's compilation needs (100k-point
        # mixture, k-means++ start, first run(num_steps=1): 2.15-2.41 s -> 1.64-1.80 s)
        with threadpool_limits(limits=1, user_api="blas"):
            resp = {n: to_jax(initial_responsibilities(plan, s, rng, np.asarray, self.seed_from_data)) for n, s in plan.latents.items() if s.discrete}
        # one compiled program instead of an eager dispatch (and compile) per operation
        start = jax.jit(lambda b, r: _starting_state(plan, *initial_state(plan, b, r)), compiler_options=run_once_compiler_options())
        return start(base, resp)

    def update(self, state: CAVIState) -> tuple[CAVIState, CAVIInfo]:
        """One step of the resolved ``acceleration`` (pure; ``jax.jit``-able). Under SQUAREM,
        :meth:`run` and :meth:`compiled_update` take plain sweeps first
        (:func:`~ppl_vi.core.cavi_acceleration.scheduled`)."""
        return self._update(state, self.step_kind)

    def _update(self, state: CAVIState, step_kind: Optional[str]) -> tuple[CAVIState, CAVIInfo]:
        if self._plan is None:
            raise RuntimeError("call init(rng_key, *args) before update(state)")
        return self._next(state, *accelerated_step(self._plan, step_kind, state.natural, state.mean, _grad, state.relaxation))

    def _next(self, state: CAVIState, eta: dict, mu: dict, value: jax.Array, relaxation: jax.Array) -> tuple[CAVIState, CAVIInfo]:
        """The state after ``state``'s step to ``(eta, mu)`` with ELBO ``value``, and what it reports."""
        return CAVIState(kept_natural(self._plan, eta), mu, value, state.step + 1, relaxation), CAVIInfo(value, relative_change(value, state.elbo))

    # -- driver -----------------------------------------------------------------
    def run(
        self,
        rng_key: jax.Array,
        *args: Any,
        num_steps: int = 10_000,
        tol: float = 1e-8,
        progress_bar: bool = False,
        **kwargs: Any,
    ) -> CAVIResult:
        """Run steps until the relative ELBO change is below ``tol`` or ``num_steps``.

        ``num_steps`` is a cap, not a budget: a 100k-point mixture with overlapping
        components needs thousands of plain sweeps, so the default cap is high.

        Returns
        -------
        CAVIResult
        """
        start = time.perf_counter()
        self.plan(*args, **kwargs)
        # one start runs without a restart axis: vmap over an axis of size 1 cost 50% more
        # per sweep on a 100k-point mixture (5.7 vs 3.8 ms, median of 60 sweeps)
        batched = self.num_restarts > 1
        abstract = self._abstract_state()
        # the sweep compiles while the starts are built, then the posterior's constructor
        # while the sweep's compilation ends (LDA, 90k tokens, first fit in a process: plan +
        # start + compile 1.27 -> 1.09 s)
        stacked = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((self.num_restarts, *a.shape), a.dtype), abstract)
        compiling = self._compile_step(stacked if batched else abstract, batched, num_steps > PLAIN_SWEEPS_FIRST)
        states = [self._init_from_plan(k) for k in _restart_keys(rng_key, self.num_restarts)]
        building = BackgroundCompilation(self._posterior_fn(), abstract.natural, abstract.mean, compiler_options=run_once_compiler_options())
        state = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states) if batched else states[0]
        step = self._compiled_step(compiling, state)
        history, done, reason = [], np.zeros(self.num_restarts, bool), "max_steps"
        bar = tqdm(range(num_steps), disable=not progress_bar, desc="CAVI")
        for _ in bar:
            state, info = step(state)
            values, change = np.atleast_1d(np.asarray(info.elbo)), np.atleast_1d(np.asarray(info.relative_change))
            history.append(values)
            if np.any(np.isnan(values)):
                reason = "nan"
                break
            done |= change < tol
            bar.set_postfix(elbo=float(values.max()))
            if done.all():
                reason = "converged"
                break
        bar.close()
        history = np.stack(history) if history else np.zeros((0, self.num_restarts))
        final = history[-1] if len(history) else np.full(self.num_restarts, -np.inf)
        best = int(np.nanargmax(np.where(np.isnan(final), -np.inf, final)))
        best_state = jax.tree_util.tree_map(lambda x: x[best], state) if batched else state
        posterior = building.program(best_state.natural, best_state.mean)(best_state.natural, best_state.mean)
        return CAVIResult(
            posterior,
            history[:, best],
            reason == "converged",
            len(history),
            stop_reason(reason),
            time.perf_counter() - start,
            final,
            best_state,
        )

    def _compile_step(self, abstract: CAVIState, batched: bool, extrapolating: bool) -> tuple[BackgroundCompilation, ...]:
        """The step's programs, compiling in worker threads for states shaped like ``abstract``:
        the first steps' update, then (SQUAREM, when ``extrapolating``) SQUAREM's other two
        parts, which compile while the first plain sweeps run. SQUAREM's sweeps are calls of
        the first program: one sweep compiled, not three inlined in one step (on a 100k-point
        mixture ``run(num_steps=1)`` took 4.9 s with the three inlined, 2.7 s with plain sweeps)."""
        vectorized = jax.vmap if batched else (lambda fn: fn)
        first_kind = scheduled(self.step_kind, 0)
        options = supported_compiler_options(_STEP_COMPILER_OPTIONS)
        rest, mean = _split_mean(abstract)
        # the plain step takes (state without mean parameters, mean parameters), the latter
        # donated: a mixture's new responsibilities (data x support) are written into the old
        # ones' buffer, not into new memory the system must first map (100k-point mixture:
        # 3.22-3.25 ms per sweep, no page faults, against 3.47-4.09 ms and 0-390 faults a
        # sweep, 6 x 30 sweeps alternating in one process; in another, 12 rounds, 3.33-3.49
        # against 3.53-4.25 ms). SQUAREM's sweeps never read their input's mean parameters
        # again: its first two sweeps' are the state's and the first sweep's, its stabilising
        # sweep's the extrapolation's output, whose every site the extrapolation computes
        # anew (move_continuous), so no donated buffer is one it still holds; the
        # extrapolation's own inputs are not donated. The acceptance takes the stabilising
        # sweep's state donated, the state it keeps written over it (nothing reads it after;
        # the second sweep's, the fallback, is only read): a SQUAREM step on 876k LDA pairs
        # x 20 topics took 248-256 ms instead of 272-283 ms, the accepted state no longer
        # fresh memory.
        programs = (
            BackgroundCompilation(
                vectorized(lambda rest, mean: self._update(rest._replace(mean=mean), first_kind)), rest, mean,
                donate_argnums=1, compiler_options=options,
            ),
        )
        if self.step_kind != "squarem" or not extrapolating:
            return programs
        _, extrapolate_fn, accept_fn = squarem_parts(self._plan, _grad)
        natural, scalar = abstract.natural, abstract.elbo

        def finish(rest: CAVIState, stabilised: tuple, fallback: tuple, length: jax.Array, step_max: jax.Array) -> tuple[CAVIState, CAVIInfo]:
            return self._next(rest, *accept_fn(stabilised, fallback, length, step_max))

        swept = (natural, mean, scalar)
        return programs + (
            BackgroundCompilation(vectorized(extrapolate_fn), natural, natural, natural, mean, scalar, after=programs[0], compiler_options=options),
            BackgroundCompilation(vectorized(finish), rest, swept, swept, scalar, scalar, after=programs[0], donate_argnums=1, compiler_options=options),
        )

    def compiled_update(self, state: CAVIState) -> Callable[[CAVIState], tuple[CAVIState, CAVIInfo]]:
        """The step :meth:`run` takes, compiled as it compiles it, for states shaped like
        ``state`` (one restart, as :meth:`init` returns it): for a loop of one's own,
        ``state, info = step(state)``. A state passed in is used up: its mean parameters are
        donated to the step (``jax.jit``'s ``donate_argnums``), so keep the returned one.

        Under SQUAREM the returned callable reads the state's step count to follow
        :func:`~ppl_vi.core.cavi_acceleration.scheduled` (a wait for the step's result, as
        :meth:`run`'s convergence check makes anyway) and calls three compiled programs a step.
        """
        if self._plan is None:
            raise RuntimeError("call init(rng_key, *args) before compiled_update(state)")
        return self._compiled_step(self._compile_step(abstract_like(state), False, True), state)

    def _compiled_step(self, programs: tuple, state: CAVIState) -> Callable[[CAVIState], tuple[CAVIState, CAVIInfo]]:
        """``state -> (state, info)`` from :meth:`_compile_step`'s programs, on the schedule of
        :func:`~ppl_vi.core.cavi_acceleration.scheduled` (read from the state's step count)."""
        compiled = programs[0].program(*_split_mean(state))

        def plain(state: CAVIState) -> tuple[CAVIState, CAVIInfo]:
            return compiled(*_split_mean(state))

        if len(programs) == 1:
            return plain
        parts = []  # SQUAREM's compiled parts, waited for at its first step

        def plain_sweep(eta: dict, mu: dict, like: CAVIState) -> tuple:
            swept, _ = plain(like._replace(natural=eta, mean=mu))
            return swept.natural, swept.mean, swept.elbo

        def step(state: CAVIState) -> tuple[CAVIState, CAVIInfo]:
            if scheduled(self.step_kind, int(np.max(np.asarray(state.step)))) != "squarem":
                return plain(state)
            rest = _split_mean(state)[0]
            if not parts:
                swept = (state.natural, state.mean, state.elbo)
                parts.append(programs[1].program(state.natural, state.natural, state.natural, state.mean, state.relaxation))
                parts.append(programs[2].program(rest, swept, swept, state.relaxation, state.relaxation))
            extrapolate, finish = parts
            return squarem_step(
                state.natural, state.mean, state.relaxation,
                lambda eta, mu: plain_sweep(eta, mu, rest), extrapolate,
                lambda stabilised, fallback, length, step_max: finish(rest, stabilised, fallback, length, step_max),
            )

        return step

    def _posterior_fn(self) -> Callable[[dict, dict], dict]:
        """``(natural, mean) -> {latent site name: NumPyro distribution q_j}``, to be compiled as one
        program (NumPyro distributions are pytrees). Built eagerly, each of their operations
        was compiled on its own: 1.8-2.0 s of a first ``run`` on a 100k-point mixture, whose
        whole run went from 6.8 to 4.9 s."""
        latents = self._plan.latents
        return lambda eta, mu: {n: _distribution(s.q_family, eta.get(n), mu[n]) for n, s in latents.items()}

    def _abstract_state(self) -> CAVIState:
        """Shapes and dtypes of :meth:`init`'s state, from the plan alone (no start computed)."""
        plan, dtype = self._plan, jnp.result_type(float)
        base = {n: jax.ShapeDtypeStruct(tuple(s.shape), dtype) for n, s in plan.latents.items() if not s.discrete}
        # initial_responsibilities: batch + (K,) probabilities, a Bernoulli's batch of P(1)
        resp = {
            n: jax.ShapeDtypeStruct(tuple(s.batch_shape) + ((s.support_size,) if s.q_family == "Categorical" else ()), dtype)
            for n, s in plan.latents.items()
            if s.discrete
        }
        return jax.eval_shape(lambda b, r: _starting_state(plan, *initial_state(plan, b, r)), base, resp)

    # -- using the result ---------------------------------------------------------
    def sample_posterior(self, rng_key: jax.Array, result: CAVIResult, num_samples: int = 1) -> dict:
        """Draws from ``q``: name -> array ``(num_samples, *site_shape)``."""
        keys = jax.random.split(rng_key, len(result.posterior))
        return {n: q.sample(k, (num_samples,)) for (n, q), k in zip(result.posterior.items(), keys)}

    def guide(self, result: CAVIResult) -> Callable:
        """A guide that samples every latent site from ``q`` (for ``numpyro.infer.Predictive``)."""
        posterior = dict(result.posterior)

        def guide(*args: Any, **kwargs: Any) -> dict:
            return {n: numpyro.sample(n, q) for n, q in posterior.items()}

        return guide
