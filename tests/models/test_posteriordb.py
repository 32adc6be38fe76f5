"""posteriordb ports: Stan's log density (re-computed in SciPy), data, references, tracing."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import stats

import models
from models.posteriordb import POSTERIORDB_NAMES, reference_draws, reference_summary
from models.posteriordb._data import load_data

# a posteriordb checkout: $POSTERIORDB_PATH, else the project's shared references beside the repo
POSTERIORDB_ROOT = Path(os.environ.get(
    "POSTERIORDB_PATH",
    Path(__file__).resolve().parents[3] / "shared" / "references" / "posteriordb" / "posterior_database",
))
PORTS = sorted(POSTERIORDB_NAMES)


# --- Stan's model blocks, written independently from the ports (raw data in, lp out) ---


def _normal_regression(y, mean, sigma):
    return stats.norm.logpdf(y, mean, sigma).sum()


def stan_eight_schools(p):
    d = load_data("eight_schools")
    theta = p["theta_trans"] * p["tau"] + p["mu"]
    return (
        stats.norm.logpdf(p["theta_trans"], 0, 1).sum()
        + stats.norm.logpdf(d["y"], theta, d["sigma"]).sum()
        + stats.norm.logpdf(p["mu"], 0, 5)
        + stats.cauchy.logpdf(p["tau"], 0, 5)
    )


def stan_kidiq(predictor):
    def lp(p):
        d = load_data("kidiq")
        b = p["beta"]
        return stats.cauchy.logpdf(p["sigma"], 0, 2.5) + _normal_regression(
            d["kid_score"], b[0] + b[1] * d[predictor], p["sigma"]
        )

    return lp


def stan_earnings(log_earn):
    def lp(p):
        d = load_data("earnings")
        y = np.log(d["earn"]) if log_earn else d["earn"]
        return _normal_regression(
            y, p["beta"][0] + p["beta"][1] * d["height"], p["sigma"]
        )

    return lp


def stan_mesquite(p):
    d = load_data("mesquite")
    b = p["beta"]
    mean = (
        b[0]
        + b[1] * np.log(d["diam1"] * d["diam2"] * d["canopy_height"])
        + b[2] * np.log(d["diam1"] * d["diam2"])
        + b[3] * np.log(d["diam1"] / d["diam2"])
        + b[4] * np.log(d["total_height"])
        + b[5] * np.log(d["density"])
        + b[6] * d["group"]
    )
    return _normal_regression(np.log(d["weight"]), mean, p["sigma"])


def stan_nes(p):
    d = load_data("nes1980")
    b, age = p["beta"], d["age_discrete"]
    mean = (
        b[0]
        + b[1] * d["real_ideo"]
        + b[2] * d["race_adj"]
        + b[3] * (age == 2)
        + b[4] * (age == 3)
        + b[5] * (age == 4)
        + b[6] * d["educ1"]
        + b[7] * d["gender"]
        + b[8] * d["income"]
    )
    return _normal_regression(d["partyid7"], mean, p["sigma"])


def stan_diamonds(p):
    d = load_data("diamonds")
    x = d["X"][:, 1:]
    xc = x - x.mean(axis=0)
    return (
        stats.norm.logpdf(p["b"], 0, 1).sum()
        + stats.t.logpdf(p["Intercept"], 3, 8, 10)
        + stats.t.logpdf(p["sigma"], 3, 0, 10)
        - stats.t.logsf(0, 3, 0, 10)
        + _normal_regression(d["Y"], p["Intercept"] + xc @ p["b"], p["sigma"])
    )


STAN_LOG_DENSITY = {
    "pdb_eight_schools_eight_schools_noncentered": stan_eight_schools,
    "pdb_kidiq_kidscore_momhs": stan_kidiq("mom_hs"),
    "pdb_kidiq_kidscore_momiq": stan_kidiq("mom_iq"),
    "pdb_earnings_earn_height": stan_earnings(False),
    "pdb_earnings_logearn_height": stan_earnings(True),
    "pdb_mesquite_logmesquite_logvas": stan_mesquite,
    "pdb_nes1980_nes": stan_nes,
    "pdb_diamonds_diamonds": stan_diamonds,
}

#: Stan's declared support of each latent site (<lower=0> -> positive).
SUPPORT = {"sigma": "positive", "tau": "positive"}


def port_log_density(name: str, backend: str, params: dict) -> float:
    """Log joint of the port at the latent values ``params`` (constrained space)."""
    m = models.get(name)
    data = m.data(backend)
    if backend == "numpyro":
        from numpyro.infer.util import log_density

        return float(log_density(m.numpyro_model, (), data, params)[0])
    import torch
    from pyro import poutine

    conditioned = poutine.condition(
        m.pyro_model, {k: torch.as_tensor(v) for k, v in params.items()}
    )
    return float(poutine.trace(conditioned).get_trace(**data).log_prob_sum())


def reference_point(name: str, chain: int, draw: int) -> dict:
    m = models.get(name)
    return {
        site: draws[chain, draw]
        for site, draws in reference_draws(name).items()
        if site in m.latent_sites
    }


def test_at_least_eight_ports_registered():
    assert len(PORTS) >= 8
    assert set(PORTS) == set(STAN_LOG_DENSITY)
    for name in PORTS:
        m = models.get(name)
        assert m.reference == "posteriordb" and not m.conjugate


@pytest.mark.parametrize("name", PORTS)
def test_log_density_matches_stan_up_to_a_constant(name, backend):
    points = [reference_point(name, 0, 0), reference_point(name, 3, 57)]
    stan = [STAN_LOG_DENSITY[name](p) for p in points]
    port = [port_log_density(name, backend, p) for p in points]
    assert abs(stan[0] - stan[1]) > 1e-2, (
        "the two test points must have different densities"
    )
    np.testing.assert_allclose(
        port[0] - port[1], stan[0] - stan[1], rtol=1e-9, atol=1e-7
    )


@pytest.mark.parametrize("name", PORTS)
def test_backends_agree_on_the_log_joint(name):
    point = reference_point(name, 5, 11)
    np.testing.assert_allclose(
        port_log_density(name, "pyro", point),
        port_log_density(name, "numpyro", point),
        rtol=1e-12,
    )


@pytest.mark.parametrize("name", PORTS)
def test_latent_sites_trace_with_stan_shapes_and_supports(name, backend):
    m = models.get(name)
    expected_shapes = {
        site: reference_summary(name).query("site == @site")["index"]
        for site in m.latent_sites
    }
    data = m.data(backend)
    if backend == "numpyro":
        from numpyro import handlers

        trace = handlers.trace(handlers.seed(m.numpyro_model, 0)).get_trace(**data)
        sites = {
            k: (v["value"], v["fn"])
            for k, v in trace.items()
            if v["type"] == "sample" and not v["is_observed"]
        }
    else:
        from pyro import poutine

        trace = poutine.trace(m.pyro_model).get_trace(**data)
        sites = {
            k: (v["value"], v["fn"])
            for k, v in trace.nodes.items()
            if v["type"] == "sample" and not v["is_observed"] and k in m.latent_sites
        }
    assert set(sites) == set(m.latent_sites)
    for site, (value, fn) in sites.items():
        indices = list(expected_shapes[site])
        shape = tuple(max(i[d] for i in indices) + 1 for d in range(len(indices[0])))
        assert tuple(value.shape) == shape, site
        assert bool(np.all(np.asarray(fn.support.check(value)))), site
        # Stan's declaration: <lower=0> excludes negative values, unconstrained admits them
        negative_allowed = np.asarray(fn.support.check(value * 0 - 1))
        assert (
            (not negative_allowed.any())
            if SUPPORT.get(site) == "positive"
            else negative_allowed.all()
        ), site
        assert np.isfinite(float(fn.log_prob(value).sum())), site


@pytest.mark.parametrize("name", PORTS)
def test_data_are_fixed_and_reject_sizes(name):
    m = models.get(name)
    first, second = m.generate_data(0), m.generate_data(123)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    first[next(iter(first))][...] = np.nan  # callers get copies
    assert not np.isnan(m.generate_data(0)[next(iter(first))]).any()
    with pytest.raises(TypeError, match="fixed"):
        m.generate_data(0, num_obs=10)


@pytest.mark.parametrize("name", PORTS)
def test_reference_draws_and_summary_agree(name):
    m = models.get(name)
    draws = m.reference_draws()
    summary = reference_summary(name)
    assert set(m.latent_sites) <= set(draws)
    for coordinate, row in summary.iterrows():
        x = draws[row.site][(slice(None), slice(None)) + row["index"]]
        assert x.shape == (10, 200)
        # thinned (2000 nearly independent draws) vs all 10,000 draws
        assert abs(x.mean() - row["mean"]) < 4 * row.sd / np.sqrt(2000), coordinate
        assert abs(x.std(ddof=1) / row.sd - 1) < 0.1, coordinate
        assert 5000 < row.ess and np.isclose(row.mcse, row.sd / np.sqrt(row.ess))
    assert reference_summary(POSTERIORDB_NAMES[name]).equals(summary)


def test_eight_schools_theta_is_the_transformed_parameter():
    draws = reference_draws("pdb_eight_schools_eight_schools_noncentered")
    np.testing.assert_allclose(
        draws["theta"],
        draws["theta_trans"] * draws["tau"][..., None] + draws["mu"][..., None],
        rtol=1e-10,
    )


def test_unknown_name_lists_the_ports():
    with pytest.raises(KeyError, match="pdb_kidiq_kidscore_momhs"):
        reference_summary("kidiq")


@pytest.mark.skipif(
    not POSTERIORDB_ROOT.is_dir(),
    reason="needs a posteriordb checkout at " + str(POSTERIORDB_ROOT),
)
def test_vendor_script_reproduces_the_shipped_draws(tmp_path):
    from models.posteriordb._vendor import DATA_DIR, vendor_posterior

    name = "eight_schools-eight_schools_noncentered"
    written = vendor_posterior(POSTERIORDB_ROOT, name, thin=5, out_dir=tmp_path)
    with (
        np.load(written) as new,
        np.load(DATA_DIR / "draws" / f"{name}.npz") as shipped,
    ):
        assert sorted(new.files) == sorted(shipped.files)
        for key in new.files:
            np.testing.assert_array_equal(new[key], shipped[key])


def test_vendor_gathers_stan_columns_into_sites():
    from models.posteriordb._vendor import gather_sites

    chains = [{"beta[1]": [1.0, 2.0], "beta[2]": [3.0, 4.0], "s": [5.0, 6.0]}] * 3
    sites = gather_sites(chains)
    assert sites["beta"].shape == (3, 2, 2) and sites["s"].shape == (3, 2)
    np.testing.assert_array_equal(sites["beta"][0, 1], [2.0, 4.0])
    with pytest.raises(ValueError, match="missing coordinates"):
        gather_sites([{"beta[1]": [1.0], "beta[3]": [2.0]}])


def test_host_autoguides_initialise_on_flat_prior_sites(backend):
    """Stan's flat priors (ImproperUniform) work with the hosts' SVI machinery."""
    m = models.get("pdb_earnings_logearn_height")
    data = m.data(backend)
    if backend == "numpyro":
        import optax
        from numpyro.infer import SVI, Trace_ELBO
        from numpyro.infer.autoguide import AutoNormal

        svi = SVI(
            m.numpyro_model, AutoNormal(m.numpyro_model), optax.adam(0.05), Trace_ELBO()
        )
        result = svi.run(jax.random.PRNGKey(0), 5, progress_bar=False, **data)
        losses = np.asarray(result.losses)
        locs = result.params["sigma_auto_loc"]
    else:
        import pyro
        from pyro.infer import SVI, Trace_ELBO
        from pyro.infer.autoguide import AutoNormal

        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        guide = AutoNormal(m.pyro_model)
        svi = SVI(m.pyro_model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
        losses = [svi.step(**data) for _ in range(5)]
        locs = guide.locs.sigma.detach()
    assert np.all(np.isfinite(losses))
    # sigma's loc lives in the unconstrained (log) space
    assert np.isfinite(float(locs))


@pytest.mark.parametrize("support, inside", [("real", -3.0), ("positive", 0.5)])
def test_flat_prior_is_flat_on_stan_support_and_traceable(support, inside, backend):
    from pyroapi import pyro_backend

    from models.posteriordb._host import flat_prior

    with pyro_backend({"numpyro": "numpy", "pyro": "pyro"}[backend]):
        prior = flat_prior(support, (3,))
        if backend == "numpyro":
            draw = np.asarray(prior.sample(jax.random.PRNGKey(0), (500,)))
            log_prob = np.asarray(prior.log_prob(np.full(3, inside)))
        else:
            import torch

            draw = prior.sample((500,)).numpy()
            log_prob = prior.log_prob(torch.full((3,), inside)).numpy()
        assert draw.shape == (500, 3) and np.all(np.asarray(prior.support.check(draw)))
        # an initialisation point: uniform on (-2, 2) in the unconstrained space
        unconstrained = draw if support == "real" else np.log(draw)
        assert (
            unconstrained.min() > -2
            and unconstrained.max() < 2
            and unconstrained.std() > 0.5
        )
        assert log_prob.shape == () and log_prob == 0.0
        with pytest.raises(ValueError, match="'simplex' is not supported"):
            flat_prior("simplex", (3,))
