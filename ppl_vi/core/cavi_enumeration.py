"""Sum a site's expected log-density over its batch and enumeration dims, without
materializing the enumerated batch.

A term of the CAVI objective that depends on enumerated discrete sites is

    sum_b  scale[b] * prod_j r_j[b] * f(v[b], theta[b])

over its batch ``b`` (enumeration dims included), where ``r_j`` are the probabilities
of the discrete sites, ``v`` the value's statistics and ``theta`` the parameters'
moments. Written naively it broadcasts everything to the full batch — for a mixture,
``(K, N)`` with ``K`` the components and ``N`` the data — and moves each ``r_j`` from
its own ``(N, K)`` layout to the enumeration layout ``(K, N)``. Two exact rewrites
avoid both, for any program:

* **contraction**: the weights enter one ``einsum`` with the log-density in their own
  layouts; dims along which the log-density is constant (size 1) are summed in the
  weights alone;
* **sufficient statistics**: for a child family whose expected log-density is affine
  in its value's statistics (:data:`AFFINE_VALUE_EVENT_NDIMS`), and a batch dim along
  which no parameter varies (the data dim of a mixture), the weighted sum moves inside:
  ``sum_n w_n f(v_n, theta) = W f(S / W, theta)`` with ``W = sum_n w_n`` and
  ``S = sum_n w_n v_n``. The data enter only through ``S`` — a matrix product per
  statistic — and autodiff of it gives the responsibilities' gradient as one more
  matrix product (Bishop, PRML §10.2: the sufficient statistics ``N_k``, ``x̄_k``, ``S_k``).

The total weights ``W`` are the first column of that product. A term that is constant
along the same dims with the same weights — the mixture's prior ``log pi_k`` — reads
them from :class:`WeightSums` instead of summing the weights again, so the
responsibilities' gradient of all those terms is a single matrix product.
"""

from __future__ import annotations

import math
import string
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ppl_vi.core._xp import namespace, special

Array = Any

__all__ = ["AFFINE_VALUE_EVENT_NDIMS", "Weight", "WeightSums", "right_aligned", "weighted_total", "reduced_total"]

AFFINE_VALUE_EVENT_NDIMS: dict[str, tuple] = {
    "Normal": (0, 0),
    "MultivariateNormal": (1, 2),
    "Gamma": (0, 0),
    "Exponential": (0, 0),
    "Beta": (0, 0),
    "Bernoulli": (0,),
    "Dirichlet": (1,),
    "Wishart": (2, 0),
}
"""Child families whose rule in :mod:`ppl_vi.core.conjugate` is affine in the value's
statistics, with the event dims of each statistic. (Poisson, Binomial, Categorical and
Multinomial are not: their base measures are non-linear in the value.)"""

_LETTERS = string.ascii_letters


class Weight:
    """An array that multiplies the term, placed in the term's batch dims.

    ``dims[i]`` is the term batch dim (``0 .. ndim - 1``) of the array's axis ``i``.
    """

    def __init__(self, array: Array, dims: Sequence[int]):
        self.array = array
        self.dims = tuple(dims)


class WeightSums:
    """Total weights ``W = sum_inside prod_w w`` computed by :func:`reduced_total`, for
    the other terms of one objective evaluation.

    Keyed by the weight arrays (identity) and their dims, the batch shape and the summed
    dims: a term with the same weights that is constant along those dims reads ``W``
    from here, so autodiff sends its gradient through the same matrix product.
    """

    def __init__(self) -> None:
        self._sums: dict = {}

    @staticmethod
    def _key(weights: Sequence[Weight], batch_shape: tuple, inside: Sequence[int]) -> tuple:
        return tuple((id(w.array), w.dims) for w in weights), tuple(batch_shape), tuple(inside)

    def put(self, weights: Sequence[Weight], batch_shape: tuple, inside: Sequence[int], total: Array) -> None:
        self._sums[self._key(weights, batch_shape, inside)] = (list(weights), total)  # the weights keep their ids valid

    def get(self, weights: Sequence[Weight], batch_shape: tuple, inside: Sequence[int]) -> Optional[Array]:
        found = self._sums.get(self._key(weights, batch_shape, inside))
        return None if found is None else found[1]


