"""CAVI sweeps over a large local plate, block by block of its rows.

On a mixture or a topic model a sweep's work is over the data x support arrays of the
enumerated local sites. Compiled whole, XLA materializes several of them per sweep as
temporaries (the gathered expectations, the logits, the exponentials, the
count-weighted responsibilities). On CPU a temporary block over 32 MB is fresh memory at
every call (glibc maps it for the call and unmaps it after), and the first touch of
fresh pages costs about as much as the arithmetic. Visiting the plate's rows in blocks
keeps every temporary the size of a block (a few MB, reused from call to call and
mostly in cache):

* a continuous site's gradient is its terms outside the plate, at once, plus the terms
  inside the plate summed block by block (each block's plan cut by
  :func:`~ppl_vi.core.ngsvi_batch.batch_plan`; :func:`blocked_gradient`);
* a discrete site of the plate is updated block by block, each block's probabilities
  written into the site's array in place (:func:`blocked_categorical_update`).

The result is the same sweep: only the order of the sums changes (``tests/core/
test_cavi_blocks.py`` checks it to 1e-10 against the whole sweep). A block is a
contiguous range of rows (:class:`~ppl_vi.core.ngsvi_batch.RowBlock`), so its arrays are
slices, not gathers. The host supplies the slicing, the in-place write and the loop.

Measured (NumPyro, LDA at 1,000 tokens per document: 876k distinct (document, word)
pairs x 20 topics, one plain sweep, medians of 20, 2 shared cores): 153-160 ms whole,
59-70 ms in blocks of 26,214 rows (:data:`BLOCK_ENTRIES`), 69-76 ms in blocks half that
size and 69-72 ms in blocks twice that size; with glibc's huge pages
(``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``: fewer page faults) the whole sweep took
91-109 ms. On the 100k-point mixture with 10 components (two blocks) a blocked sweep took
3.9 ms against 3.3-3.6 ms whole, hence :data:`MIN_ENTRIES`.

A plan is swept in blocks (:func:`with_blocks`) when its discrete sites are Categorical
and share a plate that :func:`~ppl_vi.core.ngsvi_batch.check_batchable` accepts (rows
independent given the sites outside it; of several shared plates, the largest is tried),
no continuous latent sits in that plate, and the discrete sites' probabilities have at
least :data:`MIN_ENTRIES` entries. The ELBO after the sweep reads the last discrete site's
terms through its update's log normalizers, block by block; with several discrete sites
the others' entropies are computed from their whole arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from ppl_vi.core._xp import namespace
from ppl_vi.core.cavi_objective import Plan, categorical_update, normalizer_total, site_gradient, touches
from ppl_vi.core.ngsvi_batch import LocalPlate, RowBlock, batch_plan, check_batchable, gather_rows

__all__ = ["RowBlocks", "MIN_ENTRIES", "BLOCK_ENTRIES", "blocked_plate", "with_blocks", "blocked_gradient", "blocked_categorical_update"]

MIN_ENTRIES = 1 << 21
"""Sweep in blocks from this many entries of the discrete sites' probabilities (16 MB of
float64: two such temporaries exceed glibc's largest threshold for reusing freed memory).
Below it a whole sweep is as fast (100k-point mixture with 10 components: 1M entries)."""

BLOCK_ENTRIES = 1 << 19
"""Entries of the discrete sites' probabilities per block (4 MB of float64)."""


@dataclass(frozen=True)
class RowBlocks:
    """How a sweep visits the rows of ``plate`` (host operations included).

    Attributes
    ----------
    plate : LocalPlate
        The plate whose rows are visited in blocks.
    rows : int
        Rows per block (the last block takes the remainder).
    cut : callable
        ``cut(a, start, size, axis)``: rows ``start .. start + size - 1`` of ``a`` along ``axis``.
    paste : callable
        ``paste(full, part, start, axis)``: ``full`` with those rows replaced by ``part``.
    fold : callable
        ``fold(body, init, count)``: ``body(i, carry) -> carry`` for ``i = 0 .. count - 1``.
    """

    plate: LocalPlate
    rows: int
    cut: Callable[[Any, Any, int, int], Any]
    paste: Callable[[Any, Any, Any, int], Any]
    fold: Callable[[Callable[[Any, Any], Any], Any, int], Any]


def blocked_plate(plan: Plan) -> Optional[LocalPlate]:
    """The plate a sweep of ``plan`` may visit in blocks, or ``None`` (module docstring).

    Of the plates every discrete site sits in, the largest; the plate's sites are the
    program's sites that sit in it. A Bernoulli site is not visited in blocks: a blocked
    update keeps only mean parameters, and a saturated Bernoulli's entropy needs its
    natural ones.
    """
    discrete = [spec for spec in plan.latents.values() if spec.discrete]
    if not discrete or any(spec.q_family != "Categorical" for spec in discrete):
        return None
    shared = set.intersection(*(set(spec.plates) for spec in discrete))
    sizes = {}
    for plate_name, dim in shared:
        found = {spec.batch_shape[dim] for spec in discrete if len(spec.batch_shape) >= -dim}
        if len(found) == 1:
            sizes[(plate_name, dim)] = found.pop()
    if not sizes:
        return None
    plate_name, dim = max(sizes, key=lambda plate: (sizes[plate], plate[1]))
    sites = frozenset(term.name for term in plan.terms if (plate_name, dim) in term.plates)
    plate = LocalPlate(plate_name, dim, int(sizes[(plate_name, dim)]), sites)
    if plate.size < 2 or any(not spec.discrete for site, spec in plan.latents.items() if site in sites):
        return None
    try:
        check_batchable(plan, plate)
    except (ValueError, NotImplementedError):
        return None
    return plate


