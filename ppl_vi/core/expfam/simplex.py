"""Families on the simplex: ``Dirichlet`` and its two-category case ``Beta``.

Dirichlet(concentration a) on the K-simplex: ``T(x) = (log x,)``, ``eta = (a - 1,)``,
``A(eta) = sum_k lgamma(a_k) - lgamma(a_0)`` with ``a_0 = sum_k a_k``, ``h = 1``;
``E[log x_k] = digamma(a_k) - digamma(a_0)``.

Beta(concentration1 a, concentration0 b) is the Dirichlet on ``(x, 1 - x)``:
``T(x) = (log x, log(1 - x))``, ``eta = (a - 1, b - 1)``; its formulas are the
Dirichlet's applied to the stacked concentration ``(a, b)``.

Example
-------
>>> import torch
>>> from ppl_vi.core.expfam import Beta
>>> eta = Beta.natural_from_params(concentration1=torch.tensor(2.0), concentration0=torch.tensor(3.0))
>>> Beta.params_from_natural(eta)["concentration0"]
tensor(3.)
"""

from __future__ import annotations

from typing import Any

from ppl_vi.core._xp import namespace, special
from ppl_vi.core.expfam._family import ExponentialFamily, Params, check_params
from ppl_vi.core.expfam._solvers import dirichlet_from_mean_log

Array = Any

__all__ = ["Dirichlet", "Beta"]


# --- Dirichlet, written on the concentration vector a = eta + 1 ------------------------


def _log_beta(conc: Array) -> Array:
    sp, xp = special(conc), namespace(conc)
    return xp.sum(sp.gammaln(conc), axis=-1) - sp.gammaln(xp.sum(conc, axis=-1))


def _mean_log(conc: Array) -> Array:
    sp, xp = special(conc), namespace(conc)
    return sp.digamma(conc) - sp.digamma(xp.sum(conc, axis=-1, keepdims=True))


def _dirichlet_conc(eta: Params) -> Array:
    (eta1,) = check_params(eta, 1, "Dirichlet")
    if len(eta1.shape) == 0:
        raise ValueError("Dirichlet: eta[0] must have shape (..., K); got a scalar")
    return eta1 + 1.0


def _dirichlet_stats(x: Array) -> Params:
    return (namespace(x).log(x),)


def _dirichlet_log_base(x: Array) -> Array:
    return namespace(x).zeros_like(x[..., 0])


def _dirichlet_natural(mu: Params) -> Params:
    (mean_log,) = check_params(mu, 1, "Dirichlet", "mean parameter")
    return (dirichlet_from_mean_log(mean_log) - 1.0,)


def _dirichlet_from_params(*, concentration: Array) -> Params:
    return (concentration - 1.0,)


Dirichlet = ExponentialFamily(
    name="Dirichlet",
    event_ndim=1,
    stat_event_ndims=(1,),
    param_names=("concentration",),
    sufficient_stats=_dirichlet_stats,
    log_base_measure=_dirichlet_log_base,
    log_normalizer=lambda eta: _log_beta(_dirichlet_conc(eta)),
    mean_from_natural=lambda eta: (_mean_log(_dirichlet_conc(eta)),),
    natural_from_mean=_dirichlet_natural,
    natural_from_params=_dirichlet_from_params,
    params_from_natural=lambda eta: {"concentration": _dirichlet_conc(eta)},
    expected_log_base_measure=lambda eta: namespace(eta[0]).zeros_like(_dirichlet_conc(eta)[..., 0]),
)


# --- Beta: the Dirichlet on (x, 1 - x) ----------------------------------------------


def _beta_conc(eta: Params) -> Array:
    eta1, eta0 = check_params(eta, 2, "Beta")
    xp = namespace(eta1, eta0)
    return xp.stack(xp.broadcast_arrays(eta1, eta0), axis=-1) + 1.0


def _beta_stats(x: Array) -> Params:
    xp = namespace(x)
    return (xp.log(x), xp.log1p(-x))


def _beta_mean(eta: Params) -> Params:
    mean_log = _mean_log(_beta_conc(eta))
    return (mean_log[..., 0], mean_log[..., 1])


def _beta_natural(mu: Params) -> Params:
    mean_log1, mean_log0 = check_params(mu, 2, "Beta", "mean parameter")
    xp = namespace(mean_log1, mean_log0)
    conc = dirichlet_from_mean_log(xp.stack(xp.broadcast_arrays(mean_log1, mean_log0), axis=-1))
    return (conc[..., 0] - 1.0, conc[..., 1] - 1.0)


def _beta_from_params(*, concentration1: Array, concentration0: Array) -> Params:
    xp = namespace(concentration1, concentration0)
    conc1, conc0 = xp.broadcast_arrays(xp.asarray(concentration1), xp.asarray(concentration0))
    return (conc1 - 1.0, conc0 - 1.0)


def _beta_to_params(eta: Params) -> dict:
    conc = _beta_conc(eta)
    return {"concentration1": conc[..., 0], "concentration0": conc[..., 1]}


Beta = ExponentialFamily(
    name="Beta",
    event_ndim=0,
    stat_event_ndims=(0, 0),
    param_names=("concentration1", "concentration0"),
    sufficient_stats=_beta_stats,
    log_base_measure=lambda x: namespace(x).zeros_like(x),
    log_normalizer=lambda eta: _log_beta(_beta_conc(eta)),
    mean_from_natural=_beta_mean,
    natural_from_mean=_beta_natural,
    natural_from_params=_beta_from_params,
    params_from_natural=_beta_to_params,
    expected_log_base_measure=lambda eta: namespace(eta[0]).zeros_like(_beta_conc(eta)[..., 0]),
)
