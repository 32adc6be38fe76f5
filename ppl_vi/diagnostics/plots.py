"""The report's figures (matplotlib, Agg, saved as PNG); NumPy and pandas in.

Each function returns a ``matplotlib.figure.Figure``; :func:`save_figure` writes and
closes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ppl_vi.diagnostics.metrics import coordinate_draws  # noqa: E402
from ppl_vi.diagnostics.psis import BAD_KHAT, GOOD_KHAT  # noqa: E402


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` as PNG at ``path`` and close it."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def elbo_traces(traces: Mapping[str, np.ndarray], log_evidence: Optional[float] = None) -> plt.Figure:
    """ELBO per iteration of each method (noisy SVI traces drawn with a running mean).

    Parameters
    ----------
    traces : mapping
        Method -> ``(num_iterations,)`` ELBO trace.
    log_evidence : float, optional
        Exact ``log p(x)``, drawn as the ceiling every ELBO stays under.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    lows, highs = [], []
    for method, trace in traces.items():
        trace = np.asarray(trace, dtype=float)
        steps = np.arange(1, trace.size + 1)
        if trace.size > 100:
            ax.plot(steps, trace, alpha=0.2, lw=0.5)
            width = max(trace.size // 50, 2)
            smooth = np.convolve(trace, np.ones(width) / width, mode="valid")
            ax.plot(steps[width - 1 :], smooth, label=f"{method} (running mean)", color=ax.lines[-1].get_color())
        else:
            ax.plot(steps, trace, marker="o", ms=3, label=method)
        tail = trace[trace.size // 10 :]
        if tail.size:
            lows.append(np.nanpercentile(tail, 1))
            highs.append(np.nanmax(tail))
    if log_evidence is not None and np.isfinite(log_evidence):
        ax.axhline(log_evidence, color="k", ls="--", lw=1, label="log p(x) (exact)")
        highs.append(log_evidence)
    if lows:
        span = max(highs) - min(lows)
        ax.set_ylim(min(lows) - 0.05 * span, max(highs) + 0.05 * span + 1e-9)
    ax.set_xscale("log")
    ax.set_xlabel("iteration (SVI step / CAVI step)")
    ax.set_ylabel("ELBO")
    ax.set_title("ELBO traces")
    ax.legend(fontsize=8)
    return fig


def marginals(
    reference: Mapping[str, np.ndarray], methods: Mapping[str, Mapping[str, np.ndarray]], max_panels: int = 12
) -> plt.Figure:
    """Histogram of each coordinate: reference filled, each method as a step outline."""
    ref_coords = coordinate_draws(reference)
    keys = list(ref_coords)[:max_panels]
    method_coords = {m: coordinate_draws({s: d[s] for s in reference if s in d}) for m, d in methods.items()}
    cols = min(3, max(len(keys), 1))
    rows = max(1, int(np.ceil(len(keys) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.ravel(), keys):
        ref = ref_coords[key].ravel()
        lo, hi = np.percentile(ref, [0.5, 99.5])
        pad = 0.25 * (hi - lo + 1e-12)
        bins = np.linspace(lo - pad, hi + pad, 50)
        ax.hist(ref, bins=bins, density=True, color="0.8", label="reference")
        for method, coords in method_coords.items():
            if key in coords:  # density over all draws: mass outside the panel is not folded in
                values = coords[key].ravel()
                weights = np.full(values.shape, 1.0 / (values.size * (bins[1] - bins[0])))
                ax.hist(values, bins=bins, weights=weights, histtype="step", lw=1.2, label=method)
        ax.set_title(key[1], fontsize=9)
        ax.set_yticks([])
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle("Marginal posteriors vs reference")
    fig.tight_layout()
    return fig


def khat_error_chart(summary: pd.DataFrame) -> plt.Figure:
    """Left: k̂ per method (median, bar to max) with 0.5/0.7 lines. Right: worst errors."""
    fig, (ax_k, ax_e) = plt.subplots(1, 2, figsize=(10, 3.8))
    ok = summary[summary["status"] == "ok"].reset_index(drop=True)
    x = np.arange(len(ok))
    if "khat_median" in ok:
        median = ok["khat_median"].to_numpy(dtype=float)
        top = ok["khat_max"].to_numpy(dtype=float)
        shown = np.isfinite(median) & np.isfinite(top)
        ax_k.errorbar(x[shown], median[shown], yerr=[np.zeros(shown.sum()), top[shown] - median[shown]],
                      fmt="o", capsize=4)
    ax_k.axhline(GOOD_KHAT, color="tab:green", ls="--", lw=1, label="0.5: good")
    ax_k.axhline(BAD_KHAT, color="tab:red", ls="--", lw=1, label="0.7: unreliable")
    ax_k.set_ylim(bottom=min(0.0, ax_k.get_ylim()[0]), top=max(1.0, ax_k.get_ylim()[1]))
    ax_k.set_xticks(x, ok["method"], rotation=20)
    ax_k.set_ylabel("Pareto k̂ (median, bar to max over seeds)")
    ax_k.legend(fontsize=8)
    if "max_abs_mean_error_sd" in ok:
        width = 0.4
        ax_e.bar(x - width / 2, ok["max_abs_mean_error_sd"].fillna(0), width, label="max |mean error| (sd)")
        ax_e.bar(x + width / 2, np.abs(np.log(ok["worst_sd_ratio"].astype(float))).fillna(0), width,
                 label="max |log sd ratio|")
        ax_e.plot(x, ok["floor_mean_error_sd"], "k_", ms=20, label="reference floor")
    ax_e.set_xticks(x, ok["method"], rotation=20)
    ax_e.set_title("Worst coordinate errors")
    ax_e.legend(fontsize=8)
    fig.tight_layout()
    return fig
