"""Fixtures shared by the accelerated-CAVI conformance tests."""

from __future__ import annotations

import pytest

import models
from benchmarks.cavi_gmm import overlapping_data


@pytest.fixture(scope="module")
def mixture():
    """The zoo's Bayesian GMM on 2,000 points from 4 overlapping components (the regime
    where plain sweeps are slow): ``(zoo model, raw data, NumPyro data)``."""
    zoo = models.get("bayesian_gmm")
    raw = overlapping_data(zoo, 0, 2000, 4, 1.0)
    return zoo, raw, models.to_backend(raw, "numpyro")
