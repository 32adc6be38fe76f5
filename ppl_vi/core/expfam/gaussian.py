"""Gaussian families: scalar ``Normal`` (elementwise) and ``MultivariateNormal``.

Normal(loc m, scale s): ``T(x) = (x, x^2)``, ``eta = (m / s^2, -1 / (2 s^2))``,
``A(eta) = -eta_1^2 / (4 eta_2) - log(-2 eta_2) / 2``, ``log h = -log(2 pi) / 2``.

MultivariateNormal(loc m, precision Lambda) on R^d: ``T(x) = (x, x x^T)``,
``eta = (Lambda m, -Lambda / 2)``, ``A(eta) = m^T Lambda m / 2 - log|Lambda| / 2``,
``log h = -d log(2 pi) / 2``; every solve goes through the Cholesky factor of Lambda.

Example
-------
>>> import torch
>>> from ppl_vi.core.expfam import Normal
>>> eta = Normal.natural_from_params(loc=torch.tensor(1.0), scale=torch.tensor(2.0))
>>> Normal.params_from_natural(eta)["scale"]
tensor(2.)
"""

from __future__ import annotations

import math
from typing import Any

from ppl_vi.core._xp import namespace
from ppl_vi.core.expfam._family import ExponentialFamily, Params, check_params
from ppl_vi.core.expfam._linalg import check_square, chol_inverse, chol_logdet, chol_solve, cholesky, matvec

Array = Any

__all__ = ["Normal", "MultivariateNormal"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# --- Normal -----------------------------------------------------------------------


def _normal_stats(x: Array) -> Params:
    return (x, x * x)


def _normal_log_base(x: Array) -> Array:
    return namespace(x).zeros_like(x) - _HALF_LOG_2PI


def _normal_log_normalizer(eta: Params) -> Array:
    eta1, eta2 = check_params(eta, 2, "Normal")
    xp = namespace(eta1, eta2)
    return -eta1 * eta1 / (4.0 * eta2) - 0.5 * xp.log(-2.0 * eta2)


def _normal_mean(eta: Params) -> Params:
    eta1, eta2 = check_params(eta, 2, "Normal")
    var = -0.5 / eta2
    loc = eta1 * var
    return (loc, loc * loc + var)


def _normal_natural(mu: Params) -> Params:
    mean, second = check_params(mu, 2, "Normal", "mean parameter")
    var = second - mean * mean
    return (mean / var, -0.5 / var)


def _normal_from_params(*, loc: Array, scale: Array) -> Params:
    xp = namespace(loc, scale)
    loc, scale = xp.broadcast_arrays(xp.asarray(loc), xp.asarray(scale))
    var = scale * scale
    return (loc / var, -0.5 / var)


def _normal_to_params(eta: Params) -> dict:
    eta1, eta2 = check_params(eta, 2, "Normal")
    var = -0.5 / eta2
    return {"loc": eta1 * var, "scale": namespace(var).sqrt(var)}


def _normal_expected_log_base(eta: Params) -> Array:
    eta1, eta2 = check_params(eta, 2, "Normal")
    return namespace(eta1, eta2).zeros_like(eta1 + eta2) - _HALF_LOG_2PI


Normal = ExponentialFamily(
    name="Normal",
    event_ndim=0,
    stat_event_ndims=(0, 0),
    param_names=("loc", "scale"),
    sufficient_stats=_normal_stats,
    log_base_measure=_normal_log_base,
    log_normalizer=_normal_log_normalizer,
    mean_from_natural=_normal_mean,
    natural_from_mean=_normal_natural,
    natural_from_params=_normal_from_params,
    params_from_natural=_normal_to_params,
    expected_log_base_measure=_normal_expected_log_base,
)


# --- MultivariateNormal -------------------------------------------------------------


def _outer(x: Array) -> Array:
    return x[..., :, None] * x[..., None, :]


def _mvn_stats(x: Array) -> Params:
    return (x, _outer(x))


def _mvn_log_base(x: Array) -> Array:
    return namespace(x).zeros_like(x[..., 0]) - x.shape[-1] * _HALF_LOG_2PI


def _mvn_unpack(eta: Params) -> tuple[Array, Array, Array]:
    """``(eta1, lower Cholesky factor of Lambda = -2 eta2, mean m = Lambda^{-1} eta1)``."""
    eta1, eta2 = check_params(eta, 2, "MultivariateNormal")
    check_square(eta2, "eta[1] (-precision/2)", "MultivariateNormal")
    if eta1.shape[-1:] != eta2.shape[-1:]:
        raise ValueError(
            f"MultivariateNormal: eta[0] has event size {tuple(eta1.shape[-1:])} but eta[1] is {tuple(eta2.shape[-2:])}"
        )
    chol = cholesky(-2.0 * eta2)
    return eta1, chol, chol_solve(chol, eta1[..., None])[..., 0]


def _mvn_log_normalizer(eta: Params) -> Array:
    eta1, chol, mean = _mvn_unpack(eta)
    xp = namespace(eta1, chol)
    return 0.5 * xp.sum(eta1 * mean, axis=-1) - 0.5 * chol_logdet(chol)


def _mvn_mean(eta: Params) -> Params:
    _, chol, mean = _mvn_unpack(eta)
    return (mean, chol_inverse(chol) + _outer(mean))


def _mvn_natural(mu: Params) -> Params:
    mean, second = check_params(mu, 2, "MultivariateNormal", "mean parameter")
    precision = chol_inverse(cholesky(second - _outer(mean)))
    return (matvec(precision, mean), -0.5 * precision)


def _mvn_from_params(*, loc: Array, precision_matrix: Array) -> Params:
    check_square(precision_matrix, "precision_matrix", "MultivariateNormal")
    if tuple(loc.shape[-1:]) != tuple(precision_matrix.shape[-1:]):
        raise ValueError(
            f"MultivariateNormal: loc has shape {tuple(loc.shape)} but precision_matrix has "
            f"shape {tuple(precision_matrix.shape)}; expected loc (..., d) and (..., d, d)"
        )
    xp = namespace(loc, precision_matrix)
    eta1 = matvec(precision_matrix, loc)
    eta2 = xp.broadcast_to(-0.5 * precision_matrix, tuple(eta1.shape) + tuple(eta1.shape[-1:]))
    return (eta1, eta2)


def _mvn_to_params(eta: Params) -> dict:
    _, _, mean = _mvn_unpack(eta)
    precision = -2.0 * eta[1]
    event = tuple(mean.shape) + tuple(mean.shape[-1:])
    return {"loc": mean, "precision_matrix": namespace(precision).broadcast_to(precision, event)}


def _mvn_expected_log_base(eta: Params) -> Array:
    eta1, eta2 = check_params(eta, 2, "MultivariateNormal")
    xp = namespace(eta1, eta2)
    batch = xp.sum(eta1, axis=-1) + xp.sum(eta2, axis=(-2, -1))
    return xp.zeros_like(batch) - eta1.shape[-1] * _HALF_LOG_2PI


MultivariateNormal = ExponentialFamily(
    name="MultivariateNormal",
    event_ndim=1,
    stat_event_ndims=(1, 2),
    param_names=("loc", "precision_matrix"),
    sufficient_stats=_mvn_stats,
    log_base_measure=_mvn_log_base,
    log_normalizer=_mvn_log_normalizer,
    mean_from_natural=_mvn_mean,
    natural_from_mean=_mvn_natural,
    natural_from_params=_mvn_from_params,
    params_from_natural=_mvn_to_params,
    expected_log_base_measure=_mvn_expected_log_base,
)
