"""Benchmark: derived CAVI on a 100k-point Bayesian GMM vs scikit-learn and NumPyro SVI.

Model: the zoo's ``bayesian_gmm`` (Dirichlet weights, Normal–Wishart components,
``assignment`` enumerated), N=100,000, D=2, K=10, full covariances — the model that
``BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_distribution",
covariance_type="full")`` fits with ``weight_concentration_prior=alpha0``,
``mean_prior=m0``, ``mean_precision_prior=beta0``, ``degrees_of_freedom_prior=nu0``,
``covariance_prior=inv(W0)``.

Printed: per-sweep cost, time to convergence and final exact ELBO of ppl_vi CAVI
(NumPyro and Pyro), scikit-learn (per iteration, time to its own convergence), and
NumPyro SVI (AutoNormal on the continuous sites, Adam, ``assignment`` marginalized by
``TraceEnum_ELBO``) until it reaches CAVI's ELBO within ``--svi-gap`` nats or its time
budget runs out; then the ratios. scikit-learn's ``lower_bound_`` drops constants and
uses a joint Normal–Wishart q, so its solution is compared with CAVI's through the
component means (max abs difference), not through its bound.

Run: ``.venv/bin/python benchmarks/cavi_gmm.py [--num-data 100000] [--svi-budget 120]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def _sklearn(raw: dict, max_iter: int, tol: float):
    from sklearn.mixture import BayesianGaussianMixture

    model = BayesianGaussianMixture(
        n_components=raw["num_components"],
        covariance_type="full",
        weight_concentration_prior_type="dirichlet_distribution",
        weight_concentration_prior=raw["alpha0"],
        mean_prior=raw["m0"],
        mean_precision_prior=raw["beta0"],
        degrees_of_freedom_prior=raw["nu0"],
        covariance_prior=np.linalg.inv(raw["W0"]),
        max_iter=max_iter,
        tol=tol,
        random_state=0,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(raw["x"])
    return model, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=100_000)
    parser.add_argument("--num-components", type=int, default=10)
    parser.add_argument("--svi-budget", type=float, default=120.0, help="seconds of SVI at most")
    parser.add_argument("--svi-gap", type=float, default=1.0, help="nats below CAVI's ELBO that count as reached")
    args = parser.parse_args()

    import jax

    jax.config.update("jax_enable_x64", True)
    import torch

    torch.set_default_dtype(torch.float64)
    import models
    from ppl_vi.numpyro import CAVI as NumPyroCAVI
    from ppl_vi.pyro import CAVI as PyroCAVI

    zoo = models.get("bayesian_gmm")
    raw = zoo.generate_data(0, num_data=args.num_data, num_components=args.num_components)
    rows = {}

    def note(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    note("ppl_vi CAVI (NumPyro)")
    # ppl_vi, NumPyro: plan + run, then the cost of one compiled sweep
    data = models.to_backend(raw, "numpyro")
    cavi = NumPyroCAVI(zoo.numpyro_model)
    result = cavi.run(jax.random.PRNGKey(0), **data)
    state = cavi.init(jax.random.PRNGKey(0), **data)
    update = jax.jit(cavi.update)
    state, _ = update(state)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(20):
        state, _ = update(state)
    jax.block_until_ready(state)
    rows["ppl_vi CAVI (NumPyro)"] = ((time.perf_counter() - start) / 20, result.wall_time, result.elbo[-1], result.num_steps)
    means = np.asarray(result.posterior["locs"].loc)
    cavi_elbo = float(result.elbo[-1])

    note("ppl_vi CAVI (Pyro)")
    data_t = models.to_backend(raw, "pyro")
    torch.manual_seed(0)
    pcavi = PyroCAVI(zoo.pyro_model)
    presult = pcavi.run(**data_t)
    pstate = pcavi.init()
    start = time.perf_counter()
    for _ in range(3):
        pstate, _ = pcavi.update(pstate)
    rows["ppl_vi CAVI (Pyro)"] = ((time.perf_counter() - start) / 3, presult.wall_time, presult.elbo[-1], presult.num_steps)

    note("scikit-learn")
    # scikit-learn: per iteration, and to its own convergence (and with its defaults)
    sk_default, t_default = _sklearn(raw, max_iter=100, tol=1e-3)
    sk, t_sk = _sklearn(raw, max_iter=2000, tol=1e-8)
    rows["scikit-learn (defaults)"] = (t_default / sk_default.n_iter_, t_default, float("nan"), sk_default.n_iter_)
    rows["scikit-learn (tol 1e-8)"] = (t_sk / sk.n_iter_, t_sk, float("nan"), sk.n_iter_)
    perm = [int(np.argmin(((sk.means_ - m) ** 2).sum(-1))) for m in means]
    mean_gap = float(np.abs(means - sk.means_[perm]).max())

    note("NumPyro SVI")
    # NumPyro SVI: AutoNormal on the continuous sites, assignment enumerated out
    import optax
    from numpyro import handlers
    from numpyro.infer import SVI, TraceEnum_ELBO
    from numpyro.infer.autoguide import AutoNormal

    guide = AutoNormal(handlers.block(zoo.numpyro_model, hide=["assignment"]))
    svi = SVI(zoo.numpyro_model, guide, optax.adam(0.05), TraceEnum_ELBO(max_plate_nesting=1))
    svi_state = svi.init(jax.random.PRNGKey(0), **data)
    step = jax.jit(lambda s: svi.update(s, **data))
    svi_state, loss = step(svi_state)
    jax.block_until_ready(loss)
    start, num_svi, best_svi, reached = time.perf_counter(), 0, -np.inf, float("nan")
    while time.perf_counter() - start < args.svi_budget:
        svi_state, loss = step(svi_state)
        num_svi += 1
        if num_svi % 50 == 0:
            best_svi = max(best_svi, -float(loss))
            if best_svi >= cavi_elbo - args.svi_gap:
                reached = time.perf_counter() - start
                break
    svi_time = time.perf_counter() - start
    rows["NumPyro SVI (AutoNormal, Adam)"] = (svi_time / max(num_svi, 1), reached, best_svi, num_svi)

    print(f"Bayesian GMM, N={args.num_data}, D=2, K={args.num_components} (timings on a shared machine: noisy)")
    print(f"{'method':34s} {'s/sweep':>10s} {'s to conv.':>11s} {'final ELBO':>14s} {'sweeps':>7s}")
    for name, (per, total, value, steps) in rows.items():
        print(f"{name:34s} {per:10.4f} {total:11.2f} {value:14.2f} {steps:7d}")
    print(f"max |CAVI means - scikit-learn means| = {mean_gap:.2e}")
    ours = rows["ppl_vi CAVI (NumPyro)"]
    for name in ("scikit-learn (tol 1e-8)", "scikit-learn (defaults)"):
        print(f"per-sweep speed-up vs {name}: {rows[name][0] / ours[0]:.1f}x; time-to-convergence: {rows[name][1] / ours[1]:.1f}x")
    print(f"per-sweep speed-up, NumPyro vs Pyro backend: {rows['ppl_vi CAVI (Pyro)'][0] / ours[0]:.1f}x")
    if np.isnan(reached):
        print(f"SVI did not reach CAVI's ELBO - {args.svi_gap} nats in {args.svi_budget:.0f} s "
              f"(best {best_svi:.1f}); speed-up >= {svi_time / ours[1]:.1f}x")
    else:
        print(f"time to CAVI's ELBO: SVI {reached:.1f} s vs CAVI {ours[1]:.1f} s: {reached / ours[1]:.1f}x")


if __name__ == "__main__":
    main()
