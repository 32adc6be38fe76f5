"""expfam public surface: lookup, errors on bad input, light import, jit and autodiff."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ppl_vi.core import expfam
from tests.core.test_expfam_cases import CASES, NAMES, to_numpy


def test_import_pulls_neither_torch_nor_jax():
    code = (
        "import sys, ppl_vi, ppl_vi.core.expfam\n"
        "heavy = sorted(m for m in ('torch', 'jax', 'numpyro', 'pyro') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", NAMES)
def test_family_lookup_by_host_class_name(name):
    assert expfam.family(name) is CASES[name].family
    assert expfam.family(name).name == name


def test_docstring_examples_run():
    import doctest

    from ppl_vi.core.expfam import discrete, gaussian, positive, simplex

    for module in (expfam, gaussian, positive, simplex, discrete):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_family_lookup_aliases_and_unknown_name():
    assert expfam.family("BernoulliLogits") is expfam.Bernoulli
    assert expfam.family("CategoricalProbs") is expfam.Categorical
    with pytest.raises(KeyError, match="no exponential family for distribution 'HalfCauchy'; supported: .*Wishart"):
        expfam.family("HalfCauchy")


def test_bad_inputs_raise_clear_errors():
    t = torch.tensor
    with pytest.raises(TypeError, match="Normal: the natural parameter must be a tuple of 2 arrays"):
        expfam.Normal.log_normalizer(t([1.0]))
    with pytest.raises(TypeError, match="Gamma: the mean parameter must be a tuple of 2 arrays"):
        expfam.Gamma.natural_from_mean((t([1.0]),))
    with pytest.raises(TypeError, match="exactly one of probs= or logits="):
        expfam.Bernoulli.natural_from_params(probs=t([0.5]), logits=t([0.0]))
    with pytest.raises(TypeError, match="needs num_categories="):
        expfam.Categorical.sufficient_stats(t([1, 2]))
    with pytest.raises(ValueError, match=r"precision_matrix must have shape \(\.\.\., n, n\); got shape \(2, 3\)"):
        expfam.MultivariateNormal.natural_from_params(loc=torch.zeros(3), precision_matrix=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"loc has shape \(2,\).*\(3, 3\)"):
        expfam.MultivariateNormal.natural_from_params(loc=torch.zeros(2), precision_matrix=torch.eye(3))
    with pytest.raises(ValueError, match=r"Wishart: scale_matrix must have shape \(\.\.\., n, n\); got shape \(3,\)"):
        expfam.Wishart.natural_from_params(df=t(4.0), scale_matrix=torch.ones(3))
    with pytest.raises(ValueError, match="Dirichlet: eta\\[0\\] must have shape"):
        expfam.Dirichlet.log_normalizer((t(1.0),))


def test_categorical_probs_logits_and_one_hot_agree():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    eta_p = expfam.Categorical.natural_from_params(probs=probs)
    eta_l = expfam.Categorical.natural_from_params(logits=torch.log(probs) + 7.0)
    np.testing.assert_allclose(to_numpy(eta_p[0]), to_numpy(eta_l[0]), rtol=1e-12)
    (onehot,) = expfam.Categorical.sufficient_stats(jnp.asarray([2, 0]), num_categories=3)
    np.testing.assert_array_equal(np.asarray(onehot), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_allclose(to_numpy(expfam.Categorical.log_prob(torch.tensor([2, 0]), eta_l)), np.log([0.3, 0.5]))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_categorical_with_an_impossible_category(backend):
    """probs with an exact zero (NumPy's Dirichlet sampler returns them for small
    concentrations): entropy, KL and log_prob follow ``0 log 0 = 0`` like torch's, not NaN."""
    import torch.distributions as td

    from tests.core.test_expfam_cases import to_backend

    probs_p, probs_q = np.array([0.0, 0.25, 0.75]), np.array([0.5, 0.0, 0.5])
    eta_p = expfam.Categorical.natural_from_params(probs=to_backend(probs_p, backend))
    eta_q = expfam.Categorical.natural_from_params(probs=to_backend(probs_q, backend))
    host_p, host_q = td.Categorical(probs=torch.tensor(probs_p)), td.Categorical(probs=torch.tensor(probs_q))
    np.testing.assert_allclose(to_numpy(expfam.Categorical.entropy(eta_p)), host_p.entropy().numpy(), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(expfam.Categorical.kl_divergence(eta_p, eta_p)), 0.0, atol=1e-15)
    np.testing.assert_allclose(
        to_numpy(expfam.Categorical.kl_divergence(eta_q, eta_p)), td.kl_divergence(host_q, host_p).numpy()
    )
    assert to_numpy(expfam.Categorical.kl_divergence(eta_p, eta_q)) == np.inf  # p puts mass where q has none
    labels = to_backend(np.array([0, 1, 2]), backend)
    with np.errstate(divide="ignore"):  # torch clamps probs at eps (log 0 -> -36); the exact value is -inf
        np.testing.assert_allclose(to_numpy(expfam.Categorical.log_prob(labels, eta_p)), np.log(probs_p), rtol=1e-14)


