"""Langevin (MALA on the posterior score) as a ``compare`` method, both backends."""

from __future__ import annotations

from ppl_vi import compare


def test_langevin_method_matches_exact_posterior(backend):
    # bayesian_linear_regression: a chain started in the tails once froze under a step size
    # shared by all chains (10 sd off); per-chain adaptation must bring every chain in
    report = compare("bayesian_linear_regression", methods=["langevin"], backend=backend, reference="exact",
                     num_draws=500, num_khat_seeds=1, progress_bar=False)
    row = report.summary.set_index("method").loc["langevin"]
    assert row["status"] == "ok", row["error"]
    # 4 chains x 500 MALA draws: the mean lands within a fraction of a posterior sd
    assert row["max_abs_mean_error_sd"] < 0.2
    assert abs(row["worst_sd_ratio"] - 1.0) < 0.2
    assert report.inference_data["langevin"].posterior["precision"].shape[:2] == (4, 500)
