"""Discrete families: ``Bernoulli``, ``Categorical`` and ``Poisson``.

Bernoulli(probs p): ``T(x) = (x,)``, ``eta = (logit p,)``, ``A = softplus(eta)``.

Categorical(probs p) over ``{0, ..., K-1}``: ``T(x) = (onehot(x),)``,
``eta = (log p,)``, ``A = logsumexp(eta)`` (non-minimal: ``eta + c`` is the same
distribution, and unnormalized logits are accepted).

Poisson(rate r): ``T(x) = (x,)``, ``eta = (log r,)``, ``A = exp(eta)``,
``log h(x) = -log x!``. Its entropy needs ``E[log x!]``, which has no closed form: it is
summed over a fixed window of ``2 * 220 + 1`` values around the rate for ``r < 200``
(the window spans more than 15 standard deviations) and taken from the asymptotic
expansion ``H = log(2 pi e r)/2 - 1/(12 r) - 1/(24 r^2) - 19/(360 r^3)`` above
(error below 1e-10 there).

Example
-------
>>> import torch
>>> from ppl_vi.core.expfam import Categorical
>>> eta = Categorical.natural_from_params(probs=torch.tensor([0.2, 0.8]))
>>> Categorical.log_prob(torch.tensor(1), eta)
tensor(-0.2231)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ppl_vi.core._xp import namespace, special
from ppl_vi.core.expfam._family import ExponentialFamily, Params, check_params

Array = Any

__all__ = ["Bernoulli", "Categorical", "Poisson"]


def _one_of(family: str, probs: Array | None, logits: Array | None) -> None:
    if (probs is None) == (logits is None):
        raise TypeError(f"{family}: pass exactly one of probs= or logits=")


def _eta0(eta: Params, family: str) -> Array:
    return check_params(eta, 1, family)[0]


def _on_eta(family: str, fn: Callable[[Array], Any]) -> Callable[[Params], Any]:
    """Lift ``fn`` on the single natural-parameter array to a function of ``eta``."""
    return lambda eta: fn(_eta0(eta, family))


# --- Bernoulli ----------------------------------------------------------------------


def _bernoulli_from_params(*, probs: Array | None = None, logits: Array | None = None) -> Params:
    _one_of("Bernoulli", probs, logits)
    if logits is not None:
        return (logits,)
    xp = namespace(probs)
    return (xp.log(probs) - xp.log1p(-probs),)


Bernoulli = ExponentialFamily(
    name="Bernoulli",
    event_ndim=0,
    stat_event_ndims=(0,),
    param_names=("probs", "logits"),
    sufficient_stats=lambda x: (x,),
    log_base_measure=lambda x: namespace(x).zeros_like(x),
    log_normalizer=_on_eta("Bernoulli", lambda logits: special(logits).softplus(logits)),
    mean_from_natural=_on_eta("Bernoulli", lambda logits: (special(logits).sigmoid(logits),)),
    natural_from_mean=_on_eta("Bernoulli", lambda probs: _bernoulli_from_params(probs=probs)),
    natural_from_params=_bernoulli_from_params,
    params_from_natural=_on_eta("Bernoulli", lambda logits: {"logits": logits}),
    expected_log_base_measure=_on_eta("Bernoulli", lambda logits: namespace(logits).zeros_like(logits)),
)


# --- Categorical --------------------------------------------------------------------


def _categorical_stats(x: Array, *, num_categories: int | None = None, dtype: Any = None) -> Params:
    """``(onehot(x),)`` of shape ``x.shape + (num_categories,)``; ``dtype`` defaults to
    the backend's default floating type."""
    if num_categories is None:
        raise TypeError("Categorical.sufficient_stats needs num_categories= (the size K of the one-hot vector)")
    xp = namespace(x)
    dtype = xp.asarray(0.0).dtype if dtype is None else dtype
    hits = x[..., None] == xp.arange(num_categories, dtype=x.dtype)
    return (xp.astype(hits, dtype),)


def _on_log_probs(fn: Callable[[Array], Any]) -> Callable[[Params], Any]:
    """Lift ``fn`` on the ``(..., K)`` log-probabilities to a function of ``eta``."""

    def lifted(eta: Params) -> Any:
        log_probs = _eta0(eta, "Categorical")
        if len(log_probs.shape) == 0:
            raise ValueError("Categorical: eta[0] must have shape (..., K); got a scalar")
        return fn(log_probs)

    return lifted


