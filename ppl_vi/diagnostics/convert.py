"""The one adapter from posterior draws to ArviZ ``InferenceData``.

Every method of :func:`ppl_vi.compare` (VI, NUTS, exact, CAVI) hands over plain NumPy
draws ``site -> (chain, draw, *site_shape)``; this module is the only place that knows
which ArviZ data structure receives them. On Python 3.11 pip resolves ArviZ 0.23, whose
``InferenceData`` is built with :func:`arviz.from_dict`; ArviZ 1.x (``DataTree``, Python
>= 3.12) would be a second branch here, chosen by :func:`arviz_major_version`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import arviz as az
import numpy as np


def arviz_major_version() -> int:
    """Major version of the installed ArviZ (0 for the 0.x ``InferenceData`` API)."""
    return int(az.__version__.split(".")[0])


def site_dims(site: str, site_shape: tuple[int, ...]) -> list[str]:
    """Dimension names of a site's coordinates: ``site_dim_0, site_dim_1, ...``."""
    return [f"{site}_dim_{i}" for i in range(len(site_shape))]


def check_draws(draws: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Convert draws to NumPy and check they share ``(chain, draw)`` leading dims.

    Parameters
    ----------
    draws : mapping
        Site name -> array-like of shape ``(chain, draw, *site_shape)``.

    Returns
    -------
    dict
        Site name -> ``np.ndarray`` (float or int, unchanged shape).
    """
    out: dict[str, np.ndarray] = {}
    lead: Optional[tuple[int, int]] = None
    for site, value in draws.items():
        arr = np.asarray(value)
        if arr.ndim < 2:
            raise ValueError(
                f"draws of site {site!r} have shape {arr.shape}; expected (chain, draw, *site_shape)"
            )
        if lead is None:
            lead = arr.shape[:2]
        elif arr.shape[:2] != lead:
            raise ValueError(
                f"draws of site {site!r} have (chain, draw) = {arr.shape[:2]}, "
                f"other sites have {lead}"
            )
        out[site] = arr
    return out


def to_inference_data(
    draws: Mapping[str, Any],
    sample_stats: Optional[Mapping[str, Any]] = None,
    attrs: Optional[Mapping[str, Any]] = None,
) -> az.InferenceData:
    """Build an ``InferenceData`` with a posterior group (and sample_stats if given).

    Parameters
    ----------
    draws : mapping
        Site name -> array ``(chain, draw, *site_shape)``.
    sample_stats : mapping, optional
        Name -> array ``(chain, draw)`` (e.g. ``diverging``, ``log_weight``).
    attrs : mapping, optional
        Attributes of the posterior group (e.g. ``inference_method``).

    Returns
    -------
    arviz.InferenceData
        Coordinates of a site of shape ``(k, m)`` are named ``site_dim_0``/``site_dim_1``
        and numbered ``0..k-1``/``0..m-1``, so ``az.summary`` labels read ``theta[3]``.
    """
    if arviz_major_version() >= 1:
        raise NotImplementedError(
            f"ArviZ {az.__version__} (DataTree API) is not supported yet; this adapter emits "
            "ArviZ 0.x InferenceData (pip install 'arviz<1')"
        )
    posterior = check_draws(draws)
    dims = {site: site_dims(site, arr.shape[2:]) for site, arr in posterior.items()}
    coords: dict[str, np.ndarray] = {}
    for site, arr in posterior.items():
        for name, size in zip(dims[site], arr.shape[2:]):
            coords[name] = np.arange(size)
    stats = None
    if sample_stats:
        stats = {k: np.asarray(v) for k, v in sample_stats.items()}
        lead = next(iter(posterior.values())).shape[:2] if posterior else None
        for name, arr in stats.items():
            if lead is not None and arr.shape[:2] != lead:
                raise ValueError(
                    f"sample_stats {name!r} has shape {arr.shape}; expected leading {lead}"
                )
    idata = az.from_dict(posterior=posterior, sample_stats=stats, coords=coords, dims=dims)
    if attrs:
        idata.posterior.attrs.update({k: str(v) for k, v in attrs.items()})
    return idata


def draws_from_inference_data(idata: az.InferenceData) -> dict[str, np.ndarray]:
    """Site name -> ``(chain, draw, *site_shape)`` array from a posterior group."""
    return {name: np.asarray(var.values) for name, var in idata.posterior.data_vars.items()}
