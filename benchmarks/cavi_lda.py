"""Benchmark: derived CAVI on LDA vs scikit-learn's batch variational Bayes, at equal held-out perplexity.

Corpus: the zoo's ``lda`` generator (default 2,000 documents x 1,000 words, 20 topics,
``--doc-length`` tokens each); the last ``--held-out`` fraction of the documents is held
out, both methods train on the rest with the same priors (``doc_topic_prior = alpha``,
``topic_word_prior = eta``).

Held-out perplexity is computed for both by the same code, scikit-learn's
``perplexity`` (a fold-in E-step of the held-out documents with the topics fixed): the
topic posterior ``Dirichlet(lambda)`` of either method is put into one scikit-learn
estimator's ``components_`` and ``exp_dirichlet_component_``. (scikit-learn's bound
includes the topics' Dirichlet KL term, which does not shrink with the number of
held-out words, so on a small held-out set its "perplexity" can exceed the vocabulary
size; it is the same number for both methods.)

Recorded: perplexity against cumulative training time, for scikit-learn after each batch
iteration (its own ``_init_latent_vars`` and ``_em_step``, the loop ``fit`` runs, timed
per iteration; ``fit``'s final E-step on the training set is not counted) and for ppl_vi
CAVI (NumPyro) after each step (``CAVI.init``, then ``CAVI.compiled_update`` in a
loop). CAVI's fixed costs — planning, the start, compiling the sweep (which
``CAVI.run`` does while the start is built) and building the posterior — are the wall
time of ``CAVI.run(num_steps=1)`` less one sweep, measured on the process's first fit
(nothing compiled yet, JAX's default configuration: no persistent compilation cache) and
on a later fit of a new ``CAVI`` object that reads JAX's persistent compilation cache
(turned on after the first fit, in a new temporary directory, and written by one untimed
fit; ``--no-compilation-cache`` leaves it off, and the later fit compiles again), and
the ratios are printed without them and with them (the first fit's and the later one's).
(``run(num_steps=1)`` compiles no SQUAREM part: ``run`` compiles them only when it may
take more than its first 10 plain sweeps, in a worker thread while those run.)
CAVI's program takes the corpus as distinct (document, word) pairs scaled by their
counts (``extras["pair_counts"]`` of the zoo model; ``--tokens``: one site per token). A "step"
is one step of ``CAVI.compiled_update``, as ``run`` takes it: with the default
``--acceleration auto``, 10 plain sweeps, then SQUAREM steps (:mod:`ppl_vi.core.cavi_squarem`;
``--acceleration none``: plain sweeps only). CAVI starts from
the library's start (:mod:`ppl_vi.core.cavi_start`): the assignments' responsibilities
under topics seeded from the word counts of two random training documents each, as
``CAVI.init(PRNGKey(0))`` gives it; scikit-learn from its own random start.
Evaluation is outside the timed region. The whole comparison runs ``--repeats`` times,
alternating the two methods, and each step's time is the minimum over repeats (the
trajectories are deterministic; only the timings vary on a shared machine).

Printed: the perplexity scikit-learn reaches after each ``--checkpoints`` iteration
count and its time, the time CAVI needs to reach the same perplexity, and the ratios.

Run: ``.venv/bin/python benchmarks/cavi_lda.py [--num-docs 2000] [--checkpoints 10 20] [--repeats 2] [--acceleration auto] [--no-compilation-cache]``
(and under ``taskset -c 0`` for one core).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def sklearn_trace(make, train: np.ndarray, evaluate, num_iter: int) -> tuple[list, list]:
    """Per-iteration step times and held-out perplexities of scikit-learn's batch loop."""
    from sklearn.utils.parallel import Parallel

    estimator = make(num_iter)
    estimator._check_non_neg_array(train, reset_n_features=True, whom="LatentDirichletAllocation.fit")
    start = time.perf_counter()
    estimator._init_latent_vars(train.shape[1], dtype=train.dtype)
    steps, perplexities = [time.perf_counter() - start], []
    with Parallel(n_jobs=1) as parallel:
        for _ in range(num_iter):
            start = time.perf_counter()
            estimator._em_step(train, total_samples=train.shape[0], batch_update=True, parallel=parallel)
            steps.append(time.perf_counter() - start)
            perplexities.append(evaluate(estimator.components_))
    steps = [steps[0] + steps[1]] + steps[2:]  # the start counts with the first iteration
    return steps, perplexities