def _categorical_from_params(*, probs: Array | None = None, logits: Array | None = None) -> Params:
    _one_of("Categorical", probs, logits)
    if logits is not None:
        return (special(logits).log_softmax(logits, axis=-1),)
    return (namespace(probs).log(probs),)


Categorical = ExponentialFamily(
    name="Categorical",
    event_ndim=0,
    stat_event_ndims=(1,),
    param_names=("probs", "logits"),
    sufficient_stats=_categorical_stats,
    log_base_measure=lambda x: namespace(x).zeros_like(x, dtype=namespace(x).asarray(0.0).dtype),
    log_normalizer=_on_log_probs(lambda lp: special(lp).logsumexp(lp, axis=-1)),
    mean_from_natural=_on_log_probs(lambda lp: (special(lp).softmax(lp, axis=-1),)),
    natural_from_mean=_on_eta("Categorical", lambda probs: _categorical_from_params(probs=probs)),
    natural_from_params=_categorical_from_params,
    params_from_natural=_on_log_probs(lambda lp: {"logits": special(lp).log_softmax(lp, axis=-1)}),
    expected_log_base_measure=_on_log_probs(lambda lp: namespace(lp).zeros_like(lp[..., 0])),
    stat_kwargs=_on_log_probs(lambda lp: {"num_categories": lp.shape[-1], "dtype": lp.dtype}),
)


# --- Poisson ------------------------------------------------------------------------

_WINDOW_HALF_WIDTH = 220
_ASYMPTOTIC_RATE = 200.0


def _expected_log_factorial(log_rate: Array) -> Array:
    """``E[log x!]`` for ``x ~ Poisson(exp(log_rate))``, elementwise."""
    xp, sp = namespace(log_rate), special(log_rate)
    rate = xp.exp(log_rate)
    # Window sum, evaluated at a rate clipped into its range so both branches stay finite.
    log_small = xp.clip(log_rate, None, math.log(_ASYMPTOTIC_RATE))
    small = xp.exp(log_small)
    offsets = xp.arange(-_WINDOW_HALF_WIDTH, _WINDOW_HALF_WIDTH + 1, dtype=log_rate.dtype)
    k = xp.floor(small)[..., None] + offsets
    inside = k >= 0
    k = xp.clip(k, 0.0, None)
    log_fact = sp.gammaln(k + 1.0)
    pmf = xp.exp(k * log_small[..., None] - small[..., None] - log_fact)
    window = xp.sum(xp.where(inside, pmf * log_fact, 0.0), axis=-1)
    # Asymptotic expansion of the entropy, shifted by E[log x!] = H + r log r - r.
    big = xp.clip(rate, _ASYMPTOTIC_RATE, None)
    entropy = (
        0.5 * xp.log(2.0 * math.pi * math.e * big)
        - 1.0 / (12.0 * big)
        - 1.0 / (24.0 * big**2)
        - 19.0 / (360.0 * big**3)
    )
    asymptotic = entropy + big * xp.log(big) - big
    return xp.where(rate < _ASYMPTOTIC_RATE, window, asymptotic)


def _poisson_from_params(*, rate: Array) -> Params:
    return (namespace(rate).log(rate),)


Poisson = ExponentialFamily(
    name="Poisson",
    event_ndim=0,
    stat_event_ndims=(0,),
    param_names=("rate",),
    sufficient_stats=lambda x: (x,),
    log_base_measure=lambda x: -special(x).gammaln(x + 1.0),
    log_normalizer=_on_eta("Poisson", lambda log_rate: namespace(log_rate).exp(log_rate)),
    mean_from_natural=_on_eta("Poisson", lambda log_rate: (namespace(log_rate).exp(log_rate),)),
    natural_from_mean=_on_eta("Poisson", lambda rate: _poisson_from_params(rate=rate)),
    natural_from_params=_poisson_from_params,
    params_from_natural=_on_eta("Poisson", lambda log_rate: {"rate": namespace(log_rate).exp(log_rate)}),
    expected_log_base_measure=_on_eta("Poisson", lambda log_rate: -_expected_log_factorial(log_rate)),
)
