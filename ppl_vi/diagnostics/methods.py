"""The method registry of :func:`ppl_vi.compare`: names -> runners.

A *runner* takes a :class:`Problem` (a program, its data and backend), an optional
*variant* (the text after ``:`` in ``"svi:AutoMultivariateNormal"``), a seed and keyword
options, and returns a :class:`MethodResult` of NumPy arrays. New methods plug in with
one call::

    register_method("langevin", run_langevin, "annealed Langevin dynamics")

Built in: ``svi`` (host autoguides; variant = guide class, default ``AutoNormal``),
``nuts`` (NumPyro NUTS, also the reference for Pyro programs), ``exact`` (the zoo's
closed form), ``cavi`` (``ppl_vi.<backend>.CAVI``), ``ngsvi`` (``NaturalGradientSVI``), ``local_svi``
(``LocalGuide``),
``amortized`` (``AmortizedGuide`` with an MLP encoder; models whose latents are all
local to one plate) and ``langevin`` (MALA on the posterior score,
``ppl_vi.<backend>.langevin_posterior``). Backend code lives in
:mod:`ppl_vi.diagnostics.backend_numpyro` / ``backend_pyro`` and is imported only when
a runner runs, so this module stays NumPy-only at import time.
"""

from __future__ import annotations

import importlib
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ppl_vi.diagnostics.convergence import PlateauTest

SVI_GUIDES = (
    "AutoNormal",
    "AutoDiagonalNormal",
    "AutoMultivariateNormal",
    "AutoLowRankMultivariateNormal",
)