def _batch_layout(weight: Weight, ndim: int) -> Array:
    """The array of ``weight`` in the batch layout: its axes in dim order, size 1 elsewhere."""
    xp = namespace(weight.array)
    order = sorted(range(len(weight.dims)), key=lambda i: weight.dims[i])
    array = xp.permute_dims(weight.array, tuple(order)) if order != list(range(len(order))) else weight.array
    shape = [1] * ndim
    for i in order:
        shape[weight.dims[i]] = weight.array.shape[i]
    return xp.reshape(array, tuple(shape))


def _summed_dims(shape: tuple, batch_shape: tuple) -> list:
    """Batch dims along which an array of ``shape`` (right-aligned) is constant and the batch is not."""
    aligned = (1,) * (len(batch_shape) - len(shape)) + tuple(shape)
    return [d for d in range(len(batch_shape)) if aligned[d] == 1 and batch_shape[d] > 1]


def right_aligned(array: Array, ndim: int) -> Weight:
    """``array`` broadcast from the right against a batch of ``ndim`` dims."""
    return Weight(array, range(ndim - array.ndim, ndim))


def _operand(weight: Weight, num_event: int = 0) -> tuple[Array, str]:
    """Drop size-1 batch axes (einsum broadcasts a missing label) and label the rest
    (the ``num_event`` trailing axes are left to the caller to label)."""
    xp = namespace(weight.array)
    ndim = weight.array.ndim - num_event
    kept = [i for i in range(ndim) if weight.array.shape[i] != 1]
    shape = tuple(weight.array.shape[i] for i in kept) + tuple(weight.array.shape[ndim:])
    return xp.reshape(weight.array, shape), "".join(_LETTERS[weight.dims[i]] for i in kept)


def _einsum(weights: Sequence[Weight], out_dims: Sequence[int], extra: Optional[tuple] = None) -> tuple[Array, tuple]:
    """Sum over every batch dim not in ``out_dims`` of the product of ``weights`` (and of
    ``extra = (array, batch_dims, num_event_dims)``, whose trailing event dims are kept).

    Returns the sum and the dims of ``out_dims`` it has (those some operand varies along).
    """
    operands, labels = [], []
    for w in weights:
        array, label = _operand(w)
        operands.append(array)
        labels.append(label)
    event = ""
    if extra is not None:
        array, dims, num_event = extra
        array, label = _operand(Weight(array, tuple(dims) + (None,) * num_event), num_event)
        event = _LETTERS[len(_LETTERS) - num_event :] if num_event else ""
        operands.append(array)
        labels.append(label + event)
    present = set("".join(labels))
    kept = tuple(d for d in out_dims if _LETTERS[d] in present)
    out = "".join(_LETTERS[d] for d in kept) + event
    return special(operands[0]).einsum(",".join(labels) + "->" + out, *operands), kept


def _expand(array: Array, kept: Sequence[int], shape: tuple, num_event: int = 0) -> Array:
    """Put an :func:`_einsum` output back in the batch layout ``shape`` (size 1 where summed)."""
    full = tuple(shape[d] if d in kept else 1 for d in range(len(shape)))
    return namespace(array).reshape(array, full + tuple(array.shape[array.ndim - num_event :]))


