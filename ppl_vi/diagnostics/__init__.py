"""Method comparison and posterior diagnostics (NumPy, pandas and ArviZ only at import).

- :func:`compare` runs registered methods on a model against a reference posterior;
- :func:`register_method` plugs a new method in by name;
- :func:`to_inference_data` is the one adapter to ArviZ;
- :func:`pareto_khat`, :func:`khat_threshold` interpret PSIS (via :func:`arviz.psislw`);
- :class:`PlateauTest` is the noise-aware ELBO plateau test used for SVI early stopping.
"""

from __future__ import annotations

from ppl_vi.diagnostics.compare import compare
from ppl_vi.diagnostics.convergence import PlateauTest
from ppl_vi.diagnostics.convert import to_inference_data
from ppl_vi.diagnostics.methods import MethodResult, Problem, method_names, register_method
from ppl_vi.diagnostics.psis import khat_threshold, pareto_khat
from ppl_vi.diagnostics.report import Report

__all__ = [
    "MethodResult",
    "PlateauTest",
    "Problem",
    "Report",
    "compare",
    "khat_threshold",
    "method_names",
    "pareto_khat",
    "register_method",
    "to_inference_data",
]
