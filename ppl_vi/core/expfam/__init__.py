"""Exponential families, written once for torch tensors and jax arrays.

Each family is an :class:`ExponentialFamily` record of pure, batched functions of
natural parameters ``eta`` and mean parameters ``mu`` (tuples of arrays in the order
of the sufficient statistics). The conventions (fixed; the CAVI engine relies on them):

=====================  ===========================  ==================================
family                 ``T(x)``                     ``eta``
=====================  ===========================  ==================================
Normal(m, s)           ``(x, x^2)``                 ``(m / s^2, -1 / (2 s^2))``
MultivariateNormal     ``(x, x x^T)``               ``(Lambda m, -Lambda / 2)``
Gamma(a, b)            ``(log x, x)``               ``(a - 1, -b)``
Beta(a, b)             ``(log x, log(1 - x))``      ``(a - 1, b - 1)``
Dirichlet(a)           ``(log x,)``                 ``(a - 1,)``
Bernoulli(p)           ``(x,)``                     ``(logit p,)``
Categorical(p)         ``(onehot(x),)``             ``(log p,)``
Poisson(r)             ``(x,)``                     ``(log r,)``
Wishart(nu, V)         ``(X, log|X|)``              ``(-V^{-1} / 2, (nu - p - 1) / 2)``
=====================  ===========================  ==================================

Every family offers ``sufficient_stats(x)``, ``log_base_measure(x)``,
``log_normalizer(eta)``, ``mean_from_natural(eta)`` (= ``expected_stats(eta)`` =
``grad A``), ``natural_from_mean(mu)``, ``natural_from_params(**params)``,
``params_from_natural(eta) -> dict`` (host parameter names), ``log_prob(x, eta)``,
``entropy(eta)``, ``kl_divergence(eta_p, eta_q)``, ``inner(eta, stats)`` and
``expected_log_base_measure(eta)``; ``family(name)`` looks one up by the host
distribution class name.

Example
-------
>>> import torch
>>> from ppl_vi.core import expfam
>>> normal = expfam.family("Normal")
>>> p = normal.natural_from_params(loc=torch.tensor(0.0), scale=torch.tensor(1.0))
>>> q = normal.natural_from_params(loc=torch.tensor(1.0), scale=torch.tensor(1.0))
>>> normal.kl_divergence(p, q)
tensor(0.5000)
"""

from __future__ import annotations

from ppl_vi.core.expfam._family import ExponentialFamily
from ppl_vi.core.expfam.discrete import Bernoulli, Categorical, Poisson
from ppl_vi.core.expfam.gaussian import MultivariateNormal, Normal
from ppl_vi.core.expfam.positive import Gamma, Wishart
from ppl_vi.core.expfam.simplex import Beta, Dirichlet

__all__ = [
    "ExponentialFamily",
    "FAMILIES",
    "UnknownFamilyError",
    "family",
    "Normal",
    "MultivariateNormal",
    "Gamma",
    "Beta",
    "Dirichlet",
    "Bernoulli",
    "Categorical",
    "Poisson",
    "Wishart",
]

FAMILIES: dict[str, ExponentialFamily] = {
    f.name: f for f in (Normal, MultivariateNormal, Gamma, Beta, Dirichlet, Bernoulli, Categorical, Poisson, Wishart)
}

# Host class names that are the same family under another parameterization.
_ALIASES = {
    "BernoulliProbs": "Bernoulli",
    "BernoulliLogits": "Bernoulli",
    "CategoricalProbs": "Categorical",
    "CategoricalLogits": "Categorical",
}


class UnknownFamilyError(KeyError):
    """No exponential family is registered under the requested distribution name."""

    def __str__(self) -> str:
        return str(self.args[0])


def family(name: str) -> ExponentialFamily:
    """The exponential family of the host distribution class called ``name``.

    Parameters
    ----------
    name : str
        A Pyro/NumPyro distribution class name, e.g. ``"Normal"``, ``"Wishart"``,
        ``"BernoulliLogits"``.

    Raises
    ------
    UnknownFamilyError
        (a ``KeyError``) if the class is not one of the supported families; the message lists them.
    """
    key = _ALIASES.get(name, name)
    if key not in FAMILIES:
        raise UnknownFamilyError(
            f"no exponential family for distribution {name!r}; supported: " + ", ".join(sorted(FAMILIES))
        )
    return FAMILIES[key]
