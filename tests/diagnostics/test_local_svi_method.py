"""``local_svi`` (ppl_vi's LocalGuide) as a ``compare`` method, both backends."""

from __future__ import annotations

import numpy as np

from ppl_vi import compare


def test_local_svi_reaches_the_mean_field_optimum_of_autonormal(backend):
    # LocalGuide and AutoNormal span the same mean-field Normal family (per-school theta
    # factors are exactly AutoNormal's), so both must stop at the same ELBO.
    rng = np.random.default_rng(0)
    reference = {"mu": rng.normal(size=(1, 200)), "tau": np.exp(rng.normal(size=(1, 200))),
                 "theta": rng.normal(size=(1, 200, 8))}   # metrics are not the point here
    # a large step, 8 particles and one decay reach the optimum in ~1000 steps (-33.36 to -33.41
    # on both backends); the default schedule gets there too, in ~3x the time
    fit = {"step_size": 0.1, "num_particles": 8, "num_decays": 1, "num_steps": 3000, "plateau": {"window": 100}}
    report = compare("eight_schools", methods=["local_svi", "svi"], backend=backend,
                     reference=reference, num_draws=2000, num_khat_seeds=1, progress_bar=False,
                     method_options={"local_svi": {"local_plate": "schools", **fit}, "svi": fit})
    summary = report.summary.set_index("method")
    assert (summary["status"] == "ok").all(), summary["error"].to_dict()
    assert abs(summary.loc["local_svi", "elbo"] - summary.loc["svi", "elbo"]) < 0.2  # se of each ~0.03