def test_batch_broadcasting_of_values_and_parameters():
    eta = expfam.Normal.natural_from_params(loc=torch.zeros(3), scale=torch.tensor(2.0))
    assert tuple(eta[1].shape) == (3,)
    x = torch.linspace(-1.0, 1.0, 4)[:, None]  # (4, 1) against batch (3,)
    assert tuple(expfam.Normal.log_prob(x, eta).shape) == (4, 3)
    eta_w = expfam.Wishart.natural_from_params(df=torch.tensor([4.0, 5.0]), scale_matrix=torch.eye(2))
    assert tuple(eta_w[0].shape) == (2, 2, 2) and tuple(eta_w[1].shape) == (2,)


@pytest.mark.parametrize("name", ["Gamma", "Beta", "Dirichlet", "Wishart"])
def test_autodiff_passes_through_the_mean_to_natural_inversion(name):
    """d/d eta of sum(natural_from_mean(mean_from_natural(eta))) is all ones, in both backends."""
    family = CASES[name].family
    eta_t = tuple(e.clone().requires_grad_(True) for e in CASES[name].eta("torch"))
    total = sum(b.sum() for b in family.natural_from_mean(family.mean_from_natural(eta_t)))
    grads_t = torch.autograd.grad(total, eta_t)

    def round_trip_sum(eta):
        return sum(jnp.sum(b) for b in family.natural_from_mean(family.mean_from_natural(eta)))

    grads_j = jax.grad(round_trip_sum)(CASES[name].eta("jax"))
    for g_t, g_j in zip(grads_t, grads_j):
        np.testing.assert_allclose(to_numpy(g_t), 1.0, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(g_j), 1.0, rtol=1e-6)


def test_inversions_converge_over_the_documented_range():
    """Newton inversions recover concentrations 1e-2 .. 1e4 (Gamma, Beta, Dirichlet) and
    Wishart df from p - 1 + 1e-2 to 1e4 from their mean parameters."""
    grid = torch.tensor([1e-2, 0.3, 1.0, 7.0, 150.0, 1e4])
    gamma = expfam.Gamma.natural_from_params(concentration=grid, rate=torch.full_like(grid, 2.0))
    beta = expfam.Beta.natural_from_params(concentration1=grid, concentration0=grid.flip(0))
    conc = torch.stack([grid, grid.roll(1), grid.roll(3)], dim=-1)
    dirichlet = expfam.Dirichlet.natural_from_params(concentration=conc)
    df = torch.tensor([2.01, 2.5, 4.0, 30.0, 1e4])
    wishart = expfam.Wishart.natural_from_params(df=df, scale_matrix=torch.eye(3) * 0.5)
    for family, eta in [
        (expfam.Gamma, gamma),
        (expfam.Beta, beta),
        (expfam.Dirichlet, dirichlet),
        (expfam.Wishart, wishart),
    ]:
        back = family.natural_from_mean(family.mean_from_natural(eta))
        params, expected = family.params_from_natural(back), family.params_from_natural(eta)
        for key in params:
            np.testing.assert_allclose(to_numpy(params[key]), to_numpy(expected[key]), rtol=1e-7, err_msg=family.name)


def test_functions_jit_under_jax():
    family = expfam.Gamma
    eta = CASES["Gamma"].eta("jax")
    jitted = jax.jit(lambda e: (family.entropy(e), family.natural_from_mean(family.mean_from_natural(e))))
    entropy, back = jitted(eta)
    np.testing.assert_allclose(np.asarray(entropy), np.asarray(family.entropy(eta)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(back[0]), np.asarray(eta[0]), rtol=1e-8)
