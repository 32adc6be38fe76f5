"""Shipped posteriordb files: the data sets, the reference draws and their summaries.

Files live in ``models/posteriordb/data/`` (written by :mod:`models.posteriordb._vendor`):
``data/DATA.json.zip`` are posteriordb's data files verbatim; ``draws/NAME.npz`` hold
every 5th gold-standard draw plus per-coordinate mean, sd and bulk ESS of all 10 × 1000
draws (see the vendor script).
"""

from __future__ import annotations

import functools
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from models import register
from models._base import ZooModel

DATA_DIR = Path(__file__).resolve().parent / "data"
_PREFIX = "pdb_"

#: zoo name -> posteriordb posterior name, filled by :func:`register_posterior`.
POSTERIORDB_NAMES: dict[str, str] = {}


def zoo_name(posteriordb_name: str) -> str:
    """``"kidiq-kidscore_momhs"`` -> ``"pdb_kidiq_kidscore_momhs"``."""
    return _PREFIX + posteriordb_name.replace("-", "_")


@functools.cache
def load_data(data_name: str) -> dict:
    """posteriordb data set ``data_name`` as a dict of NumPy arrays / Python ints."""
    path = DATA_DIR / "data" / f"{data_name}.json.zip"
    with zipfile.ZipFile(path) as archive:
        raw = json.loads(archive.read(f"{data_name}.json"))
    return {
        key: np.asarray(value, dtype=np.float64) if isinstance(value, list) else value
        for key, value in raw.items()
    }


@functools.cache
def _load_reference(posteriordb_name: str) -> dict[str, dict[str, np.ndarray]]:
    """``{"draws"|"mean"|"sd"|"ess": {site: array}}`` for one posterior."""
    with np.load(DATA_DIR / "draws" / f"{posteriordb_name}.npz") as npz:
        out: dict[str, dict[str, np.ndarray]] = {}
        for key in npz.files:
            kind, site = key.split("__", 1)
            out.setdefault(kind, {})[site] = npz[key]
    return out


def _posteriordb_name(name: str) -> str:
    if name in POSTERIORDB_NAMES:
        return POSTERIORDB_NAMES[name]
    if name in POSTERIORDB_NAMES.values():
        return name
    raise KeyError(
        f"unknown posteriordb model {name!r}; available: {', '.join(sorted(POSTERIORDB_NAMES))}"
    )


def reference_draws(name: str) -> dict[str, np.ndarray]:
    """Thinned gold-standard draws: site -> array ``(10 chains, 200 draws, *site_shape)``.

    ``name`` is a zoo name (``"pdb_..."``) or a posteriordb name. Sites are Stan's
    parameters and transformed parameters, plus derived latent sites of the port.
    """
    return {
        site: values.copy()
        for site, values in _load_reference(_posteriordb_name(name))["draws"].items()
    }


def reference_summary(name: str) -> pd.DataFrame:
    """Reference posterior mean and sd of every coordinate, from all 10,000 draws.

    Parameters
    ----------
    name : str
        Zoo name (``"pdb_kidiq_kidscore_momhs"``) or posteriordb name (``"kidiq-kidscore_momhs"``).

    Returns
    -------
    pandas.DataFrame
        One row per coordinate, indexed by ``coordinate`` (``"beta[0]"``: site name and
        0-based NumPy index; ``"sigma"`` for scalars), with columns ``site``, ``index``
        (tuple), ``stan_name`` (Stan's 1-based label), ``mean``, ``sd``, ``ess`` (bulk
        ESS of the full reference) and ``mcse`` (``sd / sqrt(ess)``, the Monte Carlo
        standard error of ``mean``).
    """
    stats = _load_reference(_posteriordb_name(name))
    rows = []
    for site, mean in stats["mean"].items():
        for index in np.ndindex(mean.shape):
            label = f"[{','.join(str(i) for i in index)}]" if index else ""
            stan_label = f"[{','.join(str(i + 1) for i in index)}]" if index else ""
            sd, ess = float(stats["sd"][site][index]), float(stats["ess"][site][index])
            rows.append(
                {
                    "coordinate": site + label,
                    "site": site,
                    "index": index,
                    "stan_name": site + stan_label,
                    "mean": float(mean[index]),
                    "sd": sd,
                    "ess": ess,
                    "mcse": sd / np.sqrt(ess),
                }
            )
    return pd.DataFrame(rows).set_index("coordinate")


def register_posterior(
    posteriordb_name: str,
    description: str,
    program: Callable,
    latent_sites: tuple[str, ...],
    make_data: Callable[[], dict],
) -> ZooModel:
    """Register the port of ``posteriordb_name`` under :func:`zoo_name` of it.

    ``make_data()`` returns the program's keyword arguments (NumPy arrays) built from the
    shipped data set; ``generate_data(seed)`` returns it unchanged for every seed.
    """
    name = zoo_name(posteriordb_name)

    def generate_data(seed: int = 0, **sizes) -> dict:
        if sizes:
            raise TypeError(
                f"{name}: posteriordb data are fixed; got size arguments {sorted(sizes)}"
            )
        return {
            key: np.array(value) if isinstance(value, np.ndarray) else value
            for key, value in make_data().items()
        }

    POSTERIORDB_NAMES[name] = posteriordb_name
    return register(
        ZooModel(
            name=name,
            description=f"{description} (posteriordb {posteriordb_name})",
            program=program,
            latent_sites=latent_sites,
            conjugate=False,
            reference="posteriordb",
            generate_data=generate_data,
            reference_draws=lambda: reference_draws(posteriordb_name),
            extras={"reference_summary": lambda: reference_summary(posteriordb_name)},
        )
    )
