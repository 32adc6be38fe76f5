"""Closed-form Normal–Gamma linear regression, shared by ``normal_gamma`` and
``bayesian_linear_regression`` (NumPy/SciPy only).

Model (Bishop, PRML §3.3 and exercise 3.12; Murphy, *Conjugate Bayesian analysis of
the Gaussian distribution*, §6)::

    precision ~ Gamma(a0, b0)                       (rate parametrization)
    weights | precision ~ N(m0, (precision * Lambda0)^{-1})
    y | weights, precision ~ N(X @ weights, precision^{-1} I_N)

Posterior: ``Normal-Gamma(mN, LambdaN, aN, bN)`` with

    LambdaN = Lambda0 + X^T X,     mN = LambdaN^{-1} (Lambda0 m0 + X^T y),
    aN = a0 + N/2,                 bN = b0 + (|y - X mN|^2 + (mN - m0)^T Lambda0 (mN - m0)) / 2.

Marginally ``precision ~ Gamma(aN, bN)`` and ``weights`` is a multivariate Student-t
with ``2 aN`` degrees of freedom, location ``mN`` and shape ``(bN / aN) LambdaN^{-1}``.
The evidence is

    log p(y) = -N/2 log(2 pi) + 1/2 log|Lambda0| - 1/2 log|LambdaN|
               + a0 log b0 - aN log bN + lgamma(aN) - lgamma(a0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln


@dataclass(frozen=True)
class NormalGammaPosterior:
    """Parameters of the posterior Normal-Gamma of a linear regression.

    Attributes
    ----------
    loc : ndarray, shape (D,)
        ``mN``, the posterior mean of the weights.
    precision_matrix : ndarray, shape (D, D)
        ``LambdaN``; the weights given ``precision`` have precision ``precision * LambdaN``.
    concentration, rate : float
        ``aN, bN`` of the Gamma marginal of ``precision``.
    log_evidence : float
        ``log p(y)`` with all constants.
    """

    loc: np.ndarray
    precision_matrix: np.ndarray
    concentration: float
    rate: float
    log_evidence: float

    @property
    def weights_covariance_factor(self) -> np.ndarray:
        """``LambdaN^{-1}``, shape (D, D)."""
        return np.linalg.inv(self.precision_matrix)

    @property
    def weights_sd(self) -> np.ndarray:
        """Marginal posterior sd of each weight, shape (D,): Student-t with ``2 aN`` degrees
        of freedom, infinite unless ``2 aN > 2``."""
        df = 2.0 * self.concentration
        shape_diag = self.rate / self.concentration * np.diag(self.weights_covariance_factor)
        if df <= 2.0:
            return np.full_like(shape_diag, np.inf)
        return np.sqrt(shape_diag * df / (df - 2.0))

    def sample(self, rng: np.random.Generator, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Joint draws ``(weights (S, D), precision (S,))``."""
        precision = rng.gamma(self.concentration, 1.0 / self.rate, size=num_samples)
        chol = np.linalg.cholesky(self.weights_covariance_factor)
        noise = rng.standard_normal((num_samples, self.loc.shape[0]))
        weights = self.loc + (noise @ chol.T) / np.sqrt(precision)[:, None]
        return weights, precision


def normal_gamma_regression_posterior(
    X: np.ndarray, y: np.ndarray, prior_loc: np.ndarray, prior_precision_matrix: np.ndarray, a0: float, b0: float
) -> NormalGammaPosterior:
    """Posterior and evidence of the Normal-Gamma linear regression.

    Parameters
    ----------
    X : ndarray, shape (N, D)
    y : ndarray, shape (N,)
    prior_loc : ndarray, shape (D,)
        ``m0``.
    prior_precision_matrix : ndarray, shape (D, D)
        ``Lambda0`` (positive definite).
    a0, b0 : float
        Gamma prior of the noise precision (shape, rate).
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    prior_loc = np.asarray(prior_loc, dtype=float)
    prior_precision_matrix = np.asarray(prior_precision_matrix, dtype=float)
    where = "normal_gamma_regression_posterior"
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"{where}: expected X of shape (N, D) and y of shape (N,); got {X.shape} and {y.shape}")
    num_data, num_features = X.shape
    if prior_loc.shape != (num_features,) or prior_precision_matrix.shape != (num_features, num_features):
        raise ValueError(
            f"{where}: expected prior_loc of shape ({num_features},) and prior_precision_matrix of shape "
            f"({num_features}, {num_features}); got {prior_loc.shape} and {prior_precision_matrix.shape}"
        )
    precision_matrix = prior_precision_matrix + X.T @ X
    loc = np.linalg.solve(precision_matrix, prior_precision_matrix @ prior_loc + X.T @ y)
    residual = y - X @ loc
    shift = loc - prior_loc
    concentration = a0 + num_data / 2.0
    rate = b0 + 0.5 * (residual @ residual + shift @ prior_precision_matrix @ shift)
    log_evidence = (
        -0.5 * num_data * np.log(2.0 * np.pi)
        + 0.5 * np.linalg.slogdet(prior_precision_matrix)[1]
        - 0.5 * np.linalg.slogdet(precision_matrix)[1]
        + a0 * np.log(b0)
        - concentration * np.log(rate)
        + gammaln(concentration)
        - gammaln(a0)
    )
    return NormalGammaPosterior(loc, precision_matrix, float(concentration), float(rate), float(log_evidence))
