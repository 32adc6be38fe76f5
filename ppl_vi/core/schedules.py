"""Variance-preserving noise schedules and the Gaussian coefficients of the forward process.

The forward process of a variational diffusion model (Kingma, Salimans, Poole, Ho 2021;
math.md §2) is ``q(z_t | x) = N(a_t x, σ_t² I)`` for t ∈ [0, 1], parameterized by a
strictly increasing γ(t)::

    σ_t² = sigmoid(γ(t)),   a_t² = sigmoid(−γ(t)),   SNR(t) = a_t²/σ_t² = exp(−γ(t)),

so that ``a_t² + σ_t² = 1`` (variance preserving) and SNR is strictly decreasing.

A :class:`Schedule` is a backend-neutral description (a name and initial parameter
values as NumPy arrays). :func:`gamma_and_derivative` evaluates γ(t) and γ'(t) in closed
form for torch tensors or jax arrays; the adapters hold the parameters (torch
``Parameter`` / ``numpyro.param``) and pass them in, so a learned schedule is trained by
the host's autodiff. The coefficient functions take γ values, not t, and are pure.

Examples
--------
>>> import torch
>>> from ppl_vi.core import schedules
>>> sched = schedules.linear(gamma_min=-6.6, gamma_max=4.1)
>>> g, dg = schedules.gamma_and_derivative(torch.tensor([0.0, 1.0]), sched)
>>> [round(v, 2) for v in g.tolist()], round(float(dg[0]), 2)
([-6.6, 4.1], 10.7)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ppl_vi.core._xp import namespace, special

__all__ = [
    "Schedule", "linear", "cosine", "learned", "gamma", "gamma_and_derivative", "gamma_endpoints",
    "sigma2", "alpha2", "alpha", "sigma", "snr", "alpha_ts", "sigma2_ts",
    "posterior_coefficients",
]

Array = Any
SCHEDULE_KINDS = ("linear", "cosine", "learned")


class Schedule(NamedTuple):
    """A noise schedule: its kind and the initial values of its parameters.

    Attributes
    ----------
    kind : str
        ``"linear"`` (γ linear in t), ``"cosine"`` (a_t = cos θ(t), θ linear in t) or
        ``"learned"`` (VDM's monotone network).
    params : dict of str to numpy.ndarray
        Initial parameter values (float64). For the fixed kinds: ``gamma_min`` and
        ``gamma_range_raw`` (γ(1) − γ(0) = softplus(gamma_range_raw) > 0).
    learnable : bool
        Whether the adapters expose ``params`` to the optimizer.
    """

    kind: str
    params: dict
    learnable: bool


def _inverse_softplus(y: float) -> float:
    return float(y + math.log(-math.expm1(-y)))


def _endpoint_params(gamma_min: float, gamma_max: float) -> dict:
    if not (math.isfinite(gamma_min) and math.isfinite(gamma_max) and gamma_min < gamma_max):
        raise ValueError(
            f"noise schedule needs finite gamma_min < gamma_max (SNR strictly decreasing); "
            f"got gamma_min={gamma_min}, gamma_max={gamma_max}"
        )
    return {"gamma_min": np.array(gamma_min, dtype=np.float64),
            "gamma_range_raw": np.array(_inverse_softplus(gamma_max - gamma_min))}


def linear(gamma_min: float = -6.6, gamma_max: float = 4.1) -> Schedule:
    """Fixed schedule with γ(t) = γ_min + (γ_max − γ_min) t (VDM's fixed baseline)."""
    return Schedule("linear", _endpoint_params(gamma_min, gamma_max), False)


def cosine(gamma_min: float = -6.6, gamma_max: float = 4.1) -> Schedule:
    """Fixed cosine schedule: a_t = cos θ(t), σ_t = sin θ(t), θ linear in t.

    γ(t) = 2 log tan θ(t), with θ running from arctan(e^{γ_min/2}) to arctan(e^{γ_max/2}),
    i.e. the cosine schedule of Nichol & Dhariwal (2021) truncated to [γ_min, γ_max].
    """
    return Schedule("cosine", _endpoint_params(gamma_min, gamma_max), False)


def learned(gamma_min: float = -6.6, gamma_max: float = 4.1, num_hidden: int = 64,
            seed: int = 0) -> Schedule:
    """Learned monotone network for γ(t) (VDM, Appendix H), endpoints learned too.

    ``γ̃(t) = u + (1/H) Σ_j softplus(w3_j) (2 sigmoid(softplus(w2_j) u + b2_j) − 1)`` with
    ``u = softplus(w1) t + b1``: strictly increasing since every weight on the path from
    t is positive. It is rescaled to run exactly from γ_min to γ_max (both learned):
    ``γ(t) = γ_min + (γ_max − γ_min) (γ̃(t) − γ̃(0)) / (γ̃(1) − γ̃(0))``.

    ``seed`` fixes the NumPy initialisation of the hidden weights (so both backends start
    from identical values).
    """
    if num_hidden < 1:
        raise ValueError(f"learned schedule needs num_hidden >= 1; got {num_hidden}")
    rng = np.random.default_rng(seed)
    params = _endpoint_params(gamma_min, gamma_max)
    params.update(
        w1_raw=np.array(_inverse_softplus(1.0)), b1=np.array(0.0),
        w2_raw=rng.normal(0.0, 1.0, num_hidden), b2=rng.normal(0.0, 1.0, num_hidden),
        w3_raw=rng.normal(0.0, 1.0, num_hidden),
    )
    return Schedule("learned", params, True)


def _as_backend(params: dict, like: Array) -> dict:
    xp = namespace(like)
    return {k: xp.asarray(np.asarray(v), dtype=like.dtype) for k, v in params.items()}


def gamma_and_derivative(t: Array, schedule: Schedule, params: dict | None = None
                         ) -> tuple[Array, Array]:
    """γ(t) and dγ/dt in closed form.

    Parameters
    ----------
    t : array, shape (...)
        Times in [0, 1] (floating point).
    schedule : Schedule
    params : dict of arrays, optional
        Current parameter values in ``t``'s backend; ``schedule.params`` if omitted.

    Returns
    -------
    gamma, dgamma : arrays, shape (...)
    """
    if schedule.kind not in SCHEDULE_KINDS:
        raise ValueError(f"unknown schedule kind {schedule.kind!r}; expected one of {SCHEDULE_KINDS}")
    xp, sp = namespace(t), special(t)
    p = _as_backend(schedule.params, t) if params is None else params
    g_min, g_range = _min_and_range(p)
    if schedule.kind == "linear":
        return g_min + g_range * t, xp.broadcast_to(g_range, t.shape)
    if schedule.kind == "cosine":
        theta_min = xp.atan(xp.exp(g_min / 2))
        theta_max = xp.atan(xp.exp((g_min + g_range) / 2))
        theta = theta_min + (theta_max - theta_min) * t
        return 2 * xp.log(xp.tan(theta)), 4 * (theta_max - theta_min) / xp.sin(2 * theta)
    w1, w2, w3 = sp.softplus(p["w1_raw"]), sp.softplus(p["w2_raw"]), sp.softplus(p["w3_raw"])
    num_hidden = w2.shape[0]

    def unnormalized(tt):
        u = w1 * tt + p["b1"]
        s = sp.sigmoid(w2 * u[..., None] + p["b2"])
        value = u + xp.sum(w3 * (2 * s - 1), axis=-1) / num_hidden
        slope = w1 * (1 + xp.sum(w3 * 2 * s * (1 - s) * w2, axis=-1) / num_hidden)
        return value, slope

    ends, _ = unnormalized(xp.stack([0.0 * g_min, 0.0 * g_min + 1.0]))
    value, slope = unnormalized(t)
    scale = g_range / (ends[1] - ends[0])
    return g_min + scale * (value - ends[0]), scale * slope


def _min_and_range(params: dict) -> tuple[Array, Array]:
    return params["gamma_min"], special(params["gamma_min"]).softplus(params["gamma_range_raw"])


def gamma_endpoints(params: dict) -> tuple[Array, Array]:
    """γ(0) = γ_min and γ(1) = γ_min + softplus(gamma_range_raw), exactly, for every kind.

    Parameters
    ----------
    params : dict of arrays
        Schedule parameters in the target backend (as passed to :func:`gamma_and_derivative`).

    Returns
    -------
    gamma_0, gamma_1 : 0-d arrays
    """
    g_min, g_range = _min_and_range(params)
    return g_min, g_min + g_range


def gamma(t: Array, schedule: Schedule, params: dict | None = None) -> Array:
    """γ(t) = −log SNR(t); see :func:`gamma_and_derivative`."""
    return gamma_and_derivative(t, schedule, params)[0]


def sigma2(g: Array) -> Array:
    """σ_t² = sigmoid(γ_t)."""
    return special(g).sigmoid(g)


def alpha2(g: Array) -> Array:
    """a_t² = sigmoid(−γ_t) = 1 − σ_t²."""
    return special(g).sigmoid(-g)


def alpha(g: Array) -> Array:
    """a_t = sqrt(sigmoid(−γ_t))."""
    return namespace(g).sqrt(alpha2(g))


def sigma(g: Array) -> Array:
    """σ_t = sqrt(sigmoid(γ_t))."""
    return namespace(g).sqrt(sigma2(g))


def snr(g: Array) -> Array:
    """SNR(t) = a_t²/σ_t² = exp(−γ_t)."""
    return namespace(g).exp(-g)


def alpha_ts(g_t: Array, g_s: Array) -> Array:
    """a_{t|s} = a_t / a_s, the mean factor of q(z_t | z_s) for s < t."""
    xp = namespace(g_t, g_s)
    return xp.exp(0.5 * (special(g_t).log_sigmoid(-g_t) - special(g_s).log_sigmoid(-g_s)))


def sigma2_ts(g_t: Array, g_s: Array) -> Array:
    """σ²_{t|s} = σ_t² − a²_{t|s} σ_s² = −expm1(γ_s − γ_t) σ_t² (stable form), s < t."""
    return -namespace(g_t, g_s).expm1(g_s - g_t) * sigma2(g_t)


def posterior_coefficients(g_s: Array, g_t: Array) -> tuple[Array, Array, Array]:
    """Coefficients of q(z_s | z_t, x) = N(c_z z_t + c_x x, σ_Q² I) for s < t.

    ``c_z = a_{t|s} σ_s² / σ_t²``, ``c_x = a_s σ²_{t|s} / σ_t²``,
    ``σ_Q² = σ²_{t|s} σ_s² / σ_t²`` (math.md §2).

    Returns
    -------
    coef_z, coef_x, var : arrays broadcast from ``g_s``, ``g_t``
    """
    var_t, var_s, var_ts = sigma2(g_t), sigma2(g_s), sigma2_ts(g_t, g_s)
    coef_z = alpha_ts(g_t, g_s) * var_s / var_t
    coef_x = alpha(g_s) * var_ts / var_t
    return coef_z, coef_x, var_ts * var_s / var_t
