"""The comparison report: tables, a verdict in words, and ``save(dir)`` (report.md + PNG).

Verdict rules (per method, against the reference and its two-halves noise floor):

* *accurate* — every coordinate has ``|mean error| <= max(0.1, 3 x floor)`` reference
  sds, ``|sd ratio - 1| <= max(0.1, 3 x (floor - 1))`` and ``W1 <= max(0.1, 3 x floor)``
  sds (floors rescaled to the number of draws compared, see
  :mod:`ppl_vi.diagnostics.metrics`);
* k̂ (median over seeds) ``< 0.5`` good, ``[0.5, 0.7)`` usable with PSIS, ``>= 0.7`` do not
  trust (see :mod:`ppl_vi.diagnostics.psis`).

A method is recommended when it is accurate and its k̂ (where defined) is below 0.7;
among those the highest ELBO (then the fastest) is named first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pandas as pd

from ppl_vi.diagnostics.psis import BAD_KHAT, GOOD_KHAT, khat_meaning

MEAN_TOL = 0.1
SD_RATIO_TOL = 0.1
FLOOR_FACTOR = 3.0


@dataclass
class Report:
    """Result of :func:`ppl_vi.compare`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (method, coordinate): reference and method moments, mean error in
        reference sds, sd ratio, W1 in reference sds, and their ``floor_*`` values.
    summary : pandas.DataFrame
        One row per method: status, ELBO, wall time, iterations, convergence, k̂ (median,
        max, per seed, threshold), worst errors.
    inference_data : dict
        Method (and ``"reference"``) -> ``arviz.InferenceData``.
    """

    model: str
    backend: str
    reference_kind: str
    reference_description: str
    table: pd.DataFrame
    summary: pd.DataFrame
    inference_data: dict
    results: dict = field(repr=False, default_factory=dict)
    reference_draws: dict = field(repr=False, default_factory=dict)
    warnings: list = field(default_factory=list)
    num_draws: int = 1000
    log_evidence: Optional[float] = None

    def method_verdicts(self) -> dict[str, str]:
        """Method -> one sentence on its accuracy and k̂."""
        verdicts = {}
        for _, row in self.summary.iterrows():
            if row["status"] != "ok":
                verdicts[row["method"]] = f"failed ({row['error']})."
                continue
            parts = []
            if "max_abs_mean_error_sd" in row and pd.notna(row.get("max_abs_mean_error_sd")):
                parts.append(
                    f"worst mean error {row['max_abs_mean_error_sd']:.3f} sd (floor {row['floor_mean_error_sd']:.3f}), "
                    f"worst sd ratio {row['worst_sd_ratio']:.3f}, worst W1 {row['max_w1_sd']:.3f} sd "
                    f"(floor {row['floor_w1_sd']:.3f}): {'accurate' if self._accurate(row) else 'NOT accurate'}"
                )
            if pd.notna(row.get("khat_median", np.nan)):
                parts.append(khat_meaning(row["khat_median"], self.num_draws) + f" (seeds: {row['khat_seeds']})")
                compared = pd.notna(row.get("max_abs_mean_error_sd", np.nan))
                if compared and row["khat_median"] < BAD_KHAT and not self._accurate(row):
                    parts.append("k̂ alone did not flag this method's error; the reference comparison did")
            verdicts[row["method"]] = "; ".join(parts) + "." if parts else "ran (nothing to compare)."
        return verdicts

    def recommended(self) -> list[str]:
        """Accurate methods with k̂ < 0.7 (or undefined), best ELBO then fastest first.

        ``exact`` against an exact reference is left out: matching itself says nothing
        (an independent NUTS run against a NUTS reference does count).
        """
        ok = [row for _, row in self.summary.iterrows()
              if row["status"] == "ok" and not (row["method"] == "exact" == self.reference_kind)
              and self._accurate(row)]
        ok = [r for r in ok if not (pd.notna(r.get("khat_median", np.nan)) and r["khat_median"] >= BAD_KHAT)]
        ok.sort(key=lambda r: (-(r["elbo"] if pd.notna(r["elbo"]) else -np.inf), r["wall_time_s"]))
        return [r["method"] for r in ok]

    def verdict(self) -> str:
        """The verdict in words: which method to trust and why."""
        trusted = self.recommended()
        lines = []
        if trusted:
            lines.append(
                f"Trust **{trusted[0]}**"
                + (f" (also acceptable: {', '.join(trusted[1:])})" if trusted[1:] else "")
                + f": it matches the {self.reference_kind} reference within tolerance"
                " (means within 0.1 sd or 3x the reference noise floor, sd ratio within 10%)"
                " and, where k̂ is defined, its importance weights do not flag missing posterior mass."
            )
        else:
            lines.append(f"No method matches the {self.reference_kind} reference within tolerance.")
        if self.warnings:
            lines.append("Caution: " + "; ".join(self.warnings) + ".")
        for method, text in self.method_verdicts().items():
            lines.append(f"- **{method}**: {text}")
        return "\n".join(lines)

    def _accurate(self, row: pd.Series) -> bool:
        if pd.isna(row.get("max_abs_mean_error_sd", np.nan)):
            return False
        mean_ok = row["max_abs_mean_error_sd"] <= max(MEAN_TOL, FLOOR_FACTOR * row["floor_mean_error_sd"])
        sd_ok = abs(row["worst_sd_ratio"] - 1.0) <= max(SD_RATIO_TOL, FLOOR_FACTOR * (row["floor_sd_ratio"] - 1.0))
        w1_ok = row["max_w1_sd"] <= max(MEAN_TOL, FLOOR_FACTOR * row["floor_w1_sd"])
        return bool(mean_ok and sd_ok and w1_ok)

    def to_markdown(self, figures: dict[str, str]) -> str:
        """The text of report.md, embedding ``figures`` (caption -> file name)."""
        out = [f"# ppl-vi compare: `{self.model}` ({self.backend})", ""]
        out += [f"Reference: {self.reference_description}.", ""]
        out += ["## Verdict", "", self.verdict(), ""]
        out += ["## Summary (one row per method)", "", _markdown_table(self.summary.drop(columns=["error"])), ""]
        out += ["## Per-coordinate metrics", "",
                "Mean error and W1 in reference-sd units; `floor_*`: the same metric between the two halves "
                "of the reference draws (what finite draws alone produce). Full table: `table.csv`.", ""]
        columns = ["method", "coordinate", "ref_mean", "ref_sd", "mean", "sd", "mean_error_sd",
                   "floor_mean_error_sd", "sd_ratio", "floor_sd_ratio", "w1_sd", "floor_w1_sd"]
        shown = self.table[columns].head(60) if len(self.table) else self.table
        out += [_markdown_table(shown), ""]
        out += ["## Reading k̂", "",
                f"Pareto k̂ of the importance weights log p(x,z) − log q(z), z ~ q, {self.num_draws} draws per seed: "
                f"k̂ < {GOOD_KHAT} means q covers the posterior and importance corrections are reliable; "
                f"{GOOD_KHAT} ≤ k̂ < {BAD_KHAT} means PSIS-corrected estimates are usable but q misses some mass; "
                f"k̂ ≥ {BAD_KHAT} means q should not be trusted. With S draws the estimate itself is reliable "
                "only below min(1 − 1/log10 S, 0.7) (`khat_threshold`).", ""]
        out += ["## Figures", ""]
        out += [f"![{caption}]({name})\n" for caption, name in figures.items()]
        return "\n".join(out)

    def save(self, directory: Union[str, Path], overwrite: bool = False) -> Path:
        """Write report.md, table.csv, summary.csv/json and the PNG figures to ``directory``.

        Raises
        ------
        FileExistsError
            If ``directory/report.md`` exists and ``overwrite`` is False.
        """
        from ppl_vi.diagnostics import plots

        path = Path(directory)
        if (path / "report.md").exists() and not overwrite:
            raise FileExistsError(
                f"{path / 'report.md'} already exists; choose another directory or pass "
                "overwrite=True (CLI: --overwrite)"
            )
        path.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(path / "table.csv", index=False)
        self.summary.to_csv(path / "summary.csv", index=False)
        records = json.loads(self.summary.to_json(orient="records"))
        (path / "summary.json").write_text(json.dumps(
            {"model": self.model, "backend": self.backend, "reference": self.reference_kind,
             "warnings": self.warnings, "methods": records}, indent=2))
        figures = {}
        traces = {m: r.elbo_trace for m, r in self.results.items() if r.elbo_trace is not None and len(r.elbo_trace)}
        if traces:
            figures["ELBO traces"] = plots.save_figure(
                plots.elbo_traces(traces, self.log_evidence), path / "elbo_traces.png").name
        method_draws = {m: r.draws for m, r in self.results.items() if r.status == "ok" and r.draws}
        figures["Marginals vs reference"] = plots.save_figure(
            plots.marginals(self.reference_draws, method_draws), path / "marginals.png").name
        figures["k̂ and errors"] = plots.save_figure(plots.khat_error_chart(self.summary), path / "khat_errors.png").name
        (path / "report.md").write_text(self.to_markdown(figures))
        return path


def _markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (no optional dependency such as tabulate)."""
    if frame.empty:
        return "(empty)"

    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return "" if np.isnan(value) else f"{value:.4g}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
