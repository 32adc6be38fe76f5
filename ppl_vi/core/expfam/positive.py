"""Families on positive values: ``Gamma`` (scalar) and ``Wishart`` (p x p matrices).

Gamma(concentration a, rate b): ``T(x) = (log x, x)``, ``eta = (a - 1, -b)``,
``A(eta) = lgamma(a) - a log b``, ``h = 1``; ``E[T] = (digamma(a) - log b, a / b)``.

Wishart(df nu, scale_matrix V) on p x p positive-definite matrices:
``T(X) = (X, log|X|)``, ``eta = (-V^{-1} / 2, (nu - p - 1) / 2)``,
``A(eta) = (nu / 2)(p log 2 + log|V|) + log Gamma_p(nu / 2)``, ``h = 1``;
``E[T] = (nu V, psi_p(nu / 2) + p log 2 + log|V|)`` with the multivariate digamma
``psi_p(a) = sum_{i<p} digamma(a - i/2)`` (Bishop, PRML, B.78–B.81).

Example
-------
>>> import torch
>>> from ppl_vi.core.expfam import Gamma
>>> eta = Gamma.natural_from_params(concentration=torch.tensor(3.0), rate=torch.tensor(2.0))
>>> Gamma.expected_stats(eta)[1]
tensor(1.5000)
"""

from __future__ import annotations

import math
from typing import Any

from ppl_vi.core._xp import namespace, special
from ppl_vi.core.expfam._family import ExponentialFamily, Params, check_params
from ppl_vi.core.expfam._linalg import check_square, chol_inverse, chol_logdet, cholesky
from ppl_vi.core.expfam._solvers import gamma_shape_from_log_gap, multipolygamma, wishart_df_from_log_gap

Array = Any

__all__ = ["Gamma", "Wishart"]

_LOG_2 = math.log(2.0)


def _zeros_batch(*arrays: Array) -> Array:
    xp = namespace(*arrays)
    total = arrays[0]
    for a in arrays[1:]:
        total = total + a
    return xp.zeros_like(total)


# --- Gamma --------------------------------------------------------------------------


def _gamma_stats(x: Array) -> Params:
    return (namespace(x).log(x), x)


def _gamma_log_base(x: Array) -> Array:
    return namespace(x).zeros_like(x)


def _gamma_log_normalizer(eta: Params) -> Array:
    eta1, eta2 = check_params(eta, 2, "Gamma")
    shape = eta1 + 1.0
    return special(shape).gammaln(shape) - shape * namespace(eta2).log(-eta2)


def _gamma_mean(eta: Params) -> Params:
    eta1, eta2 = check_params(eta, 2, "Gamma")
    shape, rate = eta1 + 1.0, -eta2
    return (special(shape).digamma(shape) - namespace(rate).log(rate), shape / rate)


def _gamma_natural(mu: Params) -> Params:
    mean_log, mean = check_params(mu, 2, "Gamma", "mean parameter")
    shape = gamma_shape_from_log_gap(namespace(mean).log(mean) - mean_log)
    return (shape - 1.0, -shape / mean)


def _gamma_from_params(*, concentration: Array, rate: Array) -> Params:
    xp = namespace(concentration, rate)
    concentration, rate = xp.broadcast_arrays(xp.asarray(concentration), xp.asarray(rate))
    return (concentration - 1.0, -rate)


def _gamma_to_params(eta: Params) -> dict:
    eta1, eta2 = check_params(eta, 2, "Gamma")
    return {"concentration": eta1 + 1.0, "rate": -eta2}


def _gamma_expected_log_base(eta: Params) -> Array:
    return _zeros_batch(*check_params(eta, 2, "Gamma"))


