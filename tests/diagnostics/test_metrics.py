"""Per-coordinate metrics, reference floors and the ELBO plateau test."""

from __future__ import annotations

import numpy as np
import pytest

from ppl_vi.diagnostics.convergence import PlateauTest
from ppl_vi.diagnostics.metrics import coordinate_draws, marginal_metrics, metrics_table, split_halves


def test_marginal_metrics_of_a_shifted_scaled_copy():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(20000)
    shifted = ref + 0.3  # W1 of a translate is exactly the shift
    m = marginal_metrics(shifted, ref, ref_mean=0.0, ref_sd=1.0)
    assert m["w1_sd"] == pytest.approx(0.3, abs=1e-9)
    assert m["mean_error_sd"] == pytest.approx(0.3 + ref.mean(), abs=1e-9)
    assert m["sd_ratio"] == pytest.approx(ref.std(ddof=1), rel=1e-9)
    scaled = marginal_metrics(2 * ref, ref, ref_mean=0.0, ref_sd=2.0, mean=0.0, sd=1.0)
    assert scaled["sd_ratio"] == 0.5 and scaled["mean_error_sd"] == 0.0  # exact moments win
    with pytest.raises(ValueError, match="reference sd must be positive"):
        marginal_metrics(ref, ref, 0.0, 0.0)


def test_coordinates_and_halves():
    draws = {"a": np.zeros((2, 5)), "b": np.arange(2 * 5 * 6, dtype=float).reshape(2, 5, 2, 3)}
    coords = coordinate_draws(draws)
    assert ("a", "a") in coords and ("b", "b[1,2]") in coords and len(coords) == 1 + 6
    assert np.array_equal(coords[("b", "b[1,2]")], draws["b"][:, :, 1, 2])
    first, second = split_halves(np.arange(8.0).reshape(4, 2))  # by chains
    assert first.tolist() == [0, 1, 2, 3] and second.tolist() == [4, 5, 6, 7]
    first, second = split_halves(np.arange(6.0)[None])  # one chain: by draws
    assert first.tolist() == [0, 1, 2] and second.tolist() == [3, 4, 5]


def test_metrics_table_rows_and_floor_is_noise_level():
    rng = np.random.default_rng(1)
    ref = {"theta": rng.normal(size=(4, 2000, 3)), "mu": rng.normal(size=(4, 2000))}
    same = {"theta": rng.normal(size=(1, 4000, 3)), "mu": rng.normal(size=(1, 4000)), "extra": np.zeros((1, 4000))}
    table = metrics_table("m", same, ref)
    assert table["coordinate"].tolist() == ["theta[0]", "theta[1]", "theta[2]", "mu"]
    # draws from the reference's own distribution: errors at the floor's order (MC noise only)
    assert (table["mean_error_sd"].abs() < 5 * table["floor_mean_error_sd"] + 0.05).all()
    assert (table["w1_sd"] < 0.1).all() and (table["floor_w1_sd"] < 0.1).all()
    with pytest.raises(ValueError, match="no draws for coordinate"):
        metrics_table("m", {"theta": np.zeros((1, 10, 2))}, {"theta": ref["theta"]})


def test_plateau_detects_flat_noise_and_not_a_rising_trace():
    rng = np.random.default_rng(2)
    test = PlateauTest(window=100, tol_rel=1e-4, z=2.0, patience=2)
    flat = -50.0 + rng.normal(size=600)
    rising = -50.0 + 0.05 * np.arange(600) + rng.normal(size=600)
    assert test.converged(flat)
    assert not test.converged(rising)
    assert not test.converged(flat[:150])  # fewer than two windows
    with pytest.raises(ValueError, match="window >= 2"):
        PlateauTest(window=1)
