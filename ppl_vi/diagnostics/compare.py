"""``compare``: run several inference methods on one model against a reference posterior.

>>> from ppl_vi import compare
>>> report = compare("beta_bernoulli", methods=["svi", "nuts"], progress_bar=False)  # doctest: +SKIP
>>> report.summary[["method", "elbo", "khat_max", "max_abs_mean_error_sd"]]           # doctest: +SKIP
>>> report.save("reports/beta_bernoulli")                                            # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import arviz as az
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ppl_vi.diagnostics.convert import check_draws, to_inference_data
from ppl_vi.diagnostics.methods import MethodResult, Problem, resolve_method, run_method
from ppl_vi.diagnostics.metrics import metrics_table
from ppl_vi.diagnostics.psis import khat_over_seeds
from ppl_vi.diagnostics.report import Report

BACKENDS = ("numpyro", "pyro")
REFERENCES = ("auto", "exact", "posteriordb", "nuts")
RHAT_MAX = 1.01
ESS_MIN = 400


@dataclass
class Reference:
    """The reference posterior: draws ``site -> (chain, draw, *shape)`` and how they were made."""

    kind: str
    draws: dict
    moments: Optional[dict] = None
    description: str = ""
    warnings: list = field(default_factory=list)


def compare(
    model: Union[str, tuple],
    methods: Sequence[str] = ("svi", "nuts"),
    backend: str = "numpyro",
    reference: Union[str, Mapping[str, Any]] = "auto",
    seed: int = 0,
    *,
    num_draws: int = 1000,
    num_khat_seeds: int = 3,
    data_seed: int = 0,
    data_sizes: Optional[Mapping[str, Any]] = None,
    method_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    progress_bar: bool = True,
) -> Report:
    """Run ``methods`` on ``model`` and measure each against a reference posterior.

    Parameters
    ----------
    model : str or (callable, tuple, dict)
        A zoo name (``ppl-vi models``), or a native program of ``backend`` with its
        positional and keyword arguments.
    methods : sequence of str
        Registered names (:func:`ppl_vi.diagnostics.methods.method_names`), with an
        optional variant after a colon: ``"svi:AutoMultivariateNormal"``.
    backend : {"numpyro", "pyro"}
        Host library of the programs and of SVI/CAVI. NUTS is NumPyro's for zoo models
        on both backends.
    reference : {"auto", "exact", "posteriordb", "nuts"} or mapping
        ``"auto"``: the zoo's own choice (exact closed form, posteriordb draws, or NUTS
        with 4 chains whose R̂/ESS are checked). A mapping gives the reference draws
        directly: site -> array ``(chain, draw, *site_shape)``.
    seed : int
        Seed of the methods (the reference uses ``seed + 1000``).
    num_draws : int
        Posterior draws per method, and importance draws per k̂ seed.
    num_khat_seeds : int
        Independent k̂ estimates per method (k̂ is noisy; median and max are reported).
    data_seed, data_sizes :
        Passed to the zoo's ``generate_data(data_seed, **data_sizes)``.
    method_options : mapping, optional
        Method name -> keyword options of its runner, e.g.
        ``{"svi": {"num_steps": 5000, "step_size": 0.02, "plateau": {"window": 100}}}``.
    progress_bar : bool
        tqdm bars over methods and inside long loops.

    Returns
    -------
    Report
        ``table``, ``summary``, ``inference_data``, ``save(dir)``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if isinstance(reference, str) and reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; available: {', '.join(REFERENCES)}")
    for method in methods:
        resolve_method(method)
    problem = make_problem(model, backend, num_draws, num_khat_seeds, data_seed, data_sizes, progress_bar)
    ref = build_reference(problem, reference, seed + 1000)
    options = dict(method_options or {})
    results: dict[str, MethodResult] = {}
    for method in tqdm(methods, desc="methods", disable=not progress_bar):
        result = run_method(method, problem, seed, **dict(options.get(method.partition(":")[0], {})))
        relabelled = problem.relabel(result.draws) if result.draws else result.draws
        if relabelled is not result.draws:
            result.draws, result.moments = relabelled, None  # exact moments belong to the old labels
        results[method] = result
    tables = [
        metrics_table(m, r.draws, ref.draws, ref.moments, r.moments)
        for m, r in results.items() if r.status == "ok"
    ]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    summary = pd.DataFrame([_summary_row(m, r, table) for m, r in results.items()])
    idata = {m: _to_idata(m, r) for m, r in results.items() if r.status == "ok" and r.draws}
    idata["reference"] = to_inference_data(ref.draws, attrs={"inference_method": ref.kind})
    for message in ref.warnings:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return Report(
        model=problem.name, backend=backend, reference_kind=ref.kind,
        reference_description=ref.description, table=table, summary=summary,
        inference_data=idata, results=results, reference_draws=ref.draws,
        warnings=list(ref.warnings), num_draws=num_draws,
        log_evidence=getattr(problem.exact, "log_evidence", None),
    )


