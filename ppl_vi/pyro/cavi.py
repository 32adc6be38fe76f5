"""Coordinate-ascent variational inference derived from a Pyro program.

Mean-field ``q(z) = prod_j q_j(z_j)`` with ``q_j`` in the prior's family; each sweep
sets ``q_j(z_j) ∝ exp E_{q_-j}[log p(x, z)]`` exactly (Bishop, PRML §10.1; Blei et al.
2017). How the update is derived without model-specific code — expected log-densities
by rule, dependencies found by probing the program, natural parameters by
``torch.autograd.grad`` — is explained in :mod:`ppl_vi.core.cavi_objective` and
:mod:`ppl_vi.core.cavi_plan`. Sites without a conjugate update are refused before any
iteration; for those models use SVI (``pyro.infer.SVI`` with an ``AutoNormal`` guide,
or :class:`ppl_vi.pyro.LocalGuide`).

Example
-------
>>> import torch, pyro, pyro.distributions as dist
>>> from ppl_vi.pyro import CAVI
>>> def model(x):
...     p = pyro.sample("p", dist.Beta(2.0, 2.0))
...     with pyro.plate("data", x.shape[0]):
...         pyro.sample("x", dist.Bernoulli(p), obs=x)
>>> result = CAVI(model).run(torch.tensor([1.0, 0.0, 1.0]))
>>> result.posterior["p"].concentration1          # doctest: +SKIP
tensor(4.)
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from tqdm.auto import tqdm

from ppl_vi.core import expfam
from ppl_vi.core.cavi_acceleration import accelerated_step, check_acceleration, resolve_acceleration, scheduled
from ppl_vi.core.cavi_objective import Plan
from ppl_vi.core.cavi_plan import build_plan
from ppl_vi.core.cavi_result import inference_data, stop_reason
from ppl_vi.core.cavi_start import initial_responsibilities, initial_state
from ppl_vi.core.cavi_sweep import kept_natural, relative_change
from ppl_vi.pyro._trace import run_sites, to_numpy, to_torch

__all__ = ["CAVI", "CAVIState", "CAVIInfo", "CAVIResult"]


class CAVIState(NamedTuple):
    """CAVI state: natural (continuous sites only, :func:`~ppl_vi.core.cavi_sweep.kept_natural`)
    and mean parameters per latent site, last ELBO, step, and the
    extrapolation record of :func:`~ppl_vi.core.cavi_acceleration.accelerated_step` (0 before the first step)."""

    natural: dict
    mean: dict
    elbo: torch.Tensor
    step: int
    relaxation: torch.Tensor


class CAVIInfo(NamedTuple):
    """What one step reports: the ELBO after it and its relative change."""

    elbo: torch.Tensor
    relative_change: torch.Tensor


class CAVIResult(NamedTuple):
    """Result of :meth:`CAVI.run` (same fields as the NumPyro version).

    Attributes
    ----------
    posterior : dict
        Latent site name -> Pyro distribution ``q_j``.
    elbo : ndarray, shape (num_steps,)
        Exact ELBO after each step, a sweep or a SQUAREM step (best restart).
    converged : bool
    num_steps : int
    stop_reason : {"converged", "max_steps", "nan"}
    wall_time : float
    restart_elbos : ndarray, shape (num_restarts,)
    state : CAVIState
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
        names = list(self.posterior) if var_names is None else list(var_names)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            draws = {n: to_numpy(q.sample((num_samples,))) for n, q in self.posterior.items() if n in names}
        return inference_data(draws, names)


def _grad(fn: Callable, x: tuple) -> tuple:
    x = tuple(t.detach().requires_grad_(True) for t in x)
    with torch.enable_grad():
        grads = torch.autograd.grad(fn(x), x, allow_unused=True)
    return tuple(torch.zeros_like(t) if g is None else g.detach() for t, g in zip(x, grads))


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
    """``q_j`` as a Pyro distribution, from its natural parameters ``eta`` (a discrete
    site's from its probabilities ``mu``, when given)."""
    if q_family == "Wishart":
        params = expfam.family("Wishart").params_from_natural(eta)
        return dist.Wishart(params["df"], covariance_matrix=params["scale_matrix"])
    if q_family in ("Categorical", "Bernoulli"):
        return _DIST[q_family](probs=mu[0] if mu is not None else expfam.family(q_family).mean_from_natural(eta)[0])
    return _DIST[q_family](**expfam.family(q_family).params_from_natural(eta))


