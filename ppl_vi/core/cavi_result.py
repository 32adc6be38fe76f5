"""Backend-free pieces of a CAVI result: stop reasons and the ArviZ conversion."""

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
    """``arviz.InferenceData`` with a posterior group of one chain.

    Parameters
    ----------
    draws : dict
        Site name -> array ``(num_samples, *site_shape)``.
    var_names : sequence of str, optional
        Sites to keep (default: all).
    """
    import arviz as az

    names = list(draws) if var_names is None else list(var_names)
    missing = [n for n in names if n not in draws]
    if missing:
        raise KeyError(f"no posterior site named {missing}; available: {sorted(draws)}")
    return az.from_dict(posterior={n: np.asarray(draws[n])[None] for n in names})
