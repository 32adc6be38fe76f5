"""External reference suite: posteriordb posteriors ported by hand to the zoo.

Eight posteriors of the Stan project's posterior database (stan-dev/posteriordb,
BSD-3-Clause; Magnusson et al., "posteriordb: testing, benchmarking and developing
Bayesian inference algorithms", 2024), each written once against :mod:`pyroapi` from
its Stan file and registered with ``reference="posteriordb"``:

* naming: zoo name = ``"pdb_"`` + posteriordb name with ``-`` replaced by ``_``,
  e.g. ``kidiq-kidscore_momhs`` -> ``pdb_kidiq_kidscore_momhs``
  (:data:`POSTERIORDB_NAMES` maps back);
* site names are Stan's parameter names; a Stan vector ``beta[1]..beta[k]`` is one site
  ``beta`` of shape ``(k,)`` (0-based); Stan's constraints are the sites' supports;
* Stan's implicit improper flat priors are reproduced exactly by the hosts'
  ``ImproperUniform`` (:mod:`models.posteriordb._host`); no proper stand-in is used;
* ``generate_data(seed)`` returns the fixed posteriordb data (the seed is ignored);
  ``reference_draws()`` returns every 5th of Stan's 10 × 1000 gold-standard draws;
  :func:`reference_summary` gives the mean/sd/MCSE of every coordinate from all draws.

Files and provenance: ``models/posteriordb/data/README.md``.
"""

from __future__ import annotations

from models.posteriordb import diamonds, eight_schools, regressions  # noqa: F401  (register)
from models.posteriordb._data import (
    POSTERIORDB_NAMES,
    reference_draws,
    reference_summary,
    zoo_name,
)

__all__ = ["POSTERIORDB_NAMES", "reference_draws", "reference_summary", "zoo_name"]
