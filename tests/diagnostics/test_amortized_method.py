"""``amortized`` (ppl_vi's AmortizedGuide with an MLP encoder) as a ``compare`` method."""

from __future__ import annotations

import numpy as np

from ppl_vi import compare

A, SIGMA = 2.0, 0.5  # x_i | z_i ~ N(A z_i, SIGMA^2), z_i ~ N(0, 1): only local latents
POST_PRECISION = 1.0 + A**2 / SIGMA**2


def local_model(backend):
    if backend == "numpyro":
        import numpyro as ppl
        import numpyro.distributions as dist
    else:
        import pyro as ppl
        import pyro.distributions as dist

    def model(x):
        with ppl.plate("data", x.shape[0]):
            z = ppl.sample("z", dist.Normal(0.0, 1.0))
            ppl.sample("x", dist.Normal(A * z, SIGMA), obs=x)

    return model


def test_amortized_encoder_learns_the_exact_local_posterior(backend, as_backend):
    rng = np.random.default_rng(0)
    x = A * rng.standard_normal(12) + SIGMA * rng.standard_normal(12)
    post_mean, post_sd = (A / SIGMA**2) * x / POST_PRECISION, POST_PRECISION**-0.5
    reference = {"z": post_mean + post_sd * rng.standard_normal((2, 2000, 12))}
    report = compare((local_model(backend), (as_backend(x),), {}), methods=["amortized"],
                     backend=backend, reference=reference, num_draws=1000, num_khat_seeds=1,
                     progress_bar=False,
                     method_options={"amortized": {"step_size": 0.05, "num_particles": 1, "hidden": (16,),
                                                   "num_steps": 3000, "plateau": {"window": 100}}})
    summary = report.summary.set_index("method")
    assert summary.loc["amortized", "status"] == "ok", summary.loc["amortized", "error"]
    table = report.table
    assert len(table) == 12 and set(table["site"]) == {"z"}
    # an encoder ignoring x would be off by |posterior mean| / sd, several sd for most points
    assert np.abs(post_mean / post_sd).max() > 3
    assert np.abs(table["mean_error_sd"]).max() < 0.3
    assert np.abs(table["sd_ratio"] - 1).max() < 0.2
    assert summary.loc["amortized", "khat_max"] < 0.7


def test_amortized_failures_are_reported_with_the_guides_error():
    # a global latent ('loc') cannot be amortized: reported failed with AmortizedGuide's own error
    report = compare("normal_known_variance", methods=["amortized"], num_draws=100, num_khat_seeds=1,
                     progress_bar=False, method_options={"amortized": {"data_arg": "x"}})
    error = report.summary.set_index("method").loc["amortized", "error"]
    assert "latent site 'loc' is outside plate 'data'" in error
    # a keyword-only program (the zoo's) must say which argument holds the data
    report = compare("normal_known_variance", methods=["amortized"], num_draws=100, num_khat_seeds=1,
                     progress_bar=False)
    row = report.summary.set_index("method").loc["amortized"]
    assert row["status"] == "failed" and "pass the data argument as option data_arg=<name>" in row["error"]
