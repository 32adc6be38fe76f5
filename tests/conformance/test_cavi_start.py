"""The data-seeded start of discrete sites that select Dirichlet rows of an observed Categorical.

Checked on LDA (groups: documents, from ``doc_topics[doc_ids]``) and on a mixture of
categoricals (shared weights: every observation is its own group): the start is better
than the random start (higher ELBO once the continuous sites are set from it), the same
on both hosts for the same rng, never symmetric; and the seeded counts are those of
whole groups.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from ppl_vi.core import cavi_start
from ppl_vi.core.cavi_start import initial_responsibilities
from ppl_vi.core.cavi_sweep import sweep
from ppl_vi.pyro._trace import to_numpy, to_torch


def _categorical_mixture(words, num_components: int, vocab_size: int) -> None:
    import pyro
    import pyro.distributions as dist

    weights = pyro.sample("weights", dist.Dirichlet(torch.ones(num_components)))
    with pyro.plate("components", num_components):
        probs = pyro.sample("probs", dist.Dirichlet(torch.full((vocab_size,), 0.2)))
    with pyro.plate("data", words.shape[0]):
        z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Categorical(probs[z]), obs=words)


def _case(name: str):
    """``(pyro CAVI, plan, discrete site, raw data)`` of a small model."""
    from ppl_vi.pyro import CAVI

    torch.manual_seed(0)
    if name == "lda":
        zoo = models.get("lda")
        raw = zoo.generate_data(0, num_docs=40, num_topics=4, vocab_size=30, doc_length=30)
        cavi = CAVI(zoo.pyro_model)
        cavi.plan(**models.to_backend(raw, "pyro"))
        return cavi, "assignment", raw
    rng = np.random.default_rng(0)
    topics = rng.dirichlet(np.full(30, 0.2), size=3)
    words = np.stack([rng.choice(30, p=topics[k]) for k in rng.integers(3, size=400)])
    raw = {"words": words, "num_components": 3, "vocab_size": 30}
    cavi = CAVI(_categorical_mixture)
    cavi.plan(torch.as_tensor(words), 3, 30)
    return cavi, "z", raw


def _grad(fn, x):
    x = tuple(t.detach().requires_grad_(True) for t in x)
    with torch.enable_grad():
        return tuple(g.detach() for g in torch.autograd.grad(fn(x), x))


def _elbo_given(cavi, name: str, probs: np.ndarray) -> float:
    """ELBO with the discrete site at ``probs`` and every continuous site at its optimum given it."""
    plan = cavi._plan
    state = cavi.init()
    eta, mu = dict(state.natural), dict(state.mean)
    r = to_torch(probs)
    eta[name], mu[name] = (torch.log(r),), (r,)
    continuous = [n for n in plan.order if not plan.latents[n].discrete]
    return float(sweep(plan, eta, mu, _grad, names=continuous)[2])


@pytest.mark.parametrize("model", ["lda", "categorical_mixture"])
def test_seeded_start_beats_the_random_start_on_average(model):
    cavi, name, _ = _case(model)
    spec = cavi._plan.latents[name]
    seeded, random = [], []
    for seed in range(4):
        for informed, elbos in ((True, seeded), (False, random)):
            start = initial_responsibilities(cavi._plan, spec, np.random.default_rng(seed), to_numpy, seed_from_data=informed)
            elbos.append(_elbo_given(cavi, name, start))
    assert np.mean(seeded) > np.mean(random) + 20.0, (seeded, random)
    # the random start is Dirichlet(1) draws
    expected = np.random.default_rng(0).dirichlet(np.ones(spec.support_size), size=spec.batch_shape)
    random_start = initial_responsibilities(cavi._plan, spec, np.random.default_rng(0), to_numpy, seed_from_data=False)
    np.testing.assert_array_equal(random_start, expected)


def test_both_hosts_give_the_same_start_for_the_same_rng():
    import jax

    from ppl_vi.numpyro import CAVI

    pyro_cavi, name, raw = _case("lda")
    numpyro_plan = CAVI(models.get("lda").numpyro_model).plan(**models.to_backend(raw, "numpyro"))
    spec = pyro_cavi._plan.latents[name]
    ours = initial_responsibilities(pyro_cavi._plan, spec, np.random.default_rng(7), to_numpy)
    theirs = initial_responsibilities(numpyro_plan, numpyro_plan.latents[name], np.random.default_rng(7), np.asarray)
    np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(ours, initial_responsibilities(pyro_cavi._plan, spec, np.random.default_rng(8), to_numpy))
    assert jax.numpy.asarray(theirs).shape == (len(raw["words"]), raw["num_topics"])


def test_start_follows_seeded_topics_and_is_never_symmetric():
    cavi, name, raw = _case("lda")
    spec = cavi._plan.latents[name]
    probs = initial_responsibilities(cavi._plan, spec, np.random.default_rng(3), to_numpy)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-12)
    # r_nk ∝ exp E[log beta_k, x_n]: tokens of the same word get the same row (up to the noise)
    words = raw["words"]
    same = words == words[0]
    assert np.abs(probs[same] - probs[same][0]).max() <= 2 * cavi_start.START_NOISE
    # more components than documents: groups are shared, the noise still separates them
    tiny = models.get("lda").generate_data(1, num_docs=2, num_topics=5, vocab_size=6, doc_length=3)
    from ppl_vi.pyro import CAVI

    plan = CAVI(models.get("lda").pyro_model).plan(**models.to_backend(tiny, "pyro"))
    start = initial_responsibilities(plan, plan.latents["assignment"], np.random.default_rng(0), to_numpy)
    columns = start.T
    assert all(not np.allclose(columns[i], columns[j], rtol=0, atol=1e-9) for i in range(5) for j in range(i))


def test_seeded_rows_add_the_counts_of_whole_distinct_groups():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(12), 5)
    values = rng.integers(4, size=groups.shape[0])
    prior = np.full((3, 4), 0.5)
    concentration = cavi_start.seeded_rows(prior, np.arange(3), values, groups, np.random.default_rng(1), per_row=2)
    counts = np.stack([np.bincount(values[groups == g], minlength=4) for g in range(12)])
    for row in concentration - prior:
        # the row is the sum of exactly two groups' counts
        pairs = [(a, b) for a in range(12) for b in range(a + 1, 12) if np.array_equal(counts[a] + counts[b], row)]
        assert pairs, row
    assert (concentration - prior).sum() == 3 * 2 * 5
    again = cavi_start.seeded_rows(prior, np.arange(3), values, groups, np.random.default_rng(1), per_row=2)
    np.testing.assert_array_equal(concentration, again)
