"""The :class:`ExponentialFamily` record and the formulas shared by every family.

A member of an exponential family has density

.. math:: p(x \\mid \\eta) = h(x) \\exp(\\langle \\eta, T(x) \\rangle - A(\\eta)),

with natural parameter :math:`\\eta`, sufficient statistics :math:`T`, base measure
:math:`h` and log-normalizer :math:`A`. The mean parameter is
:math:`\\mu = E[T(x)] = \\nabla A(\\eta)`. Given :math:`A`, :math:`\\mu` and
:math:`E[\\log h(x)]`, every family gets the same three formulas (Wainwright & Jordan
2008, §3):

* ``log_prob``: :math:`\\log h(x) + \\langle \\eta, T(x) \\rangle - A(\\eta)`;
* ``entropy``: :math:`A(\\eta) - \\langle \\eta, \\mu \\rangle - E[\\log h(x)]`;
* ``kl_divergence``: :math:`KL(p_1 \\| p_2) = A(\\eta_2) - A(\\eta_1)
  - \\langle \\eta_2 - \\eta_1, \\mu_1 \\rangle` (the Bregman divergence of :math:`A`).

Natural and mean parameters are tuples of arrays in the order of the sufficient
statistics; statistic ``i`` has ``stat_event_ndims[i]`` trailing event dimensions
(0 for a scalar, 1 for a vector, 2 for a matrix), and all leading dimensions are batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ppl_vi.core._xp import namespace

Array = Any
Params = tuple[Array, ...]

__all__ = ["ExponentialFamily", "check_params"]


def check_params(eta: Params, size: int, family: str, what: str = "natural parameter") -> Params:
    """Return ``eta`` as a tuple after checking it holds ``size`` arrays.

    Raises
    ------
    TypeError
        If ``eta`` is not a tuple/list of ``size`` arrays.
    """
    if not isinstance(eta, (tuple, list)) or len(eta) != size:
        got = f"{type(eta).__name__} of length {len(eta)}" if isinstance(eta, (tuple, list)) else type(eta).__name__
        raise TypeError(
            f"{family}: the {what} must be a tuple of {size} arrays in the order of the "
            f"sufficient statistics; got {got}"
        )
    return tuple(eta)


def _sum_last(xp, a: Array, ndim: int) -> Array:
    return a if ndim == 0 else xp.sum(a, axis=tuple(range(-ndim, 0)))


@dataclass(frozen=True)
class ExponentialFamily:
    """One exponential family as a record of pure, batched, backend-neutral functions.

    Attributes
    ----------
    name : str
        Host distribution class name (``"Normal"``, ``"Wishart"``, ...).
    event_ndim : int
        Number of trailing event dimensions of a value ``x``.
    stat_event_ndims : tuple of int
        Trailing event dimensions of each sufficient statistic (and of each entry of
        ``eta`` and ``mu``).
    param_names : tuple of str
        Keyword names of the usual parameters, as the host libraries spell them.
    sufficient_stats : callable
        ``x -> T(x)``, a tuple of arrays.
    log_base_measure : callable
        ``x -> log h(x)``, shape ``x``'s batch shape.
    log_normalizer : callable
        ``eta -> A(eta)``, shape batch.
    mean_from_natural : callable
        ``eta -> mu = E[T(x)] = grad A(eta)``.
    natural_from_mean : callable
        ``mu -> eta`` (closed form, or a fixed number of Newton steps where the map has
        no closed form inverse).
    natural_from_params : callable
        ``**params -> eta``.
    params_from_natural : callable
        ``eta -> dict`` of usual parameters, ready for the host distribution's
        constructor.
    expected_log_base_measure : callable
        ``eta -> E[log h(x)]``, shape batch.
    stat_kwargs : callable
        ``eta -> dict`` of extra keyword arguments ``sufficient_stats`` needs to build
        statistics comparable with ``eta`` (the number of categories, the dtype).
    """

    name: str
    event_ndim: int
    stat_event_ndims: tuple[int, ...]
    param_names: tuple[str, ...]
    sufficient_stats: Callable[..., Params]
    log_base_measure: Callable[[Array], Array]
    log_normalizer: Callable[[Params], Array]
    mean_from_natural: Callable[[Params], Params]
    natural_from_mean: Callable[[Params], Params]
    natural_from_params: Callable[..., Params]
    params_from_natural: Callable[[Params], dict]
    expected_log_base_measure: Callable[[Params], Array]
    stat_kwargs: Callable[[Params], dict] = field(default=lambda eta: {})

    @property
    def num_stats(self) -> int:
        """Number of sufficient statistics (entries of ``eta`` and ``mu``)."""
        return len(self.stat_event_ndims)

    def expected_stats(self, eta: Params) -> Params:
        """``E[T(x)]`` under the member with natural parameter ``eta`` (= ``grad A``)."""
        return self.mean_from_natural(eta)

    def inner(self, eta: Params, stats: Params) -> Array:
        """``<eta, stats>`` summed over the event dimensions of every statistic.

        Parameters
        ----------
        eta, stats : tuple of arrays
            Natural parameters and statistics (``T(x)`` or ``E[T(x)]``) with matching
            event shapes; batch shapes broadcast.

        Returns
        -------
        array, shape broadcast batch shape

        Notes
        -----
        A term with a zero statistic is zero even where ``eta`` is infinite (``0 log 0 = 0``):
        a Categorical with an impossible category has ``eta_k = log 0 = -inf`` and
        ``E[onehot_k] = 0``, and its entropy, KL and log-density stay finite.
        """
        eta = check_params(eta, self.num_stats, self.name)
        stats = check_params(stats, self.num_stats, self.name, "statistic")
        xp = namespace(*eta, *stats)

        def product(e: Array, s: Array) -> Array:
            p = e * s
            return xp.where(s == 0, xp.zeros_like(p), p)

        terms = [_sum_last(xp, product(e, s), n) for e, s, n in zip(eta, stats, self.stat_event_ndims)]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    def log_prob(self, x: Array, eta: Params) -> Array:
        """``log p(x | eta)``, shape ``broadcast(x batch, eta batch)``."""
        stats = self.sufficient_stats(x, **self.stat_kwargs(eta))
        return self.log_base_measure(x) + self.inner(eta, stats) - self.log_normalizer(eta)

    def entropy(self, eta: Params, mu: Params | None = None) -> Array:
        """Differential (or Shannon) entropy ``A - <eta, mu> - E[log h]``, shape batch.

        ``mu`` (``= mean_from_natural(eta)``) may be passed where it is at hand already:
        then only ``A`` and ``E[log h]`` are evaluated (for a Dirichlet, no digamma).
        """
        mu = self.mean_from_natural(eta) if mu is None else mu
        return self.log_normalizer(eta) - self.inner(eta, mu) - self.expected_log_base_measure(eta)

    def kl_divergence(self, eta_p: Params, eta_q: Params) -> Array:
        """``KL(p || q)`` between the members with natural parameters ``eta_p``, ``eta_q``.

        Same argument order as ``torch.distributions.kl_divergence(p, q)``.

        Returns
        -------
        array, shape broadcast batch shape
        """
        eta_p = check_params(eta_p, self.num_stats, self.name)
        eta_q = check_params(eta_q, self.num_stats, self.name)
        mu_p = self.mean_from_natural(eta_p)
        diff = tuple(q - p for p, q in zip(eta_p, eta_q))
        return self.log_normalizer(eta_q) - self.log_normalizer(eta_p) - self.inner(diff, mu_p)

    def __repr__(self) -> str:
        return f"ExponentialFamily({self.name!r}, params={self.param_names})"