def cavi_trace(cavi, update, evaluate, max_steps: int, target: float) -> tuple[list, list]:
    """Per-step times and held-out perplexities of ppl_vi CAVI (its plan reused, the start
    of ``PRNGKey(0)``); stops ``3`` steps after reaching ``target``."""
    import jax

    from ppl_vi.core import expfam

    state = jax.block_until_ready(cavi.init(jax.random.PRNGKey(0)))
    dirichlet = expfam.family("Dirichlet")
    steps, perplexities, after = [], [], None
    for step in range(max_steps):
        start = time.perf_counter()
        state, _ = update(state)
        jax.block_until_ready(state)
        steps.append(time.perf_counter() - start)
        perplexities.append(evaluate(np.asarray(dirichlet.params_from_natural(state.natural["topics"])["concentration"])))
        if after is None and perplexities[-1] <= target:
            after = step
        if after is not None and step >= after + 3:
            break
    return steps, perplexities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-docs", type=int, default=2000)
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument("--num-topics", type=int, default=20)
    parser.add_argument("--doc-length", type=int, default=50)
    parser.add_argument("--held-out", type=float, default=0.1)
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[10, 20], help="scikit-learn iteration counts compared")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--acceleration", choices=("auto", "squarem", "overrelax", "none"), default="auto",
                        help="CAVI(model, acceleration=...): the library's default 'auto' (SQUAREM here), or another step")
    parser.add_argument("--tokens", dest="pairs", action="store_false",
                        help="give CAVI the corpus as one site per token (default: distinct (document, word) pairs scaled by their counts)")
    parser.add_argument("--no-compilation-cache", dest="compilation_cache", action="store_false",
                        help="leave JAX's persistent compilation cache off (the later fit then compiles again)")
    args = parser.parse_args()
    acceleration = None if args.acceleration == "none" else args.acceleration

    import jax

    jax.config.update("jax_enable_x64", True)
    from lda_perplexity import fresh_compilation_cache, sklearn_perplexity, time_to  # a sibling script: imported here, so the module imports anywhere
    from sklearn.decomposition import LatentDirichletAllocation

    import models
    from ppl_vi.core.cavi_acceleration import PLAIN_SWEEPS_FIRST
    from ppl_vi.numpyro import CAVI

    zoo = models.get("lda")
    raw = zoo.generate_data(0, num_docs=args.num_docs, vocab_size=args.vocab_size, num_topics=args.num_topics, doc_length=args.doc_length)
    counts = zoo.extras["token_counts"](raw).astype(np.float64)
    num_train = int(round(args.num_docs * (1.0 - args.held_out)))
    train, test = counts[:num_train], counts[num_train:]
    keep = raw["doc_ids"] < num_train
    train_tokens = {**raw, "words": raw["words"][keep], "doc_ids": raw["doc_ids"][keep], "num_docs": num_train}
    train_data = models.to_backend(zoo.extras["pair_counts"](train_tokens) if args.pairs else train_tokens, "numpyro")
    form = f"{train_data['words'].shape[0]} distinct (document, word) pairs with counts" if args.pairs else "one site per token"
    print(f"LDA: {num_train} training + {args.num_docs - num_train} held-out documents, {args.vocab_size} words, "
          f"{args.num_topics} topics, {int(keep.sum())} training tokens; CAVI's program: {form} "
          "(timings on a shared 2-core machine: noisy)")

    def make(max_iter: int) -> LatentDirichletAllocation:
        return LatentDirichletAllocation(**zoo.extras["sklearn_priors"](raw), learning_method="batch", max_iter=max_iter, random_state=0)

    evaluator = make(1).fit(train[:2])  # any fitted estimator: its topics are overwritten before each evaluation

    def evaluate(concentration: np.ndarray) -> float:
        return sklearn_perplexity(evaluator, concentration, test)

    num_iter = max(args.checkpoints)

    def fixed_costs() -> float:
        """Wall time of ``run(num_steps=1)`` on a new CAVI object: planning, the start, the
        sweep's compilation (overlapping the start), one sweep and the posterior."""
        return CAVI(zoo.numpyro_model, acceleration=acceleration).run(jax.random.PRNGKey(0), **train_data, num_steps=1).wall_time

    cold_run = fixed_costs()  # the process's first fit: nothing compiled yet, JAX's defaults (no persistent cache)
    cavi = CAVI(zoo.numpyro_model, acceleration=acceleration)
    update = cavi.compiled_update(cavi.init(jax.random.PRNGKey(0), **train_data))
    warm = cavi.init(jax.random.PRNGKey(0))
    for _ in range(PLAIN_SWEEPS_FIRST + 1):  # through the first SQUAREM step: every program compiled, none in the timed steps
        warm, _ = update(warm)
    sk_steps, cavi_steps = [], []
    for _ in range(args.repeats):
        steps, sk_perp = sklearn_trace(make, train, evaluate, num_iter)
        sk_steps.append(steps)
        steps, cavi_perp = cavi_trace(cavi, update, evaluate, args.max_steps, sk_perp[-1])
        cavi_steps.append(steps)
    if args.compilation_cache:
        fresh_compilation_cache()
        fixed_costs()  # writes the persistent cache (not timed)
    warm_run = fixed_costs()  # a later fit in the same process: reads that cache
    sk_time = np.cumsum(np.min(sk_steps, axis=0)).tolist()
    length = min(len(s) for s in cavi_steps)
    per_step = np.min([s[:length] for s in cavi_steps], axis=0)
    cavi_time = np.cumsum(per_step).tolist()
    cavi_perp = cavi_perp[:length]
    cold_fixed, warm_fixed = cold_run - per_step[0], warm_run - per_step[0]  # run()'s first sweep counts with the steps

    start = time.perf_counter()
    make(num_iter).fit(train)
    print(f"scikit-learn fit(max_iter={num_iter}) as a user calls it: {time.perf_counter() - start:.2f} s (incl. its final E-step)")
    cache = "reading JAX's persistent compilation cache" if args.compilation_cache else "no persistent compilation cache"
    print(f"ppl_vi CAVI fixed costs (CAVI.run(num_steps=1) less one sweep: plan, start, compilation, posterior), "
          f"first fit in this process: {cold_fixed:.2f} s; a later fit ({cache}): {warm_fixed:.2f} s. "
          f"{1e3 * cavi_time[-1] / length:.1f} ms/step; scikit-learn {1e3 * sk_time[-1] / num_iter:.0f} ms/iteration")
    print("held-out perplexity (scikit-learn's) vs cumulative training time:")
    for i, (p, t) in enumerate(zip(sk_perp, sk_time), 1):
        print(f"  scikit-learn iter {i:3d}: {p:10.1f}  {t:7.3f} s")
    for i, (p, t) in enumerate(zip(cavi_perp, cavi_time), 1):
        if i <= 5 or i % 5 == 0 or i == length:
            print(f"  CAVI step        {i:3d}: {p:10.1f}  {t:7.3f} s")
    for checkpoint in sorted(args.checkpoints):
        target, t_sk = sk_perp[checkpoint - 1], sk_time[checkpoint - 1]
        t_cavi = time_to(zip(cavi_time, cavi_perp), target)
        if t_cavi is None:
            print(f"scikit-learn {checkpoint} iterations: perplexity {target:.1f} in {t_sk:.2f} s; CAVI did not reach it in {length} steps")
            continue
        steps = next(i for i, p in enumerate(cavi_perp, 1) if p <= target)
        cold, warm = cold_fixed + t_cavi, warm_fixed + t_cavi
        print(f"scikit-learn {checkpoint} iterations: perplexity {target:.1f} in {t_sk:.2f} s; CAVI reaches it after {steps} steps, "
              f"{t_cavi:.2f} s of steps: {t_sk / t_cavi:.1f}x faster (target 5x); end to end (fixed costs counted) "
              f"{cold:.2f} s on the first fit ({t_sk / cold:.1f}x), {warm:.2f} s on a later fit ({t_sk / warm:.1f}x)")


if __name__ == "__main__":
    main()
