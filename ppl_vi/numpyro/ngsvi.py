"""Stochastic variational inference with natural gradients for NumPyro programs.

Hoffman et al. (2013): local CAVI on a minibatch of the local plate, then a
Robbins–Monro natural-gradient step on the global sites, on the plan cut to the
minibatch's rows (a step costs ``O(|B|)``); the algorithm, the ``N/|B|`` weighting and
its exactness are described in :mod:`ppl_vi.core.ngsvi`. The program is planned once by
:class:`ppl_vi.numpyro.CAVI` (the same conjugacy checks and errors), and the step is one
``jax.jit``-compiled function of the state, the minibatch indices and ``rho``, the local
CAVI loop a ``lax.while_loop`` inside it. It compiles once per batch size: :meth:`run`
uses equal batches (:func:`ppl_vi.core.ngsvi.epoch_batches`).

A first fit pays for compiling the step (figures in :meth:`NaturalGradientSVI._compile_ahead`),
so :meth:`init` has it compiled ahead of time in a worker thread
(:class:`ppl_vi.numpyro._compile.BackgroundCompilation`) from the plan's shapes while the
start is computed, and so are the full-data start's programs and :meth:`evaluate`'s
(which :meth:`run` calls after its first epoch).

Example
-------
>>> import jax, models
>>> from ppl_vi.numpyro import NaturalGradientSVI
>>> zoo = models.get("bayesian_gmm")
>>> ngsvi = NaturalGradientSVI(zoo.numpyro_model, local_plate="data", batch_size=50)
>>> result = ngsvi.run(jax.random.PRNGKey(0), num_epochs=5, **zoo.data("numpyro"))  # doctest: +SKIP
>>> result.posterior["locs"].loc                                                    # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from tqdm.auto import tqdm

from ppl_vi.core import ngsvi as core
from ppl_vi.core.cavi_objective import elbo as exact_elbo
from ppl_vi.core.cavi_result import inference_data
from ppl_vi.core.cavi_sweep import full_natural
from ppl_vi.numpyro._compile import BackgroundCompilation, supported_compiler_options
from ppl_vi.numpyro.cavi import CAVI, _distribution

__all__ = ["NaturalGradientSVI", "NGSVIState", "NGSVIResult"]


class NGSVIState(NamedTuple):
    """Natural and mean parameters per latent site and the step counter ``t``."""

    natural: dict
    mean: dict
    step: int


class NGSVIResult(NamedTuple):
    """Result of :meth:`NaturalGradientSVI.run`.

    Attributes
    ----------
    posterior : dict
        Global site name -> NumPyro distribution ``q_g``.
    elbo : ndarray, shape (num_evaluations,)
        Exact full-data ELBO (locals re-optimized on all rows; CAVI's constants).
    elbo_steps : ndarray of int, shape (num_evaluations,)
        Step count at each evaluation.
    num_steps : int
    wall_time : float
        Seconds, ELBO evaluations included.
    state : NGSVIState
    """

    posterior: dict
    elbo: np.ndarray
    elbo_steps: np.ndarray
    num_steps: int
    wall_time: float
    state: Any

    def to_inference_data(self, num_samples: int = 1000, seed: int = 0, var_names=None):
        """``arviz.InferenceData`` of ``num_samples`` draws from the global ``q`` (one chain)."""
        keys = jax.random.split(jax.random.PRNGKey(seed), len(self.posterior))
        draws = {n: np.asarray(q.sample(k, (num_samples,))) for (n, q), k in zip(self.posterior.items(), keys)}
        return inference_data(draws, var_names)


def _grad(fn: Callable, x: Any) -> Any:
    return jax.grad(fn)(x)


def _scatter(full: jax.Array, axis: int, indices: jax.Array, rows: jax.Array) -> jax.Array:
    return full.at[(slice(None),) * axis + (indices,)].set(rows)


_HOST = core.Host(_grad, _scatter, jax.lax.while_loop)


# The step compiles with XLA:CPU's older (LLVM IR) fusion emitters: on the LDA benchmark
# (benchmarks/ngsvi_lda.py, batches of 128) it compiled in 0.6-0.7 s instead of 0.9-1.0 s
# with XLA's defaults as a process's first compilation (0.36 vs 0.55 s later on), and gave the same bits after
# 45 steps; a step took the same time within the noise (medians of 5 x 60 steps: 10.5 vs
# 10.2 ms; batches of 18, 5 x 300 steps: 2.0 vs 2.1 ms). Full-data programs (evaluate,
# the start's passes) run longer and keep XLA's defaults, as does the step where this
# jaxlib's XLA does not know the option (supported_compiler_options).
_STEP_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


@jax.jit
def _run_keys(rng_key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:meth:`NaturalGradientSVI.run`'s key for ``init`` and seed of the batch order (one
    compiled program: eagerly, the split and the draw compiled one program each)."""
    init_key, batch_key = jax.random.split(rng_key)
    return init_key, jax.random.randint(batch_key, (), 0, 2**31 - 1)


def _plate_frames(model: Callable, args: tuple, kwargs: dict) -> dict:
    """Site name -> ``(plate, dim, size)`` frames, read from an abstract (shape-only) trace."""
    frames: dict = {}

    def traced():
        trace = handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(*args, **kwargs)
        for name, site in trace.items():
            if site["type"] == "sample":
                frames[name] = [(f.name, f.dim, f.size) for f in site["cond_indep_stack"]]
        return 0.0

    jax.eval_shape(traced)
    return frames


class NaturalGradientSVI:
    """Natural-gradient stochastic VI (Hoffman et al. 2013) for a conditionally conjugate NumPyro program.

    Parameters
    ----------
    model : callable
        An ordinary NumPyro program (every latent site conjugate, as for CAVI).
    local_plate : str
        Name of the plate that is subsampled; latent sites inside it are local.
    num_data : int, optional
        Size of that plate (checked against the program).
    batch_size : int, optional
        Minibatch size ``|B|``; default :func:`~ppl_vi.core.ngsvi.default_batch_size`
        (about 100 steps per epoch: ``N // 100``, at most 128 as scikit-learn's online
        LDA, at least 1), so that the step-counted schedule converges in a few epochs.
    step_size : callable, optional
        ``t -> rho_t``; default ``(t + 10)^-0.7`` (:func:`ppl_vi.core.ngsvi.robbins_monro`).
    local_tol, max_local_iters
        The local CAVI loop of a step stops when the batch rows' mean absolute change of
        the local mean parameters, averaged over the rows, is at most ``local_tol``
        (:func:`ppl_vi.core.ngsvi.row_change`; default
        :data:`~ppl_vi.core.ngsvi.LOCAL_TOL`), or after ``max_local_iters`` passes
        (default 100, as scikit-learn); one pass when there is a single local site (it is
        then exact). :meth:`evaluate` refits the locals of all rows to
        :data:`~ppl_vi.core.ngsvi.EVALUATE_TOL`.
    full_data_start : bool
        Whether :meth:`init` fits the start on all the data (two candidate starts, each
        followed by :data:`~ppl_vi.core.ngsvi.START_PASSES` full-data CAVI passes over the
        globals, the better kept by its exact ELBO after a full-data local fit to
        :data:`~ppl_vi.core.ngsvi.START_TOL`: ``O(N)`` work, once). ``False``: CAVI's
        random start as it is (as scikit-learn's online LDA starts), no full-data work.
    """

    def __init__(
        self,
        model: Callable,
        local_plate: str = "data",
        num_data: Optional[int] = None,
        batch_size: Optional[int] = None,
        step_size: Optional[Callable[[int], float]] = None,
        local_tol: float = core.LOCAL_TOL,
        max_local_iters: int = core.MAX_LOCAL_ITERS,
        full_data_start: bool = True,
    ):
        self.model = model
        self.local_plate_name = local_plate
        self.num_data = num_data
        self.requested_batch_size = batch_size
        self.batch_size: Optional[int] = None  # set by init
        self.step_size = core.robbins_monro() if step_size is None else step_size
        self.local_tol = float(local_tol)
        self.max_local_iters = int(max_local_iters)
        self.full_data_start = bool(full_data_start)
        self.cavi = CAVI(model)
        self.plan = None

    def init(self, rng_key: jax.Array, *args: Any, **kwargs: Any) -> NGSVIState:
        """Plan the program and pick the start (see ``full_data_start``); the step (and, with
        ``full_data_start``, the start's programs and :meth:`evaluate`'s) compile in worker
        threads meanwhile."""
        frames = _plate_frames(self.model, args, kwargs)
        plate, self.batch_size = core.local_plate(self.local_plate_name, frames, self.num_data, self.requested_batch_size, core.default_batch_size)
        self.split = core.split_plan(self.cavi.plan(*args, **kwargs), plate)
        self.plan, self.plate, self.locals, self.globals = self.split.plan, plate, self.split.locals, self.split.globals
        self._compile_ahead()
        start = self.cavi.init(rng_key)
        start = start._replace(natural=full_natural(self.plan, start.natural, start.mean))  # CAVI keeps no discrete ones
        if not self.full_data_start:
            return NGSVIState(start.natural, start.mean, 0)
        candidates = []
        for fit_locals in (False, True):  # CAVI's start locals / locals fitted to its start globals
            eta, mu = self._evaluated(start.natural, start.mean, core.START_TOL)[:2] if fit_locals else (start.natural, start.mean)
            candidates.append(NGSVIState(*self._fitting_globals.program(eta, mu)(eta, mu), 0))
        return max(candidates, key=lambda state: float(self._evaluated(state.natural, state.mean, core.START_TOL)[2]))

    def _compile_ahead(self) -> None:
        """Start compiling, from the plan's shapes (:meth:`CAVI._abstract_state`), the
        donating step and, with ``full_data_start``, the start's programs.

        The state's shapes are known once the plan is. On the LDA benchmark
        (``benchmarks/ngsvi_lda.py``: ``full_data_start=False``, a process's first fit; 2
        cores shared, load 3-6) ``init`` took 0.5-0.65 s and the first step then 0.8-1.3 s,
        mostly the step's compilation; compiled meanwhile (with
        :data:`_STEP_COMPILER_OPTIONS`), 0.6-0.9 s and 0.3-0.65 s: 1.3-2.0 s -> 0.9-1.5 s in
        four alternating runs. :meth:`evaluate` compiles once :meth:`_compile_evaluate` is
        called (``init`` with ``full_data_start``, ``run``, or its own first call): a loop
        of ``update`` calls needs no ``evaluate``.
        """
        abstract = self.cavi._abstract_state()
        self._abstract = (jax.eval_shape(lambda e, m: full_natural(self.plan, e, m), abstract.natural, abstract.mean), abstract.mean)
        dtype = jnp.result_type(float)
        options = supported_compiler_options(_STEP_COMPILER_OPTIONS)
        self._step = jax.jit(self._step_fn, compiler_options=options)
        self._evaluating = None
        if self.full_data_start:
            self._fitting_globals = BackgroundCompilation(lambda eta, mu: core.start_passes(self.split, eta, mu, _grad), *self._abstract)
            self._compile_evaluate()
        indices = jax.ShapeDtypeStruct((self.batch_size,), np.int64)  # check_indices' dtype
        self._step_donating = BackgroundCompilation(self._step_fn, *self._abstract, indices, jax.ShapeDtypeStruct((), dtype),
                                                    donate_argnums=(0, 1), compiler_options=options)

    def _compile_evaluate(self) -> None:
        """Start compiling :meth:`evaluate`'s program (once per :meth:`init`)."""
        if self._evaluating is None:
            self._evaluating = BackgroundCompilation(self._evaluate_fn, *self._abstract, jax.ShapeDtypeStruct((), jnp.result_type(float)))

    def _step_fn(self, eta: dict, mu: dict, indices: jax.Array, rho: jax.Array) -> tuple[dict, dict]:
        """:func:`ppl_vi.core.ngsvi.step` (one compiled program per batch size)."""
        return core.step(self.split, _HOST, eta, mu, indices, rho, self.local_tol, self.max_local_iters)

    def update(self, state: NGSVIState, indices: np.ndarray, rho: Optional[float] = None, donate: bool = False) -> NGSVIState:
        """One step on the minibatch ``indices`` (distinct plate positions).

        ``rho`` defaults to ``step_size(state.step)``. With ``donate=True`` the arrays of
        ``state`` are donated to the step (``jax.jit(..., donate_argnums)``): the new
        local rows are written in place instead of into a copy of every local array
        (for LDA, the token responsibilities of all documents), and ``state`` must not
        be used again. :meth:`run` donates.
        """
        if self.plan is None:
            raise RuntimeError("call init(rng_key, *args) before update(state, indices)")
        # NumPy arguments: jnp.asarray would compile a transfer program per shape
        indices = core.check_indices(indices, self.plate)
        rho = np.asarray(self.step_size(state.step) if rho is None else rho, dtype=jnp.result_type(float))
        args = (state.natural, state.mean, indices, rho)
        step = self._step_donating.program(*args) if donate else self._step
        eta, mu = step(*args)
        return NGSVIState(eta, mu, state.step + 1)

    def _evaluate_fn(self, eta: dict, mu: dict, tol: jax.Array) -> tuple[dict, dict, jax.Array]:
        """Full-data local CAVI to ``tol`` (traced: one program for the start's and :meth:`evaluate`'s tolerances), then the exact ELBO."""
        eta, mu = core.local_cavi(self.plan, self.plate, self.locals, eta, mu, _HOST, tol, self.max_local_iters)
        return eta, mu, exact_elbo(self.plan, mu, eta)

    def evaluate(self, state: NGSVIState) -> tuple[NGSVIState, float]:
        """Re-optimize the locals on every row given the globals; return that state and its exact ELBO (one compiled program)."""
        eta, mu, value = self._evaluated(state.natural, state.mean, core.EVALUATE_TOL)
        return NGSVIState(eta, mu, state.step), float(value)

    def _evaluated(self, eta: dict, mu: dict, tol: float) -> tuple[dict, dict, jax.Array]:
        """:meth:`_evaluate_fn` by the program :meth:`_compile_evaluate` compiles (started now if not yet)."""
        self._compile_evaluate()
        args = (eta, mu, np.asarray(tol, dtype=jnp.result_type(float)))
        return self._evaluating.program(*args)(*args)

    def run(
        self,
        rng_key: jax.Array,
        *args: Any,
        num_epochs: int = 10,
        elbo_every: Optional[int] = None,
        progress_bar: bool = False,
        **kwargs: Any,
    ) -> NGSVIResult:
        """``num_epochs`` passes of random minibatches; the ELBO every ``elbo_every`` steps (default: each epoch)."""
        start = time.perf_counter()
        init_key, batch_seed = _run_keys(rng_key)
        state = self.init(init_key, *args, **kwargs)
        self._compile_evaluate()  # needed after the first epoch
        rng = np.random.default_rng(int(batch_seed))
        per_epoch = -(-self.plate.size // self.batch_size)
        every = per_epoch if elbo_every is None else int(elbo_every)
        elbos, steps = [], []
        bar = tqdm(range(num_epochs * per_epoch), disable=not progress_bar, desc="NGSVI")
        batches: list = []
        for _ in bar:
            if not batches:
                batches = core.epoch_batches(self.plate.size, self.batch_size, rng)
            state = self.update(state, batches.pop(0), donate=True)
            if state.step % every == 0:
                state, value = self.evaluate(state)
                elbos.append(value)
                steps.append(state.step)
                bar.set_postfix(elbo=value)
        bar.close()
        posterior = {n: _distribution(self.plan.latents[n].q_family, state.natural[n]) for n in self.globals}
        return NGSVIResult(posterior, np.asarray(elbos), np.asarray(steps, dtype=int), state.step, time.perf_counter() - start, state)
