"""Stochastic variational inference with natural gradients for Pyro programs.

Hoffman et al. (2013): local CAVI on a minibatch of the local plate, then a
Robbins–Monro natural-gradient step on the global sites, on the plan cut to the
minibatch's rows (a step costs ``O(|B|)``); the algorithm, the ``N/|B|`` weighting and
its exactness are described in :mod:`ppl_vi.core.ngsvi`. The program is
planned once by :class:`ppl_vi.pyro.CAVI` (the same conjugacy checks and errors).
Randomness (start, minibatch order) comes from torch's global RNG
(``pyro.set_rng_seed``), as in Pyro.

Example
-------
>>> import models
>>> from ppl_vi.pyro import NaturalGradientSVI
>>> zoo = models.get("bayesian_gmm")
>>> ngsvi = NaturalGradientSVI(zoo.pyro_model, local_plate="data", batch_size=50)
>>> result = ngsvi.run(num_epochs=5, **zoo.data("pyro"))       # doctest: +SKIP
>>> result.posterior["locs"].loc                                # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from tqdm.auto import tqdm

from ppl_vi.core import ngsvi as core
from ppl_vi.core.cavi_objective import elbo as exact_elbo
from ppl_vi.core.cavi_result import inference_data
from ppl_vi.core.cavi_sweep import full_natural
from ppl_vi.pyro._trace import to_numpy
from ppl_vi.pyro.cavi import CAVI, _distribution, _grad

__all__ = ["NaturalGradientSVI", "NGSVIState", "NGSVIResult"]


def _scatter(full: torch.Tensor, axis: int, indices: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return full.index_copy(axis, indices, rows)


def _scatter_in_place(full: torch.Tensor, axis: int, indices: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return full.index_copy_(axis, indices, rows)


def _while_loop(cond: Callable, body: Callable, carry: Any) -> Any:
    while bool(cond(carry)):
        carry = body(carry)
    return carry


_HOST = core.Host(_grad, _scatter, _while_loop)
_HOST_IN_PLACE = core.Host(_grad, _scatter_in_place, _while_loop)


class NGSVIState(NamedTuple):
    """Natural and mean parameters per latent site and the step counter ``t``."""

    natural: dict
    mean: dict
    step: int


class NGSVIResult(NamedTuple):
    """Result of :meth:`NaturalGradientSVI.run` (same fields as the NumPyro version).

    Attributes
    ----------
    posterior : dict
        Global site name -> Pyro distribution ``q_g``.
    elbo : ndarray, shape (num_evaluations,)
        Exact full-data ELBO (locals re-optimized on all rows; CAVI's constants).
    elbo_steps : ndarray of int, shape (num_evaluations,)
    num_steps : int
    wall_time : float
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
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            draws = {n: to_numpy(q.sample((num_samples,))) for n, q in self.posterior.items()}
        return inference_data(draws, var_names)


def _plate_frames(model: Callable, args: tuple, kwargs: dict) -> dict:
    """Site name -> ``(plate, dim, size)`` frames, read from one trace of the program."""
    trace = poutine.trace(model).get_trace(*args, **kwargs)
    return {
        name: [(f.name, f.dim, f.size) for f in site["cond_indep_stack"]]
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }


class NaturalGradientSVI:
    """Natural-gradient stochastic VI (Hoffman et al. 2013) for a conditionally conjugate Pyro program.

    Parameters are those of :class:`ppl_vi.numpyro.NaturalGradientSVI`: ``local_plate``
    (the subsampled plate's name), ``num_data`` (its size, checked), ``batch_size``,
    ``step_size`` (``t -> rho_t``, default ``(t + 10)^-0.7``), ``local_tol`` and
    ``max_local_iters`` (the local CAVI loop), ``full_data_start`` (whether :meth:`init`
    fits the start on all the data).
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

    def init(self, *args: Any, **kwargs: Any) -> NGSVIState:
        """Plan the program and pick the start (see ``full_data_start``)."""
        frames = _plate_frames(self.model, args, kwargs)
        plate, self.batch_size = core.local_plate(self.local_plate_name, frames, self.num_data, self.requested_batch_size, core.default_batch_size)
        self.split = core.split_plan(self.cavi.plan(*args, **kwargs), plate)
        self.plan, self.plate, self.locals, self.globals = self.split.plan, plate, self.split.locals, self.split.globals
        start = self.cavi.init()
        start = start._replace(natural=full_natural(self.plan, start.natural, start.mean))  # CAVI keeps no discrete ones
        if not self.full_data_start:
            return NGSVIState(start.natural, start.mean, 0)
        candidates = []
        with torch.no_grad():
            for fit_locals in (False, True):  # CAVI's start locals / locals fitted to its start globals
                eta, mu = self._fit_locals(start.natural, start.mean, core.START_TOL) if fit_locals else (start.natural, start.mean)
                candidates.append(NGSVIState(*core.start_passes(self.split, eta, mu, _grad), 0))
            return max(candidates, key=self._start_score)

    def _start_score(self, state: NGSVIState) -> float:
        """Exact ELBO of a candidate start after a full-data local fit to :data:`~ppl_vi.core.ngsvi.START_TOL`."""
        eta, mu = self._fit_locals(state.natural, state.mean, core.START_TOL)
        return float(exact_elbo(self.plan, mu, eta))

    def _fit_locals(self, eta: dict, mu: dict, tol: float = core.EVALUATE_TOL) -> tuple[dict, dict]:
        return core.local_cavi(self.plan, self.plate, self.locals, eta, mu, _HOST, tol, self.max_local_iters)

    def update(self, state: NGSVIState, indices: np.ndarray, rho: Optional[float] = None, donate: bool = False) -> NGSVIState:
        """One step on the minibatch ``indices`` (distinct plate positions); ``rho`` defaults to ``step_size(state.step)``.

        With ``donate=True`` the new local rows are written into the tensors of ``state``
        (``index_copy_``) instead of into copies of every local tensor, so ``state`` must
        not be used again; :meth:`run` donates.
        """
        if self.plan is None:
            raise RuntimeError("call init(*args) before update(state, indices)")
        indices = torch.as_tensor(core.check_indices(indices, self.plate))
        rho = self.step_size(state.step) if rho is None else rho
        with torch.no_grad():
            host = _HOST_IN_PLACE if donate else _HOST
            eta, mu = core.step(self.split, host, state.natural, state.mean, indices, rho, self.local_tol, self.max_local_iters)
        return NGSVIState(eta, mu, state.step + 1)

    def evaluate(self, state: NGSVIState) -> tuple[NGSVIState, float]:
        """Re-optimize the locals on every row given the globals; return that state and its exact ELBO."""
        with torch.no_grad():
            eta, mu = self._fit_locals(state.natural, state.mean)
            return NGSVIState(eta, mu, state.step), float(exact_elbo(self.plan, mu, eta))

    def run(self, *args: Any, num_epochs: int = 10, elbo_every: Optional[int] = None, progress_bar: bool = False, **kwargs: Any) -> NGSVIResult:
        """``num_epochs`` passes of random minibatches; the ELBO every ``elbo_every`` steps (default: each epoch)."""
        start = time.perf_counter()
        state = self.init(*args, **kwargs)
        state = NGSVIState(*({n: tuple(a.clone() for a in arrays) for n, arrays in tree.items()} for tree in state[:2]), 0)  # donated below
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
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
