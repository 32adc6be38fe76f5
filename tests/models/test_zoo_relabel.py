"""The zoo's label-switching hooks: relabelled draws do not depend on component labels."""

from __future__ import annotations

import numpy as np
import pytest

import models


def gmm_draws(rng, chains=2, draws=50, k=3, d=2):
    locs = rng.normal(size=(chains, draws, k, d)) + 10.0 * np.arange(k)[:, None]  # distinct locs[..., 0]
    a = rng.normal(size=(chains, draws, k, d, d))
    precisions = a @ np.swapaxes(a, -1, -2) + np.eye(d)
    weights = rng.dirichlet(np.ones(k), size=(chains, draws))
    return {"locs": locs, "precisions": precisions, "weights": weights, "other": rng.normal(size=(chains, draws))}


def permute_each_draw(draws, rng, sites_axes):
    """Apply an independent random permutation of the components to every draw."""
    first = draws[next(iter(sites_axes))]
    perms = np.stack([rng.permutation(first.shape[sites_axes[next(iter(sites_axes))]])
                      for _ in range(first.shape[0] * first.shape[1])]).reshape(*first.shape[:2], -1)
    out = dict(draws)
    for site, axis in sites_axes.items():
        value = draws[site]
        index = perms.reshape(perms.shape[:2] + (1,) * (axis - 2) + perms.shape[2:]
                              + (1,) * (value.ndim - axis - 1))
        out[site] = np.take_along_axis(value, index, axis=axis)
    return out


def test_gmm_relabel_is_invariant_to_permuting_components_per_draw():
    rng = np.random.default_rng(0)
    draws = gmm_draws(rng)
    relabel = models.get("bayesian_gmm").extras["relabel"]
    shuffled = permute_each_draw(draws, rng, {"locs": 2, "precisions": 2, "weights": 2})
    assert not np.allclose(shuffled["locs"], draws["locs"])  # the permutation did something
    a, b = relabel(draws), relabel(shuffled)
    for site in draws:
        np.testing.assert_array_equal(a[site], b[site])
    assert np.all(np.diff(a["locs"][..., 0], axis=-1) > 0)
    # the permutation is the same for all three sites: (loc, precision, weight) stay together
    np.testing.assert_array_equal(a["locs"], draws["locs"])  # built sorted already
    np.testing.assert_array_equal(a["precisions"], draws["precisions"])
    np.testing.assert_array_equal(a["weights"], draws["weights"])


def test_gmm_relabel_aligns_chains_whose_centres_share_a_coordinate():
    # the default data's posterior: two centres at x = -2.3 (posterior sd 0.07), y = +-4.
    # Sorting by locs[..., 0] alone would mix them; each chain here has its own labels.
    rng = np.random.default_rng(2)
    centres = np.array([[4.65, 0.0], [-2.3, 4.0], [-2.3, -4.0]])
    locs = centres + 0.07 * rng.standard_normal((4, 300, 3, 2))
    weights = np.broadcast_to([0.2, 0.3, 0.5], (4, 300, 3)).copy()
    for chain, perm in enumerate([[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1]]):
        locs[chain], weights[chain] = locs[chain][:, perm], weights[chain][:, perm]
    out = models.get("bayesian_gmm").extras["relabel"]({"locs": locs, "weights": weights})
    assert np.abs(out["locs"].mean(1) - out["locs"][0].mean(0)).max() < 0.03  # chains agree
    assert out["locs"].std(axis=(0, 1)).max() < 0.1  # no mixing within a coordinate
    assert np.all(out["weights"] == out["weights"][0, 0])  # weights follow their locs


def test_gmm_relabel_names_the_missing_site():
    with pytest.raises(KeyError, match="needs the 'locs' draws"):
        models.get("bayesian_gmm").extras["relabel"]({"weights": np.ones((1, 2, 3))})


def lda_draws(rng, chains=3, draws=40, k=3, v=12, docs=5):
    # well separated topics: topic k puts its mass on words 4k..4k+3
    base = np.full((k, v), 0.1)
    for topic in range(k):
        base[topic, 4 * topic: 4 * topic + 4] = 20.0
    topics = np.stack([[np.stack([rng.dirichlet(base[t]) for t in range(k)]) for _ in range(draws)]
                       for _ in range(chains)])
    doc_topics = rng.dirichlet(np.ones(k), size=(chains, draws, docs))
    return {"topics": topics, "doc_topics": doc_topics}


def test_lda_relabel_undoes_a_different_labelling_per_chain_and_per_draw():
    rng = np.random.default_rng(1)
    draws = lda_draws(rng)
    relabel = models.get("lda").extras["relabel"]
    # label switching between chains (one permutation per chain) and, rarer, within a chain
    shuffled = {site: value.copy() for site, value in draws.items()}
    for chain, perm in enumerate([[2, 0, 1], [1, 2, 0], [0, 2, 1]]):
        shuffled["topics"][chain] = draws["topics"][chain][:, perm]
        shuffled["doc_topics"][chain] = draws["doc_topics"][chain][..., perm]
    shuffled["topics"][1, 7] = shuffled["topics"][1, 7][[1, 0, 2]]
    shuffled["doc_topics"][1, 7] = shuffled["doc_topics"][1, 7][..., [1, 0, 2]]
    a, b = relabel(draws), relabel(shuffled)
    np.testing.assert_array_equal(a["topics"], b["topics"])
    np.testing.assert_array_equal(a["doc_topics"], b["doc_topics"])
    np.testing.assert_array_equal(a["topics"], draws["topics"])  # canonical order = word order here
    np.testing.assert_array_equal(a["doc_topics"], draws["doc_topics"])
