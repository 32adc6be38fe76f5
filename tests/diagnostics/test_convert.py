"""The one adapter to ArviZ InferenceData."""

from __future__ import annotations

import subprocess
import sys

import arviz as az
import numpy as np
import pytest

from ppl_vi.diagnostics.convert import draws_from_inference_data, to_inference_data


def test_posterior_dims_coords_and_az_summary():
    rng = np.random.default_rng(0)
    draws = {"mu": rng.normal(size=(2, 50)), "theta": rng.normal(size=(2, 50, 3))}
    idata = to_inference_data(draws, sample_stats={"diverging": np.zeros((2, 50), bool)},
                              attrs={"inference_method": "nuts"})
    assert idata.posterior["theta"].dims == ("chain", "draw", "theta_dim_0")
    assert idata.posterior.attrs["inference_method"] == "nuts"
    assert "diverging" in idata.sample_stats
    summary = az.summary(idata)
    assert list(summary.index) == ["mu", "theta[0]", "theta[1]", "theta[2]"]
    assert summary.loc["theta[1]", "mean"] == pytest.approx(draws["theta"][:, :, 1].mean(), abs=1e-3)
    back = draws_from_inference_data(idata)
    assert np.array_equal(back["theta"], draws["theta"])


def test_bad_shapes_name_the_site():
    with pytest.raises(ValueError, match="'mu'.*expected \\(chain, draw"):
        to_inference_data({"mu": np.zeros(5)})
    with pytest.raises(ValueError, match="'b' have \\(chain, draw\\) = \\(1, 4\\)"):
        to_inference_data({"a": np.zeros((1, 5)), "b": np.zeros((1, 4))})
    with pytest.raises(ValueError, match="sample_stats 'lw'"):
        to_inference_data({"a": np.zeros((1, 5))}, sample_stats={"lw": np.zeros((1, 4))})


def test_diagnostics_import_pulls_no_backend():
    code = ("import sys, ppl_vi.diagnostics, ppl_vi.diagnostics.plots, ppl_vi.cli; "
            "print([m for m in ('jax', 'torch', 'numpyro', 'pyro') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
