"""Input checks shared by the zoo's data generators and exact posteriors."""

from __future__ import annotations

from typing import Any


def require(model: str, condition: bool, expectation: str, got: Any) -> None:
    """Raise ``ValueError("<model>: expected <expectation>; got <got>")`` unless ``condition``."""
    if not condition:
        raise ValueError(f"{model}: expected {expectation}; got {got!r}")


def require_positive(model: str, **values: float) -> None:
    """Every named value must be a finite number > 0 (hyperparameters, sizes)."""
    for name, value in values.items():
        require(model, bool(0 < float(value) < float("inf")), f"{name} > 0", value)
