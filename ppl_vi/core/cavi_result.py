"""Backend-free pieces of a CAVI result: stop reasons and the hand-over to ArviZ.

The conversion itself lives in :mod:`ppl_vi.diagnostics.convert` (NumPy/ArviZ only), the
one adapter every method's draws go through.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

__all__ = ["STOP_REASONS", "stop_reason", "inference_data"]

STOP_REASONS = ("converged", "max_steps", "nan")


def stop_reason(reason: str) -> str:
    """Check ``reason`` is one of :data:`STOP_REASONS` and return it."""
    if reason not in STOP_REASONS:
        raise ValueError(f"unknown stop reason {reason!r}; expected one of {STOP_REASONS}")
    return reason


def inference_data(draws: Mapping[str, np.ndarray], var_names: Optional[Sequence[str]] = None):
    """``arviz.InferenceData`` with a posterior group of one chain (site coords named
    ``site_dim_i``, as for every method of :func:`ppl_vi.compare`).

    Parameters
    ----------
    draws : dict
        Site name -> array ``(num_samples, *site_shape)``.
    var_names : sequence of str, optional
        Sites to keep (default: all).
    """
    from ppl_vi.diagnostics.convert import to_inference_data

    names = list(draws) if var_names is None else list(var_names)
    missing = [n for n in names if n not in draws]
    if missing:
        raise KeyError(f"no posterior site named {missing}; available: {sorted(draws)}")
    return to_inference_data({n: np.asarray(draws[n])[None] for n in names})
