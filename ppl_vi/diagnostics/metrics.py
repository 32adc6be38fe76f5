"""Per-coordinate accuracy of a posterior approximation against reference draws.

For each scalar coordinate ``c`` of each latent site (``theta[3]``), with reference
mean ``m_ref`` and standard deviation ``s_ref``:

* ``mean_error_sd = (m - m_ref) / s_ref`` — mean error in reference-sd units;
* ``sd_ratio = s / s_ref`` — 1 is right, < 1 is the usual VI under-dispersion;
* ``w1_sd = W1(draws, reference draws) / s_ref`` — 1-Wasserstein distance of the two
  empirical marginals (:func:`scipy.stats.wasserstein_distance`), in sd units.

Finite draws put a floor under each number: the same metrics between the two halves of
the reference draws (split by chains when there are several), reported as ``floor_*``
beside them. Two halves of ``N`` draws compare ``N/2`` with ``N/2``; the method compares
``n`` with ``N``, so the floor is rescaled by ``sqrt((1/n + 1/N) / (4/N))`` (Monte Carlo
error of a difference of two sample statistics) to the sizes actually compared. A method
is indistinguishable from the reference on a coordinate when its metric is within a few
times that floor.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance



def coordinate_draws(draws: Mapping[str, np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
    """Split site draws into scalar coordinates.

    Parameters
    ----------
    draws : mapping
        Site -> array ``(chain, draw, *site_shape)``.

    Returns
    -------
    dict
        ``(site, label) -> (chain, draw)`` array; the label is ``"site"`` for a scalar
        site and ``"site[i,j]"`` otherwise.
    """
    out: dict[tuple[str, str], np.ndarray] = {}
    for site, arr in draws.items():
        arr = np.asarray(arr, dtype=float)
        shape = arr.shape[2:]
        if not shape:
            out[(site, site)] = arr
            continue
        for index in np.ndindex(*shape):
            label = f"{site}[{','.join(map(str, index))}]"
            out[(site, label)] = arr[(slice(None), slice(None)) + index]
    return out


def split_halves(chains_draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of ``(chain, draw)`` draws: by chains if there are >= 2, else by draws."""
    chains = chains_draws.shape[0]
    if chains >= 2:
        half = chains // 2
        return chains_draws[:half].ravel(), chains_draws[half : 2 * half].ravel()
    flat = chains_draws.ravel()
    half = flat.size // 2
    return flat[:half], flat[half : 2 * half]


def marginal_metrics(
    draws: np.ndarray, reference: np.ndarray, ref_mean: float, ref_sd: float,
    mean: Optional[float] = None, sd: Optional[float] = None,
) -> dict[str, float]:
    """The three metrics of one coordinate.

    Parameters
    ----------
    draws, reference : 1-D arrays
        Method draws and reference draws of the coordinate.
    ref_mean, ref_sd : float
        Reference moments (exact where the reference is a closed form).
    mean, sd : float, optional
        The method's moments if it knows them exactly (e.g. CAVI's q); else from draws.

    Returns
    -------
    dict
        ``mean``, ``sd``, ``mean_error_sd``, ``sd_ratio``, ``w1_sd``.
    """
    if not ref_sd > 0:
        raise ValueError(f"reference sd must be positive, got {ref_sd}")
    mean = float(np.mean(draws)) if mean is None else float(mean)
    sd = float(np.std(draws, ddof=1)) if sd is None else float(sd)
    return {
        "mean": mean,
        "sd": sd,
        "mean_error_sd": (mean - ref_mean) / ref_sd,
        "sd_ratio": sd / ref_sd,
        "w1_sd": wasserstein_distance(np.ravel(draws), np.ravel(reference)) / ref_sd,
    }


def reference_floor(reference: np.ndarray, ref_sd: float, num_draws: int) -> dict[str, float]:
    """The noise floor of each metric: the two halves of the reference, rescaled to a
    comparison of ``num_draws`` method draws with all reference draws.

    ``floor_sd_ratio`` is ``1 + |sd ratio of the halves - 1|`` (rescaled): the distance
    from 1 that noise alone produces.
    """
    first, second = split_halves(reference)
    total = first.size + second.size
    scale = np.sqrt((1.0 / num_draws + 1.0 / total) / (4.0 / total))
    m = marginal_metrics(first, second, float(np.mean(second)), ref_sd)
    half_ratio = np.std(first, ddof=1) / np.std(second, ddof=1)
    return {
        "floor_mean_error_sd": scale * abs(m["mean_error_sd"]),
        "floor_sd_ratio": 1.0 + scale * abs(half_ratio - 1.0),
        "floor_w1_sd": scale * m["w1_sd"],
    }


def metrics_table(
    method: str,
    draws: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    reference_moments: Optional[Mapping[str, tuple[np.ndarray, np.ndarray]]] = None,
    method_moments: Optional[Mapping[str, tuple[np.ndarray, np.ndarray]]] = None,
) -> pd.DataFrame:
    """One row per coordinate of every site the method and the reference share.

    Parameters
    ----------
    method : str
        Name put in the ``method`` column.
    draws, reference : mapping
        Site -> ``(chain, draw, *site_shape)`` arrays.
    reference_moments, method_moments : mapping, optional
        Site -> ``(mean, sd)`` arrays of the site's shape, where known exactly.

    Returns
    -------
    pandas.DataFrame
        Columns ``method, site, coordinate, ref_mean, ref_sd, mean, sd``, the metrics and
        their ``floor_*`` values.
    """
    ref_coords = coordinate_draws({s: reference[s] for s in reference if s in draws})
    own_coords = coordinate_draws({s: draws[s] for s in reference if s in draws})
    rows = []
    for (site, label), ref in ref_coords.items():
        if (site, label) not in own_coords:
            raise ValueError(f"method {method!r} has no draws for coordinate {label}")
        index = _index_of(label)
        ref_mean, ref_sd = _moments(reference_moments, site, index, ref)
        own_mean, own_sd = (None, None)
        if method_moments and site in method_moments:
            own_mean, own_sd = _moments(method_moments, site, index, None)
        row = {"method": method, "site": site, "coordinate": label, "ref_mean": ref_mean, "ref_sd": ref_sd}
        row.update(marginal_metrics(own_coords[(site, label)], ref, ref_mean, ref_sd, own_mean, own_sd))
        row.update(reference_floor(ref, ref_sd, own_coords[(site, label)].size))
        rows.append(row)
    return pd.DataFrame(rows)


def _index_of(label: str) -> tuple[int, ...]:
    if "[" not in label:
        return ()
    return tuple(int(i) for i in label[label.index("[") + 1 : -1].split(","))


def _moments(moments, site: str, index: tuple[int, ...], draws: Optional[np.ndarray]) -> tuple[float, float]:
    if moments and site in moments:
        mean, sd = moments[site]
        return float(np.asarray(mean)[index]), float(np.asarray(sd)[index])
    return float(np.mean(draws)), float(np.std(draws, ddof=1))
