"""Expected log-densities of conjugate sites, written once for torch and jax.

CAVI (Hoffman et al. 2013; Khan & Lin 2017) needs, for every sample site of a program,
``E_q[log p(value | params)]`` under a mean-field ``q``, as a function of the mean
parameters ``mu_j = E_q[T(z_j)]`` of the latent sites. For the conditionally conjugate
pairs below that expectation is an exact closed form in a few *moments* of each
distribution parameter, and it is linear in each ``mu_j``; its gradient with respect to
``mu_j`` is therefore the optimal natural parameter of ``q_j``.

A parameter is described by its **role**, which fixes the moments a rule needs:

=====================  =========================================  ======================
role                   moments (tuple)                            fed by a latent
=====================  =========================================  ======================
``real``               ``(E[a], E[a^2])``                         Normal, MultivariateNormal
``vector``             ``(E[a], E[a a^T])``                       MultivariateNormal
``precision``          ``(E[s^-2], E[log s^-2])`` of a scale s    Gamma
``positive``           ``(E[a], E[log a])``                       Gamma
``precision_matrix``   ``(E[A], E[log|A|])``                      Wishart, Gamma
``unit``               ``(E[log a], E[log(1 - a)])``              Beta
``simplex``            :class:`SimplexMoments` (``E[log a]``)     Dirichlet
``const``              the constant itself                        (none)
=====================  =========================================  ======================

``RULES[family](value_stats, params)`` returns the expected log-density, shape the
broadcast batch shape of the site's base distribution. ``value_stats`` are ``E[T(value)]``
in the conventions of :mod:`ppl_vi.core.expfam` (raw values for discrete families).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ppl_vi.core._xp import namespace, special
from ppl_vi.core.expfam._linalg import chol_inverse, chol_logdet, cholesky

Array = Any
Moments = tuple

__all__ = [
    "PARAM_ROLES",
    "RULES",
    "SimplexMoments",
    "const_moments",
    "observed_stats",
    "gather_atoms",
]

_LOG_2PI = math.log(2.0 * math.pi)

# family -> {canonical parameter name: role}
PARAM_ROLES: dict[str, dict[str, str]] = {
    "Normal": {"loc": "real", "scale": "precision"},
    "MultivariateNormal": {"loc": "vector", "precision_matrix": "precision_matrix"},
    "Gamma": {"concentration": "const", "rate": "positive"},
    "Exponential": {"rate": "positive"},
    "Poisson": {"rate": "positive"},
    "Beta": {"concentration1": "const", "concentration0": "const"},
    "Bernoulli": {"probs": "unit"},
    "Binomial": {"total_count": "const", "probs": "unit"},
    "Dirichlet": {"concentration": "const"},
    "Categorical": {"probs": "simplex"},
    "Multinomial": {"total_count": "const", "probs": "simplex"},
    "Wishart": {"df": "const", "scale_matrix": "const"},
}

# number of trailing dimensions of one parameter "atom" by role
ROLE_ATOM_NDIM = {
    "real": 0,
    "vector": 1,
    "precision": 0,
    "positive": 0,
    "precision_matrix": 2,
    "unit": 0,
    "simplex": 1,
    "const": 0,
}


def gather_atoms(table: Array, index: Array, atom_ndim: int) -> Array:
    """``table[index]`` over the leading dimension of a flattened table.

    Parameters
    ----------
    table : array, shape (L, *atom)
    index : integer array, any shape
    atom_ndim : int
        ``len(atom)``.

    Returns
    -------
    array, shape ``index.shape + atom``
    """
    xp = namespace(table)
    atom = tuple(table.shape[table.ndim - atom_ndim :]) if atom_ndim else ()
    flat = xp.take(table, xp.reshape(index, (-1,)), axis=0)
    return xp.reshape(flat, tuple(index.shape) + atom)


@dataclass(frozen=True)
class SimplexMoments:
    """``E[log p]`` of a probability vector parameter, kept as rows of a table.

    The parameter at batch position ``b`` is row ``rows[b]`` of ``table`` (shape (R, K)),
    so ``log_at(x)`` can read ``E[log p_x]`` without materializing a (batch, K) array —
    LDA's ``topics[assignment]`` under enumeration would otherwise be tokens x vocabulary.
    The table itself is materialized before the gather (``special().materialize``), so
    that a compiler computes its entries once, not once per gathered element.
    """

    table: Array
    rows: Array

    def log_at(self, x: Array) -> Array:
        """``E[log p_x]`` for integer categories ``x`` (broadcast against ``rows``)."""
        xp = namespace(self.table)
        num_categories = self.table.shape[-1]
        flat = self.rows * num_categories + xp.astype(x, self.rows.dtype)
        return gather_atoms(xp.reshape(special(self.table).materialize(self.table), (-1,)), flat, 0)

    def full(self) -> Array:
        """``E[log p]``, shape ``rows.shape + (K,)``."""
        return gather_atoms(special(self.table).materialize(self.table), self.rows, 1)


def _outer(a: Array) -> Array:
    return a[..., :, None] * a[..., None, :]


def _logdet(a: Array) -> Array:
    if isinstance(a, np.ndarray):  # the planner's constants, computed once in NumPy
        return np.linalg.slogdet(a)[1]
    return special(a).logdet(a)


def const_moments(role: str, value: Array, index_dtype: Any = None) -> Any:
    """Moments of a constant parameter ``value`` in ``role`` (see the module table)."""
    xp = namespace(value)
    if role == "real":
        return (value, value * value)
    if role == "vector":
        return (value, _outer(value))
    if role == "precision":
        precision = 1.0 / (value * value)
        return (precision, xp.log(precision))
    if role == "positive":
        return (value, xp.log(value))
    if role == "precision_matrix":
        return (value, _logdet(value))
    if role == "unit":
        return (xp.log(value), xp.log1p(-value))
    if role == "simplex":
        batch = tuple(value.shape[:-1])
        num_rows = math.prod(batch)
        rows = xp.reshape(xp.arange(num_rows, dtype=index_dtype), batch)
        return SimplexMoments(xp.reshape(xp.log(value), (num_rows, value.shape[-1])), rows)
    if role == "const":
        return value
    raise ValueError(f"unknown parameter role {role!r}")


def observed_stats(family: str, value: Array) -> tuple:
    """``T(value)`` of an observed value, in the form the rule of ``family`` reads."""
    xp = namespace(value)
    if family == "Normal":
        return (value, value * value)
    if family == "MultivariateNormal":
        return (value, _outer(value))
    if family in ("Gamma", "Exponential"):
        return (xp.log(value), value)
    if family == "Beta":
        return (xp.log(value), xp.log1p(-value))
    if family == "Dirichlet":
        return (xp.log(value),)
    if family == "Wishart":
        return (value, _logdet(value))
    return (value,)


def _normal(v: tuple, p: dict) -> Array:
    x1, x2 = v
    loc, loc_sq = p["loc"]
    precision, log_precision = p["scale"]
    return 0.5 * log_precision - 0.5 * _LOG_2PI - 0.5 * precision * (x2 - 2.0 * x1 * loc + loc_sq)


def _contract(x: Array, p: Array) -> Array:
    """``sum(x * p, axis=-1)`` with broadcasting; a matrix product when ``p`` has a
    singleton second-to-last dimension (the enumerated-mixture case: ``x`` (N, F)
    against ``p`` (K, 1, F) gives (K, N) without materializing (K, N, F))."""
    xp = namespace(x, p)
    if x.ndim >= 2 and p.ndim >= 2 and p.shape[-2] == 1:
        return (x @ xp.matrix_transpose(p))[..., 0]
    return xp.sum(x * p, axis=-1)


def _flat2(a: Array) -> Array:
    return namespace(a).reshape(a, tuple(a.shape[:-2]) + (a.shape[-2] * a.shape[-1],))


def _mvn(v: tuple, p: dict) -> Array:
    xp = namespace(v[0])
    x1, x2 = v
    loc, loc_outer = p["loc"]
    prec, logdet = p["precision_matrix"]
    dim = x1.shape[-1]
    cross = _contract(x1, (prec @ loc[..., None])[..., 0])
    quad = _contract(_flat2(x2), _flat2(prec)) - 2.0 * cross + xp.sum(prec * loc_outer, axis=(-2, -1))
    return 0.5 * logdet - 0.5 * dim * _LOG_2PI - 0.5 * quad


def _gamma(v: tuple, p: dict) -> Array:
    log_x, x = v
    conc = namespace(log_x).asarray(p["concentration"], dtype=log_x.dtype)
    rate, log_rate = p["rate"]
    # the normalizer of the parameter as given (a constant: computed once, not per element)
    return conc * log_rate - special(conc).gammaln(conc) + (conc - 1.0) * log_x - rate * x


def _exponential(v: tuple, p: dict) -> Array:
    rate, log_rate = p["rate"]
    return log_rate - rate * v[1]


def _poisson(v: tuple, p: dict) -> Array:
    x = v[0]
    rate, log_rate = p["rate"]
    return x * log_rate - rate - special(log_rate).gammaln(x + 1.0)


def _beta(v: tuple, p: dict) -> Array:
    log_x, log_1mx = v
    xp = namespace(log_x)
    a, b = xp.asarray(p["concentration1"], dtype=log_x.dtype), xp.asarray(p["concentration0"], dtype=log_x.dtype)
    sp = special(log_x)
    log_beta = sp.gammaln(a) + sp.gammaln(b) - sp.gammaln(a + b)
    return (a - 1.0) * log_x + (b - 1.0) * log_1mx - log_beta


def _bernoulli(v: tuple, p: dict) -> Array:
    x = v[0]
    log_p, log_1mp = p["probs"]
    return x * log_p + (1.0 - x) * log_1mp


def _binomial(v: tuple, p: dict) -> Array:
    x = v[0]
    n = p["total_count"]
    log_p, log_1mp = p["probs"]
    sp = special(log_p)
    log_choose = sp.gammaln(n + 1.0) - sp.gammaln(x + 1.0) - sp.gammaln(n - x + 1.0)
    return log_choose + x * log_p + (n - x) * log_1mp


def _dirichlet(v: tuple, p: dict) -> Array:
    xp = namespace(v[0])
    log_x = v[0]
    conc = xp.asarray(p["concentration"], dtype=log_x.dtype)
    sp = special(conc)
    # the normalizer of the parameter as given (a constant: computed once, not per row)
    log_norm = sp.gammaln(xp.sum(conc, axis=-1)) - xp.sum(sp.gammaln(conc), axis=-1)
    return xp.sum((conc - 1.0) * log_x, axis=-1) + log_norm


def _categorical(v: tuple, p: dict) -> Array:
    return p["probs"].log_at(v[0])


def _multinomial(v: tuple, p: dict) -> Array:
    xp = namespace(v[0])
    x = v[0]
    n = p["total_count"]
    sp = special(x)
    log_coef = sp.gammaln(n + 1.0 + 0.0 * x[..., 0]) - xp.sum(sp.gammaln(x + 1.0), axis=-1)
    return xp.sum(x * p["probs"].full(), axis=-1) + log_coef


def _wishart(v: tuple, p: dict) -> Array:
    xp = namespace(v[0])
    X, logdet_x = v
    df, scale = p["df"], p["scale_matrix"]
    dim = X.shape[-1]
    sp = special(X)
    chol = cholesky(scale)  # through the factor: no LU (a pivoting loop to compile)
    trace = xp.sum(chol_inverse(chol) * X, axis=(-2, -1))
    log_norm = (
        0.5 * df * dim * math.log(2.0) + 0.5 * df * chol_logdet(chol) + sp.multigammaln(0.5 * df, dim)
    )
    return 0.5 * (df - dim - 1.0) * logdet_x - 0.5 * trace - log_norm


RULES: dict[str, Callable[[tuple, dict], Array]] = {
    "Normal": _normal,
    "MultivariateNormal": _mvn,
    "Gamma": _gamma,
    "Exponential": _exponential,
    "Poisson": _poisson,
    "Beta": _beta,
    "Bernoulli": _bernoulli,
    "Binomial": _binomial,
    "Dirichlet": _dirichlet,
    "Categorical": _categorical,
    "Multinomial": _multinomial,
    "Wishart": _wishart,
}