def with_blocks(
    plan: Plan, cut: Callable, paste: Callable, fold: Callable, min_entries: int = MIN_ENTRIES, block_entries: int = BLOCK_ENTRIES
) -> Plan:
    """``plan`` with :class:`RowBlocks` when it has a :func:`blocked_plate` and its discrete
    sites' probabilities have at least ``min_entries`` entries; ``plan`` unchanged otherwise.
    A block holds about ``block_entries`` of them."""
    plate = blocked_plate(plan)
    if plate is None:
        return plan
    per_row = sum(math.prod(spec.batch_shape) * spec.support_size for spec in plan.latents.values() if spec.discrete) // plate.size
    if per_row * plate.size < min_entries:
        return plan
    rows = max(1, block_entries // max(1, per_row))
    if rows >= plate.size:
        return plan
    return replace(plan, blocks=RowBlocks(plate, rows, cut, paste, fold))


def _split(plan: Plan) -> tuple[Plan, Plan]:
    """``(inside, outside)``: the plan's terms in the blocked plate and the others (the
    constant counted once, outside)."""
    sites = plan.blocks.plate.sites
    inside = replace(plan, terms=tuple(t for t in plan.terms if t.name in sites), constant=0.0, blocks=None)
    outside = replace(plan, terms=tuple(t for t in plan.terms if t.name not in sites), blocks=None)
    return inside, outside


def _over_blocks(plan: Plan, body: Callable[[RowBlock, Any], Any], init: Any) -> Any:
    """``body(block, carry) -> carry`` over the blocks of ``plan.blocks``, in row order."""
    blocks = plan.blocks
    rows, size = blocks.rows, blocks.plate.size
    count = size // rows
    carry = blocks.fold(lambda i, c: body(RowBlock(i * rows, rows, blocks.cut), c), init, count)
    if count * rows < size:
        carry = body(RowBlock(count * rows, size - count * rows, blocks.cut), carry)
    return carry


def _block_of(plan: Plan, inside: Plan, block: RowBlock, mu: dict) -> tuple[Plan, dict]:
    """The plan of ``block``'s rows (``inside``: the blocked plate's terms, :func:`_split`)
    and ``mu`` with the plate's sites cut to them."""
    plate = plan.blocks.plate
    local = tuple(name for name in plan.latents if name in plate.sites)
    return batch_plan(inside, plate, block), gather_rows(plan, plate, local, mu, block)


def blocked_gradient(plan: Plan, mu: dict, name: str, grad: Callable) -> tuple:
    """``grad_{mu_name} F`` of a site outside the blocked plate: its terms outside the plate
    at once, those inside block by block (:func:`~ppl_vi.core.cavi_objective.site_gradient`
    of each part)."""
    inside, outside = _split(plan)
    spec = plan.latents[name]
    if any(touches(term, spec) for term in outside.terms):
        total = site_gradient(outside, mu, name, grad)
    else:
        total = tuple(namespace(s).zeros_like(s) for s in mu[name])
    if not any(touches(term, spec) for term in inside.terms):
        return total

    def add(block: RowBlock, acc: tuple) -> tuple:
        part, rows = _block_of(plan, inside, block, mu)
        return tuple(a + g for a, g in zip(acc, site_gradient(part, rows, name, grad)))

    return _over_blocks(plan, add, total)


def blocked_categorical_update(plan: Plan, mu: dict, name: str, grad: Callable) -> tuple[Any, Any]:
    """A Categorical site of the blocked plate set to its optimum block by block: its
    probabilities (each block's written into the site's array, in place under ``jit``) and
    ``sum(scale * log_normalizer)`` over its batch (as the whole update's,
    :func:`~ppl_vi.core.cavi_objective.categorical_update`)."""
    inside, _ = _split(plan)
    paste, dim = plan.blocks.paste, plan.blocks.plate.dim

    def update(block: RowBlock, carry: tuple) -> tuple:
        probs, total = carry
        part, rows = _block_of(plan, inside, block, mu)
        spec = part.latents[name]
        log_normalizer, new = categorical_update(spec, site_gradient(part, rows, name, grad))
        probs = paste(probs, new, block.start, len(spec.batch_shape) + dim)
        return probs, total + normalizer_total(spec, log_normalizer)

    probs = mu[name][0]
    return _over_blocks(plan, update, (probs, namespace(probs).zeros((), dtype=probs.dtype)))