class CAVI:
    """Exact mean-field CAVI for a conditionally conjugate Pyro program.

    Parameters
    ----------
    model : callable
        An ordinary Pyro program.
    num_restarts : int
        Independent starts (run one after the other); the best final ELBO is kept.
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
    ``init(*args, **kwargs)`` derives the plan and returns a :class:`CAVIState`;
    ``update(state)`` is one step (a sweep, or a step of the resolved acceleration),
    returning ``(state, CAVIInfo)``. Randomness (the
    starts) comes from torch's global RNG, as in Pyro (``pyro.set_rng_seed``).
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

    def plan(self, *args: Any, **kwargs: Any) -> Plan:
        """Derive (or refuse) the CAVI plan of ``model(*args, **kwargs)``."""
        self._run_sites = run_sites(self.model, args, kwargs)
        self._plan, _ = build_plan(self._run_sites, np.random.default_rng(0), to_torch, "pyro")
        self.step_kind = resolve_acceleration(self._plan, self.acceleration)
        return self._plan

    def init(self, *args: Any, **kwargs: Any) -> CAVIState:
        """Plan the program (when given arguments) and return a starting state."""
        if args or kwargs or self._plan is None:
            self.plan(*args, **kwargs)
        plan = self._plan
        seed = int(torch.randint(0, 2**31 - 1, ()))
        rng = np.random.default_rng(seed)
        prior = self._run_sites(None, seed)
        base = {n: to_torch(prior[n].value) for n, s in plan.latents.items() if not s.discrete}
        resp = {n: to_torch(initial_responsibilities(plan, s, rng, to_numpy, self.seed_from_data)) for n, s in plan.latents.items() if s.discrete}
        eta, mu = initial_state(plan, base, resp)
        return CAVIState(kept_natural(plan, eta), mu, torch.tensor(-float("inf")), 0, torch.tensor(0.0))

    def update(self, state: CAVIState) -> tuple[CAVIState, CAVIInfo]:
        """One step of the resolved ``acceleration``. Under SQUAREM, :meth:`run` takes plain
        sweeps first (:func:`~ppl_vi.core.cavi_acceleration.scheduled`); a loop of ``update``
        calls takes SQUAREM steps from the first."""
        return self._update(state, self.step_kind)

    def _update(self, state: CAVIState, step_kind: Optional[str]) -> tuple[CAVIState, CAVIInfo]:
        if self._plan is None:
            raise RuntimeError("call init(*args) before update(state)")
        with torch.no_grad():
            eta, mu, value, factor = accelerated_step(self._plan, step_kind, state.natural, state.mean, _grad, state.relaxation)
        value = value.detach()
        return CAVIState(kept_natural(self._plan, eta), mu, value, state.step + 1, factor), CAVIInfo(value, relative_change(value, state.elbo))

    def run(self, *args: Any, num_steps: int = 10_000, tol: float = 1e-8, progress_bar: bool = False, **kwargs: Any) -> CAVIResult:
        """Run steps until the relative ELBO change is below ``tol`` or ``num_steps`` (a cap)."""
        start = time.perf_counter()
        self.plan(*args, **kwargs)
        best = None
        finals = []
        for restart in range(self.num_restarts):
            state = self.init()
            history, reason = [], "max_steps"
            bar = tqdm(range(num_steps), disable=not progress_bar, desc=f"CAVI (start {restart + 1})")
            for taken in bar:
                state, info = self._update(state, scheduled(self.step_kind, taken))
                history.append(float(info.elbo))
                if np.isnan(history[-1]):
                    reason = "nan"
                    break
                bar.set_postfix(elbo=history[-1])
                if float(info.relative_change) < tol:
                    reason = "converged"
                    break
            bar.close()
            final = history[-1] if history else -np.inf
            finals.append(final)
            if best is None or (not np.isnan(final) and final > best[0]):
                best = (final, state, np.asarray(history), reason)
        _, state, history, reason = best
        posterior = {n: _distribution(s.q_family, state.natural.get(n), state.mean[n]) for n, s in self._plan.latents.items()}
        return CAVIResult(
            posterior, history, reason == "converged", len(history), stop_reason(reason),
            time.perf_counter() - start, np.asarray(finals), state,
        )

    def sample_posterior(self, result: CAVIResult, num_samples: int = 1) -> dict:
        """Draws from ``q``: name -> tensor ``(num_samples, *site_shape)``."""
        return {n: q.sample((num_samples,)) for n, q in result.posterior.items()}

    def guide(self, result: CAVIResult) -> Callable:
        """A guide that samples every latent site from ``q`` (for ``pyro.infer.Predictive``)."""
        posterior = dict(result.posterior)

        def guide(*args: Any, **kwargs: Any) -> dict:
            return {n: pyro.sample(n, q) for n, q in posterior.items()}

        return guide
