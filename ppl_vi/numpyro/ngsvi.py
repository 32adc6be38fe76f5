"""Stochastic variational inference with natural gradients for NumPyro programs.

Hoffman et al. (2013): local CAVI on a minibatch of the local plate, then a
Robbins–Monro natural-gradient step on the global sites; the algorithm, the ``N/|B|``
weighting and its exactness are described in :mod:`ppl_vi.core.ngsvi`. The program is
planned once by :class:`ppl_vi.numpyro.CAVI` (the same conjugacy checks and errors), and
the step is one ``jax.jit``-compiled function of the state, the minibatch weights and
``rho``.

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
    batch_size : int
        Minibatch size ``|B|``.
    step_size : callable, optional
        ``t -> rho_t``; default ``(t + 10)^-0.7`` (:func:`ppl_vi.core.ngsvi.robbins_monro`).
    local_tol, max_local_iters
        The local CAVI loop stops when no local mean parameter moves by more than
        ``local_tol`` (one pass when there is a single local site: it is then exact).
    """

    def __init__(
        self,
        model: Callable,
        local_plate: str = "data",
        num_data: Optional[int] = None,
        batch_size: int = 100,
        step_size: Optional[Callable[[int], float]] = None,
        local_tol: float = 1e-6,
        max_local_iters: int = 100,
    ):
        self.model = model
        self.local_plate_name = local_plate
        self.num_data = num_data
        self.batch_size = int(batch_size)
        self.step_size = core.robbins_monro() if step_size is None else step_size
        self.local_tol = float(local_tol)
        self.max_local_iters = int(max_local_iters)
        self.cavi = CAVI(model)
        self.plan = None
        self.plate = None

    def init(self, rng_key: jax.Array, *args: Any, **kwargs: Any) -> NGSVIState:
        """Plan the program and pick the start (:data:`~ppl_vi.core.ngsvi.START_PASSES`)."""
        self.plate = core.local_plate(self.local_plate_name, _plate_frames(self.model, args, kwargs), self.num_data, self.batch_size)
        self.plan = self.cavi.plan(*args, **kwargs)
        self.locals, self.globals = core.split_latents(self.plan, self.plate)
        start = self.cavi.init(rng_key)
        self._step = jax.jit(self._step_fn)
        nowhere, everywhere, one = jnp.zeros(self.plate.size), jnp.ones(self.plate.size), jnp.asarray(1.0)
        candidates = []
        for first_rows in (nowhere, everywhere):  # CAVI's start locals / locals fitted to its start globals
            eta, mu = self._step(start.natural, start.mean, first_rows, everywhere, one)
            for _ in range(core.START_PASSES - 1):  # rows=0: the locals stay
                eta, mu = self._step(eta, mu, nowhere, everywhere, one)
            candidates.append(NGSVIState(eta, mu, 0))
        return max(candidates, key=lambda state: self.evaluate(state)[1])

    def _locals_fn(self, eta: dict, mu: dict, rows: jax.Array) -> tuple[dict, dict]:
        def body(carry):
            eta, mu, _, it = carry
            new_eta, new_mu = core.local_pass(self.plan, self.plate, self.locals, eta, mu, _grad, rows)
            return new_eta, new_mu, core.max_change(new_mu, mu, self.locals), it + 1

        carry = body((eta, mu, jnp.inf, 0))
        if len(self.locals) > 1:
            cond = lambda c: (c[2] > self.local_tol) & (c[3] < self.max_local_iters)  # noqa: E731
            carry = jax.lax.while_loop(cond, body, carry)
        return carry[0], carry[1]

    def _step_fn(self, eta: dict, mu: dict, rows: jax.Array, weight: jax.Array, rho: jax.Array) -> tuple[dict, dict]:
        """Local CAVI committed on ``rows > 0``, then the global step under ``weight`` (one compiled program)."""
        eta, mu = self._locals_fn(eta, mu, rows)
        scaled = core.weighted_plan(self.plan, self.plate, weight)
        return core.global_step(scaled, self.globals, eta, mu, _grad, rho)

    def update(self, state: NGSVIState, indices: np.ndarray, rho: Optional[float] = None) -> NGSVIState:
        """One step on the minibatch ``indices`` (plate positions); ``rho`` defaults to ``step_size(state.step)``."""
        if self.plan is None:
            raise RuntimeError("call init(rng_key, *args) before update(state, indices)")
        weight = jnp.asarray(core.plate_weight(indices, self.plate))
        rho = self.step_size(state.step) if rho is None else rho
        eta, mu = self._step(state.natural, state.mean, weight, weight, jnp.asarray(rho, dtype=weight.dtype))
        return NGSVIState(eta, mu, state.step + 1)

    def evaluate(self, state: NGSVIState) -> tuple[NGSVIState, float]:
        """Re-optimize the locals on every row given the globals; return that state and its exact ELBO."""
        rows = jnp.ones(self.plate.size)
        eta, mu = self._step(state.natural, state.mean, rows, rows, jnp.asarray(0.0))
        eta = {**eta, **{n: state.natural[n] for n in self.globals}}
        mu = {**mu, **{n: state.mean[n] for n in self.globals}}
        return NGSVIState(eta, mu, state.step), float(exact_elbo(self.plan, mu, eta))

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
        init_key, batch_key = jax.random.split(rng_key)
        state = self.init(init_key, *args, **kwargs)
        rng = np.random.default_rng(int(jax.random.randint(batch_key, (), 0, 2**31 - 1)))
        per_epoch = -(-self.plate.size // self.batch_size)
        every = per_epoch if elbo_every is None else int(elbo_every)
        elbos, steps = [], []
        bar = tqdm(range(num_epochs * per_epoch), disable=not progress_bar, desc="NGSVI")
        batches: list = []
        for _ in bar:
            if not batches:
                batches = core.epoch_batches(self.plate.size, self.batch_size, rng)
            state = self.update(state, batches.pop(0))
            if state.step % every == 0:
                state, value = self.evaluate(state)
                elbos.append(value)
                steps.append(state.step)
                bar.set_postfix(elbo=value)
        bar.close()
        posterior = {n: _distribution(self.plan.latents[n].q_family, state.natural[n]) for n in self.globals}
        return NGSVIResult(posterior, np.asarray(elbos), np.asarray(steps, dtype=int), state.step, time.perf_counter() - start, state)
