"""ppl_vi: variational inference for Pyro and NumPyro programs.

``import ppl_vi`` is light: it imports neither torch nor jax. The backends live in
:mod:`ppl_vi.numpyro` (jax) and :mod:`ppl_vi.pyro` (torch); the backend-neutral
mathematics in :mod:`ppl_vi.core`; comparison and diagnostics in
:mod:`ppl_vi.diagnostics` (NumPy/ArviZ only).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "compare"]


def __getattr__(name: str):
    # ``compare`` pulls pandas/arviz; import it only when asked for.
    if name == "compare":
        from ppl_vi.diagnostics.compare import compare

        return compare
    raise AttributeError(f"module 'ppl_vi' has no attribute {name!r}")