Gamma = ExponentialFamily(
    name="Gamma",
    event_ndim=0,
    stat_event_ndims=(0, 0),
    param_names=("concentration", "rate"),
    sufficient_stats=_gamma_stats,
    log_base_measure=_gamma_log_base,
    log_normalizer=_gamma_log_normalizer,
    mean_from_natural=_gamma_mean,
    natural_from_mean=_gamma_natural,
    natural_from_params=_gamma_from_params,
    params_from_natural=_gamma_to_params,
    expected_log_base_measure=_gamma_expected_log_base,
)


# --- Wishart ------------------------------------------------------------------------


def _wishart_stats(x: Array) -> Params:
    check_square(x, "value", "Wishart")
    return (x, chol_logdet(cholesky(x)))


def _wishart_log_base(x: Array) -> Array:
    return namespace(x).zeros_like(x[..., 0, 0])


def _wishart_unpack(eta: Params) -> tuple[Array, Array, int]:
    """``(lower Cholesky factor of V^{-1} = -2 eta1, df nu, dimension p)``."""
    eta1, eta2 = check_params(eta, 2, "Wishart")
    check_square(eta1, "eta[0] (-inverse scale / 2)", "Wishart")
    p = eta1.shape[-1]
    return cholesky(-2.0 * eta1), 2.0 * eta2 + (p + 1), p


def _wishart_log_normalizer(eta: Params) -> Array:
    chol_inv_scale, df, p = _wishart_unpack(eta)
    log_det_scale = -chol_logdet(chol_inv_scale)
    return 0.5 * df * (p * _LOG_2 + log_det_scale) + special(df).multigammaln(0.5 * df, p)


def _wishart_mean(eta: Params) -> Params:
    chol_inv_scale, df, p = _wishart_unpack(eta)
    scale = chol_inverse(chol_inv_scale)
    mean_log_det = multipolygamma(0, 0.5 * df, p) + p * _LOG_2 - chol_logdet(chol_inv_scale)
    return (df[..., None, None] * scale, mean_log_det)


def _wishart_natural(mu: Params) -> Params:
    mean, mean_log_det = check_params(mu, 2, "Wishart", "mean parameter")
    check_square(mean, "mu[0] (E[X])", "Wishart")
    p = mean.shape[-1]
    chol_mean = cholesky(mean)
    df = wishart_df_from_log_gap(mean_log_det - chol_logdet(chol_mean), p)
    return (-0.5 * df[..., None, None] * chol_inverse(chol_mean), 0.5 * (df - p - 1))


def _wishart_from_params(*, df: Array, scale_matrix: Array) -> Params:
    check_square(scale_matrix, "scale_matrix", "Wishart")
    xp = namespace(df, scale_matrix)
    p = scale_matrix.shape[-1]
    inv_scale = chol_inverse(cholesky(scale_matrix))
    df = xp.asarray(df, dtype=inv_scale.dtype)
    batch = tuple(xp.broadcast_arrays(df, inv_scale[..., 0, 0])[0].shape)
    eta1 = xp.broadcast_to(-0.5 * inv_scale, batch + (p, p))
    return (eta1, xp.broadcast_to(0.5 * (df - p - 1), batch))


def _wishart_to_params(eta: Params) -> dict:
    chol_inv_scale, df, _ = _wishart_unpack(eta)
    return {"df": df, "scale_matrix": chol_inverse(chol_inv_scale)}


def _wishart_expected_log_base(eta: Params) -> Array:
    eta1, eta2 = check_params(eta, 2, "Wishart")
    return _zeros_batch(eta1[..., 0, 0], eta2)


Wishart = ExponentialFamily(
    name="Wishart",
    event_ndim=2,
    stat_event_ndims=(2, 0),
    param_names=("df", "scale_matrix"),
    sufficient_stats=_wishart_stats,
    log_base_measure=_wishart_log_base,
    log_normalizer=_wishart_log_normalizer,
    mean_from_natural=_wishart_mean,
    natural_from_mean=_wishart_natural,
    natural_from_params=_wishart_from_params,
    params_from_natural=_wishart_to_params,
    expected_log_base_measure=_wishart_expected_log_base,
)