def make_problem(model, backend, num_draws, num_khat_seeds, data_seed, data_sizes, progress_bar) -> Problem:
    """A :class:`Problem` from a zoo name or a ``(model, args, kwargs)`` tuple."""
    common = dict(backend=backend, num_draws=num_draws, num_khat_seeds=num_khat_seeds, progress_bar=progress_bar)
    if isinstance(model, str):
        import models

        zoo = models.get(model)
        numpy_data = zoo.generate_data(data_seed, **dict(data_sizes or {}))
        exact = zoo.exact_posterior(numpy_data) if zoo.exact_posterior is not None else None
        return Problem(name=zoo.name, model=zoo.model(backend), args=(),
                       kwargs=models.to_backend(numpy_data, backend), zoo=zoo, exact=exact,
                       numpy_data=numpy_data, **common)
    if isinstance(model, tuple) and len(model) == 3 and callable(model[0]):
        program, args, kwargs = model
        return Problem(name=getattr(program, "__name__", "custom"), model=program,
                       args=tuple(args), kwargs=dict(kwargs), **common)
    raise TypeError(f"model must be a zoo name or a (model, args, kwargs) tuple, got {type(model).__name__}")


def build_reference(problem: Problem, reference: Union[str, Mapping[str, Any]], seed: int) -> Reference:
    """The reference draws ``reference`` asks for (``"auto"``: the zoo's choice, else NUTS)."""
    if not isinstance(reference, str):
        draws = check_draws(reference)
        missing = sorted(set(problem.latent_sites) - set(draws))
        if missing:
            raise ValueError(f"reference draws lack latent sites {missing}; the program's are {problem.latent_sites}")
        shape = next(iter(draws.values())).shape
        return Reference("given", problem.relabel(draws), None, f"draws given by the caller ({shape[0]} x {shape[1]})")
    kind = reference
    if kind == "auto":
        kind = problem.zoo.reference if problem.zoo is not None else "nuts"
    num_ref = max(4000, 4 * problem.num_draws)
    if kind == "exact":
        if problem.exact is None:
            raise ValueError(f"model {problem.name!r} has no closed-form posterior; use reference='nuts'")
        sample = problem.exact.sample(np.random.default_rng(seed), num_ref)
        draws = {s: np.asarray(sample[s])[None] for s in problem.latent_sites if s in sample}
        moments = {s: (np.asarray(problem.exact.mean[s]), np.asarray(problem.exact.sd[s])) for s in draws}
        return Reference("exact", draws, moments, f"closed-form posterior ({num_ref} iid draws)")
    if kind == "posteriordb":
        if problem.zoo is None or problem.zoo.reference_draws is None:
            raise ValueError(f"model {problem.name!r} has no posteriordb reference draws")
        raw = problem.zoo.reference_draws()
        draws = problem.relabel({s: np.asarray(raw[s]) for s in problem.latent_sites if s in raw})
        shape = next(iter(draws.values())).shape if draws else (0, 0)
        return Reference("posteriordb", draws, None, f"posteriordb gold-standard draws ({shape[0]} x {shape[1]})")
    result = run_method("nuts", problem, seed, num_samples=num_ref // 4, num_chains=4)
    if result.status != "ok":
        raise RuntimeError(f"the NUTS reference failed on {problem.name!r}: {result.error}")
    ref = Reference("nuts", problem.relabel(result.draws), None, f"NUTS: {result.stop_reason}")
    ref.warnings.extend(_untrustworthy(ref.draws, problem.name) + [f"NUTS reference: {n}" for n in result.notes])
    return ref


def _untrustworthy(draws: dict, name: str) -> list[str]:
    idata = to_inference_data(draws)
    rhat = float(az.rhat(idata).to_array().max())
    ess = float(az.ess(idata, method="bulk").to_array().min())
    problems = []
    if not rhat <= RHAT_MAX:
        problems.append(f"NUTS reference for {name!r} is not trustworthy: max R̂ = {rhat:.3f} > {RHAT_MAX}")
    if not ess >= ESS_MIN:
        problems.append(f"NUTS reference for {name!r} is not trustworthy: min bulk ESS = {ess:.0f} < {ESS_MIN}")
    return problems


def _summary_row(method: str, result: MethodResult, table: pd.DataFrame) -> dict:
    row = {
        "method": method, "status": result.status, "elbo": result.elbo, "wall_time_s": result.wall_time,
        "iterations": result.num_iterations, "converged": result.converged,
        "stop_reason": result.stop_reason, "error": result.error, "notes": "; ".join(result.notes),
    }
    if result.log_weights:
        stats = khat_over_seeds(result.log_weights)
        row.update({k: v for k, v in stats.items() if k != "khat_seeds"})
        row["khat_seeds"] = " ".join(f"{k:.2f}" for k in stats["khat_seeds"])
    rows = table[table["method"] == method] if len(table) else table
    if len(rows):
        row["max_abs_mean_error_sd"] = float(rows["mean_error_sd"].abs().max())
        row["floor_mean_error_sd"] = float(rows["floor_mean_error_sd"].max())
        with np.errstate(divide="ignore"):
            worst = int(np.argmax(np.abs(np.log(rows["sd_ratio"].to_numpy()))))
        row["worst_sd_ratio"] = float(rows["sd_ratio"].iloc[worst])
        row["floor_sd_ratio"] = float(rows["floor_sd_ratio"].max())
        row["max_w1_sd"] = float(rows["w1_sd"].max())
        row["floor_w1_sd"] = float(rows["floor_w1_sd"].max())
    return row


def _to_idata(method: str, result: MethodResult) -> az.InferenceData:
    chains_draws = next(iter(result.draws.values())).shape[:2]
    stats = {k: v for k, v in result.sample_stats.items() if np.shape(v)[:2] == chains_draws}
    return to_inference_data(result.draws, stats or None, attrs={"inference_method": method})