def weighted_total(log_p: Any, batch_shape: tuple, weights: Sequence[Weight], weight_sums: Optional[WeightSums] = None) -> Array:
    """``sum_b log_p[b] * prod_w w[b]`` over the batch ``batch_shape`` (a scalar).

    ``log_p`` is a :class:`Weight` (in its own layout) or an array that broadcasts from
    the right against ``batch_shape``. When ``weight_sums`` holds the weights' total
    over the dims where such an array is constant, it is used.
    """
    if not isinstance(log_p, Weight):
        log_p = right_aligned(log_p, len(batch_shape))
    if weight_sums is not None:
        total_weight = weight_sums.get(weights, batch_shape, _summed_dims(_batch_layout(log_p, len(batch_shape)).shape, batch_shape))
        if total_weight is not None:
            return namespace(total_weight).sum(_batch_layout(log_p, len(batch_shape)) * total_weight)
    return _einsum([log_p, *weights], ())[0]


def reduced_total(
    rule: Callable[[tuple], Array],
    value_stats: tuple,
    event_ndims: tuple,
    param_shape: tuple,
    batch_shape: tuple,
    num_reinterpreted: int,
    weights: Sequence[Weight],
    weight_sums: Optional[WeightSums] = None,
) -> Optional[Array]:
    """``sum_b w[b] f(v[b])`` through weighted sufficient statistics, or ``None``.

    Parameters
    ----------
    rule : callable
        ``value_stats -> log-density``, affine in the statistics, parameters bound;
        output shape ``param_shape`` broadcast with the statistics' batch.
    value_stats : tuple of arrays
        Statistic ``i`` has shape ``batch_v + event_i`` with ``len(event_i) = event_ndims[i]``;
        ``batch_v`` broadcasts from the right against ``batch_shape + reinterpreted``.
    param_shape : tuple
        Shape of the log-density with every statistic of batch shape ``()``: where the
        parameters vary.
    batch_shape : tuple
        The term's batch shape (enumeration dims included), without the
        ``num_reinterpreted`` trailing dims that are summed as one event.
    weights : sequence of Weight
        Scale and enumeration probabilities, in the dims of ``batch_shape``.
    weight_sums : WeightSums, optional
        Where to leave the total weights for other terms (when nothing is reinterpreted).

    Returns
    -------
    scalar array, or ``None`` when no batch dim can be summed inside (nothing to gain).
    """
    ndim = len(batch_shape)
    full = tuple(batch_shape) + tuple(param_shape[len(param_shape) - num_reinterpreted :] if num_reinterpreted else ())
    # the batch dims no parameter varies along (the data's batch is part of the term's)
    inside = [d for d in _summed_dims(tuple(param_shape), full) if d < ndim]
    if not inside:
        return None
    kept = tuple(d for d in range(len(full)) if d not in inside)
    # one matrix [1, flat v_1, flat v_2, ...] per data point: a single contraction gives
    # the total weight and every statistic, and a single product its gradient
    xp = namespace(value_stats[0])
    dtype = weights[-1].array.dtype
    events = [tuple(v.shape[v.ndim - n :]) for v, n in zip(value_stats, event_ndims)]
    stat_batch = np.broadcast_shapes(*[tuple(v.shape[: v.ndim - n]) for v, n in zip(value_stats, event_ndims)])
    columns = [xp.ones(stat_batch + (1,), dtype=dtype)]
    for v, event in zip(value_stats, events):
        flat = xp.reshape(xp.broadcast_to(xp.astype(v, dtype), stat_batch + event), stat_batch + (math.prod(event),))
        columns.append(flat)
    packed = xp.concat(columns, axis=-1)
    dims = tuple(range(len(full) - len(stat_batch), len(full)))
    summed = _expand(*_einsum(weights, kept, (packed, dims, 1)), full, 1)
    total_weight = summed[..., 0]
    if weight_sums is not None and not num_reinterpreted:
        weight_sums.put(weights, batch_shape, inside, total_weight)
    safe = xp.where(total_weight > 0, total_weight, 1.0)[..., None]
    means, start = [], 1
    for event in events:
        size = math.prod(event)
        means.append(xp.reshape(summed[..., start : start + size] / safe, tuple(summed.shape[:-1]) + event))
        start += size
    log_p = rule(tuple(means)) * total_weight
    return xp.sum(log_p)