@dataclass
class Problem:
    """One model, its data and the backend the methods run in.

    Attributes
    ----------
    name : str
        Zoo name, or ``"custom"`` for a user's ``(model, args, kwargs)``.
    backend : {"numpyro", "pyro"}
    model : callable
        Native program of ``backend``, called as ``model(*args, **kwargs)``.
    args, kwargs : tuple, dict
        Its data, as ``backend`` arrays.
    zoo : ZooModel or None
        The zoo entry (gives the NumPyro twin of a Pyro program, exact posteriors).
    num_draws : int
        Draws per method (and per k̂ seed).
    num_khat_seeds : int
        Independent sets of ``num_draws`` importance weights for k̂.
    progress_bar : bool
    exact : ExactPosterior or None
        The zoo's closed form on this data, when it has one.
    numpy_data : dict or None
        The zoo data as NumPy (the kwargs of the program before conversion).
    """

    name: str
    backend: str
    model: Callable[..., Any]
    args: tuple
    kwargs: dict
    zoo: Any = None
    num_draws: int = 1000
    num_khat_seeds: int = 3
    progress_bar: bool = True
    exact: Any = None
    numpy_data: Optional[dict] = None
    _sites: Optional[tuple[tuple[str, ...], tuple[str, ...]]] = field(default=None, repr=False)

    def relabel(self, draws: dict) -> dict:
        """The zoo's canonical labelling of draws, if it has one (else ``draws`` unchanged).

        A zoo model with exchangeable components (mixtures, topics) may provide
        ``extras["relabel"](draws) -> draws`` on ``(chain, draw, *shape)`` arrays, e.g.
        sorting components by location, so that label switching between chains or
        methods is not counted as error.
        """
        relabel = self.zoo.extras.get("relabel") if self.zoo is not None else None
        return draws if relabel is None else dict(relabel(dict(draws)))

    def backend_module(self):
        """The runner module of this problem's backend (imported now)."""
        return importlib.import_module(f"ppl_vi.diagnostics.backend_{self.backend}")

    @property
    def latent_sites(self) -> tuple[str, ...]:
        """Continuous latent sites (those the metrics compare)."""
        return self._inspect()[0]

    @property
    def enumerated_sites(self) -> tuple[str, ...]:
        """Discrete latent sites marked for enumeration (marginalized by SVI/NUTS)."""
        return self._inspect()[1]

    def _inspect(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if self._sites is None:
            self._sites = self.backend_module().inspect_sites(self)
        return self._sites


@dataclass
class MethodResult:
    """What a runner returns (NumPy only).

    Attributes
    ----------
    method : str
        The method spec as requested, e.g. ``"svi:AutoMultivariateNormal"``.
    draws : dict
        Site -> ``(chain, draw, *site_shape)``.
    moments : dict or None
        Site -> ``(mean, sd)`` where the method knows them exactly.
    elbo_trace : array or None
        ELBO per iteration (SVI steps, CAVI steps: sweeps or SQUAREM steps).
    elbo : float
        Final ELBO: exact where the method has it, else a Monte Carlo estimate from the
        importance weights; NaN where undefined (NUTS).
    log_weights : list of arrays
        One ``(num_draws,)`` array of ``log p(x,z) - log q(z)`` per k̂ seed.
    num_iterations : int or None
    converged : bool or None
    stop_reason : str
    sample_stats : dict
        Name -> ``(chain, draw)`` array.
    notes : list of str
        Remarks shown in the report (divergences, how the ELBO was estimated, ...).
    status : {"ok", "failed"}
    error, traceback : str
        Why a failed method failed (one line; the full traceback).
    wall_time : float
        Seconds, set by :func:`run_method`.
    """

    method: str
    draws: dict = field(default_factory=dict)
    moments: Optional[dict] = None
    elbo_trace: Optional[np.ndarray] = None
    elbo: float = float("nan")
    log_weights: list = field(default_factory=list)
    num_iterations: Optional[int] = None
    converged: Optional[bool] = None
    stop_reason: str = ""
    sample_stats: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    status: str = "ok"
    error: str = ""
    traceback: str = ""
    wall_time: float = float("nan")


Runner = Callable[..., MethodResult]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its runner, a one-line description and allowed variants."""

    name: str
    run: Runner
    description: str
    variants: Optional[tuple[str, ...]] = None
    default_variant: Optional[str] = None


_METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str, run: Runner, description: str = "",
    variants: Optional[tuple[str, ...]] = None, default_variant: Optional[str] = None,
) -> MethodSpec:
    """Register ``run(problem, variant, seed, **options) -> MethodResult`` as ``name``."""
    if ":" in name or "," in name:
        raise ValueError(f"method name {name!r} may not contain ':' or ','")
    spec = MethodSpec(name, run, description, variants, default_variant)
    _METHODS[name] = spec
    return spec


def method_names() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_METHODS)


def method_specs() -> list[MethodSpec]:
    """Registered methods (name, description, variants), sorted by name."""
    return [_METHODS[name] for name in method_names()]


def resolve_method(method: str) -> tuple[MethodSpec, Optional[str]]:
    """Split ``"name[:variant]"`` and check both; errors list the valid choices."""
    name, _, variant = method.partition(":")
    if name not in _METHODS:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(method_names())}")
    spec = _METHODS[name]
    if not variant:
        return spec, spec.default_variant
    if spec.variants is None:
        raise ValueError(f"method {name!r} takes no variant, got {method!r}")
    if variant not in spec.variants:
        raise ValueError(
            f"unknown variant {variant!r} of method {name!r}; available: {', '.join(spec.variants)}"
        )
    return spec, variant


def run_method(method: str, problem: Problem, seed: int, **options: Any) -> MethodResult:
    """Run one method; any exception becomes a ``status="failed"`` result with the error."""
    spec, variant = resolve_method(method)
    start = time.perf_counter()
    try:
        result = spec.run(problem, variant, seed, **options)
        result.method = method
    except Exception as exc:  # a failing method must not stop the comparison
        result = MethodResult(method=method, status="failed", error=f"{type(exc).__name__}: {exc}")
        result.traceback = traceback.format_exc()
    result.wall_time = time.perf_counter() - start
    return result


def _svi(problem: Problem, variant: Optional[str], seed: int, **options: Any) -> MethodResult:
    plateau = PlateauTest(**options.pop("plateau", {}))
    return problem.backend_module().run_svi(problem, variant or "AutoNormal", seed, plateau=plateau, **options)


def _local_svi(problem: Problem, variant: Optional[str], seed: int, **options: Any) -> MethodResult:
    plateau = PlateauTest(**options.pop("plateau", {}))
    return problem.backend_module().run_svi(problem, "LocalGuide", seed, plateau=plateau, **options)


def _amortized(problem: Problem, variant: Optional[str], seed: int, **options: Any) -> MethodResult:
    plateau = PlateauTest(**options.pop("plateau", {}))
    return problem.backend_module().run_svi(problem, "AmortizedGuide", seed, plateau=plateau, **options)


def _ngsvi(problem: Problem, variant: Optional[str], seed: int, **options: Any) -> MethodResult:
    return problem.backend_module().run_ngsvi(problem, seed, **options)


def _nuts(problem: Problem, variant: Optional[str], seed: int, **options: Any) -> MethodResult:
    # NumPyro NUTS on the zoo's NumPyro twin; only a user's own Pyro program needs Pyro's NUTS.
    if problem.backend == "numpyro" or problem.zoo is not None:
        module = importlib.import_module("ppl_vi.diagnostics.backend_numpyro")
    else:
        module = problem.backend_module()
    return module.run_nuts(problem, seed, **options)


def _cavi(problem: Problem, variant: Optional[str], seed: int, **options: Any) -> MethodResult:
    return problem.backend_module().run_cavi(problem, seed, **options)


def _langevin(problem: Problem, variant: Optional[str], seed: int, **options: Any) -> MethodResult:
    return problem.backend_module().run_langevin(problem, seed, **options)


def _exact(problem: Problem, variant: Optional[str], seed: int) -> MethodResult:
    if problem.exact is None:
        raise ValueError(f"model {problem.name!r} has no closed-form posterior; use reference 'nuts'")
    exact = problem.exact
    rng = np.random.default_rng(seed)
    sample = exact.sample(rng, problem.num_draws)
    draws = {s: np.asarray(sample[s])[None] for s in problem.latent_sites if s in sample}
    moments = {s: (np.asarray(exact.mean[s]), np.asarray(exact.sd[s])) for s in draws}
    result = MethodResult(method="exact", draws=draws, moments=moments, stop_reason="closed form")
    result.elbo = float("nan") if exact.log_evidence is None else float(exact.log_evidence)
    backend = problem.backend_module()
    try:
        guide = backend.exact_guide(exact.params)
        result.log_weights = backend.importance_log_weights(problem, guide, {}, seed)[1]
    except NotImplementedError as exc:
        result.notes.append(f"no k̂: {exc}")
    return result


register_method("svi", _svi, "stochastic VI with a host autoguide (Trace_ELBO, Adam, plateau stop)",
                variants=SVI_GUIDES, default_variant="AutoNormal")
register_method("local_svi", _local_svi, "SVI with per-datapoint mean-field factors over plate "
                "`local_plate` (default 'data'; ppl_vi LocalGuide), plateau stop")
register_method("amortized", _amortized, "SVI with an MLP encoder q(z_i | x_i) over plate `local_plate` "
                "(default 'data'; ppl_vi AmortizedGuide, local latents only; options data_arg, hidden)")
register_method("ngsvi", _ngsvi, "natural-gradient SVI (Hoffman et al. 2013) for conjugate globals over plate "
                "`local_plate` (default 'data'; options batch_size, num_epochs)")
register_method("nuts", _nuts, "NumPyro NUTS (multiple chains); also the reference for Pyro programs")
register_method("cavi", _cavi, "ppl_vi CAVI: exact mean-field coordinate ascent (conjugate models)")
register_method("exact", _exact, "the zoo's closed-form posterior")
register_method("langevin", _langevin, "MALA on the posterior score from autodiff of the log joint")
