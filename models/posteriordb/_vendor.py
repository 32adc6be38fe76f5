"""Regenerate ``models/posteriordb/data/`` from a posteriordb checkout.

Usage::

    python -m models.posteriordb._vendor /path/to/posteriordb/posterior_database [--thin 5]

For every posterior in :data:`POSTERIORS` this copies the data file
``data/data/DATA.json.zip`` verbatim and writes ``draws/NAME.npz`` from the gold-standard
draws ``reference_posteriors/draws/draws/NAME.json.zip``. Each ``.npz`` holds, per site
(Stan's vector parameters ``beta[1]..beta[k]`` gathered into one array ``beta``):

- ``draws__SITE``: every ``thin``-th draw, shape ``(chains, draws // thin, *site_shape)``;
- ``mean__SITE``, ``sd__SITE``, ``ess__SITE``: mean, standard deviation and ArviZ bulk ESS
  of each coordinate, computed from *all* draws before thinning.

Derived sites (:data:`DERIVED`) are added where a latent site of the port is a
transformed parameter of Stan's output (eight schools: ``theta_trans``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"

#: posteriordb posterior name -> posteriordb data name.
POSTERIORS: dict[str, str] = {
    "eight_schools-eight_schools_noncentered": "eight_schools",
    "kidiq-kidscore_momhs": "kidiq",
    "kidiq-kidscore_momiq": "kidiq",
    "earnings-earn_height": "earnings",
    "earnings-logearn_height": "earnings",
    "mesquite-logmesquite_logvas": "mesquite",
    "nes1980-nes": "nes1980",
    "diamonds-diamonds": "diamonds",
}

#: posterior name -> {new site: function of the site dict}, applied draw by draw.
DERIVED: dict[str, dict[str, Callable[[dict], np.ndarray]]] = {
    "eight_schools-eight_schools_noncentered": {
        "theta_trans": lambda s: (
            (s["theta"] - s["mu"][..., None]) / s["tau"][..., None]
        ),
    },
}

_COORDINATE = re.compile(r"^(?P<site>[A-Za-z_][A-Za-z0-9_]*)(\[(?P<index>[0-9,]+)\])?$")


def read_json_zip(path: Path):
    """The single JSON document inside the zip file ``path``."""
    with zipfile.ZipFile(path) as archive:
        (member,) = archive.namelist()
        return json.loads(archive.read(member))


def gather_sites(chains: list[dict]) -> dict[str, np.ndarray]:
    """Stan's flat columns ``beta[1]``... -> site arrays ``(chains, draws, *shape)``."""
    columns = {
        name: np.array([chain[name] for chain in chains], dtype=np.float64)
        for name in chains[0]
    }
    coordinates: dict[str, dict[tuple, np.ndarray]] = {}
    for name, values in columns.items():
        match = _COORDINATE.match(name)
        if match is None:
            raise ValueError(f"cannot parse the reference column name {name!r}")
        index = (
            tuple(int(i) - 1 for i in match["index"].split(","))
            if match["index"]
            else ()
        )
        coordinates.setdefault(match["site"], {})[index] = values
    sites = {}
    for site, by_index in coordinates.items():
        if () in by_index:
            sites[site] = by_index[()]
            continue
        shape = tuple(
            max(index[d] for index in by_index) + 1
            for d in range(len(next(iter(by_index))))
        )
        array = np.full(next(iter(by_index.values())).shape + shape, np.nan)
        for index, values in by_index.items():
            array[(..., *index)] = values
        if np.isnan(array).any():
            raise ValueError(
                f"site {site!r} has missing coordinates in the reference draws"
            )
        sites[site] = array
    return sites


def vendor_posterior(
    root: Path, name: str, thin: int, out_dir: Path = DATA_DIR
) -> Path:
    """Write ``out_dir/draws/NAME.npz`` for posterior ``name``; return its path."""
    import arviz as az

    sites = gather_sites(
        read_json_zip(
            root / "reference_posteriors" / "draws" / "draws" / f"{name}.json.zip"
        )
    )
    for site, derive in DERIVED.get(name, {}).items():
        sites[site] = derive(sites)
    arrays = {}
    for site, values in sites.items():
        arrays[f"draws__{site}"] = values[:, ::thin]
        arrays[f"mean__{site}"] = values.mean(axis=(0, 1))
        arrays[f"sd__{site}"] = values.std(axis=(0, 1), ddof=1)
        arrays[f"ess__{site}"] = az.ess(
            az.convert_to_dataset({site: values}), method="bulk"
        )[site].values
    out = out_dir / "draws" / f"{name}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "root",
        type=Path,
        help="the posterior_database folder of a posteriordb checkout",
    )
    parser.add_argument(
        "--thin",
        type=int,
        default=5,
        help="keep every THIN-th reference draw (default 5)",
    )
    args = parser.parse_args(argv)
    if not (args.root / "posteriors").is_dir():
        parser.error(
            f"{args.root} is not a posterior_database folder (no posteriors/ inside)"
        )
    (DATA_DIR / "data").mkdir(parents=True, exist_ok=True)
    for name, data_name in POSTERIORS.items():
        source = args.root / "data" / "data" / f"{data_name}.json.zip"
        shutil.copyfile(source, DATA_DIR / "data" / source.name)
        print(f"{name}: {vendor_posterior(args.root, name, args.thin)}")


if __name__ == "__main__":
    main()
