"""Every registered zoo model traces in both hosts and has the same log joint there.

Latent values are drawn once (inside each support: uniform in ``(-2, 2)`` on the
unconstrained scale, NumPyro's ``init_to_uniform``; discrete sites from the prior),
kept as NumPy arrays, and substituted into the NumPyro and the Pyro program alike.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import numpyro
import pyro
import pytest
import torch
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import log_density
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import models

NAMES = models.names()
ZOO = (
    "bayesian_gmm",
    "bayesian_linear_regression",
    "beta_bernoulli",
    "dirichlet_categorical",
    "eight_schools",
    "gamma_poisson",
    "lda",
    "logistic_regression",
    "normal_gamma",
    "normal_known_variance",
)


def _numpyro_latents(model, data: dict, rng_key) -> dict:
    """Continuous latents from ``init_to_uniform``, discrete ones from the prior.

    ``seed`` must sit inside ``substitute``: handlers process a site innermost first, and
    ``init_to_uniform`` reads the ``rng_key`` that ``seed`` puts on the site.
    """
    seeded = numpyro.handlers.seed(model, rng_key)
    initialised = numpyro.handlers.substitute(seeded, substitute_fn=init_to_uniform)
    trace = numpyro.handlers.trace(initialised).get_trace(**data)
    return {k: s["value"] for k, s in trace.items() if s["type"] == "sample" and not s["is_observed"]}


def _pyro_trace(model, data: dict, values: dict | None = None):
    if values is not None:
        model = pyro.poutine.condition(model, data={k: torch.as_tensor(np.array(v)) for k, v in values.items()})
    return pyro.poutine.trace(model).get_trace(**data)


def _pyro_latent_names(trace) -> set:
    return {
        k
        for k, s in trace.nodes.items()
        if s["type"] == "sample" and not s["is_observed"] and type(s["fn"]).__name__ != "_Subsample"
    }


@functools.cache
def _latent_values_and_sites(name: str, seed: int) -> tuple[dict, frozenset]:
    zoo = models.get(name)
    data = zoo.data("numpyro", seed=seed)
    values = jax.jit(lambda key: _numpyro_latents(zoo.numpyro_model, data, key))(jax.random.PRNGKey(seed))
    values = {k: np.asarray(v) for k, v in values.items()}
    return values, frozenset(values)


def draw_latent_values(zoo: models.ZooModel, seed: int = 0) -> dict:
    """Latent values inside each site's support, as NumPy arrays (cached per model and seed)."""
    return dict(_latent_values_and_sites(zoo.name, seed)[0])


def test_registry_holds_the_zoo():
    assert set(ZOO) <= set(NAMES)
    with pytest.raises(KeyError, match="beta_bernoulli"):
        models.get("no_such_model")


@pytest.mark.parametrize("name", NAMES)
def test_traces_with_declared_latent_sites_in_both_backends(name):
    zoo = models.get(name)
    numpyro_sites = _latent_values_and_sites(name, 2)[1]
    pyro.set_rng_seed(1)
    pyro_sites = _pyro_latent_names(_pyro_trace(zoo.pyro_model, zoo.data("pyro")))
    assert numpyro_sites == set(zoo.latent_sites) == pyro_sites


@pytest.mark.parametrize("name", NAMES)
def test_same_log_joint_in_both_backends(name):
    zoo = models.get(name)
    values = draw_latent_values(zoo, seed=2)
    data = zoo.data("numpyro")
    numpyro_lp = float(jax.jit(lambda v: log_density(zoo.numpyro_model, (), data, v)[0])(values))
    pyro_lp = float(_pyro_trace(zoo.pyro_model, zoo.data("pyro"), values).log_prob_sum())
    assert np.isfinite(numpyro_lp)
    np.testing.assert_allclose(pyro_lp, numpyro_lp, rtol=1e-10, atol=1e-8)


def test_log_joint_responds_to_latent_values():
    zoo = models.get("normal_gamma")
    values = draw_latent_values(zoo, seed=2)
    shifted = dict(values, loc=values["loc"] + 1.0)
    data = zoo.data("numpyro")
    log_joint = jax.jit(lambda v: log_density(zoo.numpyro_model, (), data, v)[0])
    lps = [float(log_joint(v)) for v in (values, shifted)]
    assert lps[0] != pytest.approx(lps[1])


# --- enumerated sites: the indexing broadcasts under parallel enumeration -------------


def _gmm_marginal(data: dict, v: dict) -> float:
    per_component = np.stack(
        [
            multivariate_normal(v["locs"][k], np.linalg.inv(v["precisions"][k])).logpdf(data["x"])
            for k in range(data["num_components"])
        ]
    )
    return float(logsumexp(np.log(v["weights"])[:, None] + per_component, axis=0).sum())


def _lda_marginal(data: dict, v: dict) -> float:
    token_probs = (v["doc_topics"][data["doc_ids"]] * v["topics"][:, data["words"]].T).sum(-1)
    return float(np.log(token_probs).sum())


MARGINALS = {"bayesian_gmm": ("x", _gmm_marginal), "lda": ("words", _lda_marginal)}


def _enumerated_marginal(site_log_probs: dict, obs_site: str) -> float:
    """``sum_n logsumexp_k [log p(z_n = k) + log p(obs_n | z_n = k)]`` from (K, N)-shaped terms."""
    joint = site_log_probs["assignment"] + site_log_probs[obs_site]
    return float(logsumexp(joint, axis=0).sum())


@pytest.mark.parametrize("name", sorted(MARGINALS))
def test_enumerated_assignment_marginal_in_both_backends(name):
    zoo = models.get(name)
    obs_site, numpy_marginal = MARGINALS[name]
    values = draw_latent_values(zoo, seed=2)
    fixed = {k: v for k, v in values.items() if k != "assignment"}
    expected = numpy_marginal(zoo.generate_data(0), fixed)

    # Pyro: its own parallel enumeration (first free dim -2, below the one plate dim).
    model = pyro.poutine.enum(
        pyro.poutine.condition(zoo.pyro_model, data={k: torch.as_tensor(np.array(v)) for k, v in fixed.items()}),
        first_available_dim=-2,
    )
    trace = pyro.poutine.trace(model).get_trace(**zoo.data("pyro"))
    trace.compute_log_prob()
    assert trace.nodes["assignment"]["value"].dim() == 2
    pyro_terms = {k: trace.nodes[k]["log_prob"].numpy() for k in ("assignment", obs_site)}
    np.testing.assert_allclose(_enumerated_marginal(pyro_terms, obs_site), expected, rtol=1e-10)

    # NumPyro: substitute the enumerated support of shape (K, 1) as its enum handler would.
    num_topics = fixed["weights"].shape[0] if "weights" in fixed else fixed["topics"].shape[0]
    support = np.arange(num_topics)[:, None]
    data = zoo.data("numpyro")

    def site_log_probs(values):
        trace = numpyro.handlers.trace(numpyro.handlers.substitute(zoo.numpyro_model, data=values)).get_trace(**data)
        return {k: trace[k]["fn"].log_prob(trace[k]["value"]) for k in ("assignment", obs_site)}

    numpyro_terms = jax.jit(site_log_probs)(dict(fixed, assignment=support))
    numpyro_terms = {k: np.asarray(v) for k, v in numpyro_terms.items()}
    np.testing.assert_allclose(_enumerated_marginal(numpyro_terms, obs_site), expected, rtol=1e-10)
