"""Pareto k̂ of importance weights ``log p(x, z) - log q(z)``, z ~ q (Yao et al. 2018).

The generalized-Pareto fit is ArviZ's :func:`arviz.psislw` (Vehtari et al. 2024, PSIS);
this module only interprets it:

* ``k̂ < 0.5`` — the weights have finite variance: q covers the posterior well and
  importance-sampling corrections converge at the usual rate; q can be trusted.
* ``0.5 <= k̂ < 0.7`` — finite mean, infinite variance: PSIS-corrected estimates are
  still usable, but q is visibly off (typically too narrow somewhere).
* ``k̂ >= 0.7`` — the weight tail is too heavy: q misses posterior mass and neither q nor
  importance sampling from it should be trusted.

With ``S`` draws the PSIS paper's sample-size threshold is ``min(1 - 1/log10(S), 0.7)``:
above it, S draws are too few for a reliable estimate even if k̂ < 0.7. k̂ is itself a
noisy estimate (eight schools with AutoNormal: 0.41/0.59/0.61 over three seeds), so
:func:`khat_over_seeds` reports it over several independent draws of S.
"""

from __future__ import annotations

from typing import Sequence

import arviz as az
import numpy as np

GOOD_KHAT = 0.5
BAD_KHAT = 0.7


def pareto_khat(log_weights: np.ndarray) -> float:
    """Pareto k̂ of one set of log importance weights.

    Parameters
    ----------
    log_weights : array, shape (S,)
        ``log p(x, z_s) - log q(z_s)`` for draws ``z_s ~ q``; any additive constant.

    Returns
    -------
    float
        ArviZ's k̂. Constant weights (q equal to the posterior) give ``-inf`` from the
        Pareto fit; this is returned as is (it is below every threshold).
    """
    lw = np.asarray(log_weights, dtype=float)
    if lw.ndim != 1 or lw.size < 10:
        raise ValueError(f"log_weights must be 1-D with at least 10 draws, got shape {lw.shape}")
    if not np.all(np.isfinite(lw)):
        return float("inf")
    spread = lw.max() - lw.min()
    if spread <= 1e-9 * max(1.0, abs(lw.max())):
        return float("-inf")
    _, khat = az.psislw(lw - lw.max())
    return float(np.asarray(khat))


def khat_threshold(num_samples: int) -> float:
    """``min(1 - 1/log10(S), 0.7)``: the largest k̂ that ``S`` draws estimate reliably."""
    if num_samples < 10:
        raise ValueError(f"need at least 10 draws for a k̂ threshold, got {num_samples}")
    return float(min(1.0 - 1.0 / np.log10(num_samples), BAD_KHAT))


def khat_meaning(khat: float, num_samples: int) -> str:
    """One line saying what ``khat`` means for a q fitted with ``num_samples`` draws."""
    if not np.isfinite(khat) and khat > 0:
        return "k̂ undefined: some importance weights are not finite (q puts mass where p is zero)"
    threshold = khat_threshold(num_samples)
    if khat < GOOD_KHAT:
        return (f"k̂ = {khat:.2f} < 0.5: the importance weights have finite variance, so PSIS "
                "corrections of q are reliable")
    if khat < min(BAD_KHAT, threshold):
        return (
            f"k̂ = {khat:.2f} in [0.5, 0.7): q is usable with PSIS correction but misses some "
            "posterior mass (usually too narrow)"
        )
    if khat < BAD_KHAT:
        return (
            f"k̂ = {khat:.2f} is above the sample-size threshold {threshold:.2f} for S = {num_samples}: "
            "more draws are needed before trusting PSIS"
        )
    return f"k̂ = {khat:.2f} >= 0.7: the weight tail is too heavy; q misses posterior mass, do not trust it"


def khat_over_seeds(log_weight_sets: Sequence[np.ndarray]) -> dict[str, float]:
    """k̂ of several independent weight sets: per-set values, median and max.

    Parameters
    ----------
    log_weight_sets : sequence of arrays, each shape (S,)
        One set of log importance weights per seed.

    Returns
    -------
    dict
        ``khat_median``, ``khat_max``, ``khat_threshold`` (for S of the first set) and
        ``khat_seeds`` (a list of the per-seed values).
    """
    if not log_weight_sets:
        raise ValueError("need at least one set of log weights")
    khats = [pareto_khat(lw) for lw in log_weight_sets]
    return {
        "khat_median": float(np.median(khats)),
        "khat_max": float(np.max(khats)),
        "khat_threshold": khat_threshold(len(log_weight_sets[0])),
        "khat_seeds": khats,
    }


def elbo_estimate(log_weight_sets: Sequence[np.ndarray]) -> tuple[float, float]:
    """Monte Carlo ELBO ``E_q[log p(x, z) - log q(z)]`` and its standard error.

    Parameters
    ----------
    log_weight_sets : sequence of arrays, each shape (S,)
        Un-normalized log importance weights (all constants of ``log p`` kept).

    Returns
    -------
    (float, float)
        The mean over all draws and its standard error ``sd / sqrt(n)``.
    """
    lw = np.concatenate([np.asarray(x, dtype=float) for x in log_weight_sets])
    return float(lw.mean()), float(lw.std(ddof=1) / np.sqrt(lw.size))
