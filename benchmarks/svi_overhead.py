"""LocalGuide steps/second vs a hand-written host guide for the same model (both backends).

Model: Bayesian linear regression with a local offset per datapoint,
``w ~ N(0, 1)``, ``z_i ~ N(0, 0.7²)``, ``y_i ~ N(w x_i + z_i, 0.5²)``, N datapoints,
minibatches of B by plate subsampling, ``Trace_ELBO``, Adam. The hand-written guide
is what a user would write: ``param`` statements with ``event_dim`` inside the plate,
Normal factors. The figure of merit is ``steps/s(LocalGuide) / steps/s(hand-written)``
(target ≥ 0.95). Timings alternate between the two guides over several rounds and
report the median, which damps (but does not remove) noise from other load on the
machine.

Run: ``python benchmarks/svi_overhead.py [--num-data 10000 --batch-size 100]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable


def numpyro_runners(num_data: int, batch_size: int) -> dict[str, Callable[[int], float]]:
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    import optax
    from numpyro.distributions import constraints
    from numpyro.infer import SVI, Trace_ELBO

    from ppl_vi.numpyro import LocalGuide

    x = jnp.linspace(-1.0, 1.0, num_data)
    y = 1.5 * x + jax.random.normal(jax.random.PRNGKey(0), (num_data,))

    def model(x, y):
        w = numpyro.sample("w", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", num_data, subsample_size=batch_size) as idx:
            z = numpyro.sample("z", dist.Normal(0.0, 0.7))
            numpyro.sample("y", dist.Normal(w * x[idx] + z, 0.5), obs=y[idx])

    def hand_written(x, y):
        w_loc = numpyro.param("w_loc", 0.0)
        w_scale = numpyro.param("w_scale", 0.1, constraint=constraints.softplus_positive)
        numpyro.sample("w", dist.Normal(w_loc, w_scale))
        with numpyro.plate("data", num_data, subsample_size=batch_size):
            z_loc = numpyro.param("z_loc", jnp.zeros(num_data), event_dim=0)
            z_scale = numpyro.param("z_scale", jnp.full(num_data, 0.1), constraint=constraints.softplus_positive, event_dim=0)
            numpyro.sample("z", dist.Normal(z_loc, z_scale))

    def runner(guide):
        svi = SVI(model, guide, optax.adam(1e-2), Trace_ELBO())
        state = svi.init(jax.random.PRNGKey(1), x, y)
        update = jax.jit(svi.update)
        state = jax.block_until_ready(update(state, x, y)[0])

        def run(num_steps: int) -> float:
            nonlocal state
            start = time.perf_counter()
            for _ in range(num_steps):
                state, _ = update(state, x, y)
            jax.block_until_ready(state)
            return num_steps / (time.perf_counter() - start)

        return run

    return {"LocalGuide": runner(LocalGuide(model, "data", num_data)), "hand-written": runner(hand_written)}


def pyro_runners(num_data: int, batch_size: int) -> dict[str, Callable[[int], float]]:
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.distributions import constraints
    from pyro.infer import SVI, Trace_ELBO

    from ppl_vi.pyro import LocalGuide

    x = torch.linspace(-1.0, 1.0, num_data)
    y = 1.5 * x + torch.randn(num_data)

    def model(x, y):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", num_data, subsample_size=batch_size) as idx:
            z = pyro.sample("z", dist.Normal(0.0, 0.7))
            pyro.sample("y", dist.Normal(w * x[idx] + z, 0.5), obs=y[idx])

    def hand_written(x, y):
        w_loc = pyro.param("w_loc", torch.tensor(0.0))
        w_scale = pyro.param("w_scale", torch.tensor(0.1), constraint=constraints.softplus_positive)
        pyro.sample("w", dist.Normal(w_loc, w_scale))
        with pyro.plate("data", num_data, subsample_size=batch_size):
            z_loc = pyro.param("z_loc", torch.zeros(num_data), event_dim=0)
            z_scale = pyro.param("z_scale", torch.full((num_data,), 0.1), constraint=constraints.softplus_positive, event_dim=0)
            pyro.sample("z", dist.Normal(z_loc, z_scale))

    def runner(guide):
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
        svi.step(x, y)

        def run(num_steps: int) -> float:
            start = time.perf_counter()
            for _ in range(num_steps):
                svi.step(x, y)
            return num_steps / (time.perf_counter() - start)

        return run

    pyro.clear_param_store()
    return {"LocalGuide": runner(LocalGuide(model, "data", num_data)), "hand-written": runner(hand_written)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backend", choices=["numpyro", "pyro", "both"], default="both")
    args = parser.parse_args()

    import jax
    import torch

    jax.config.update("jax_enable_x64", True)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    backends = ["numpyro", "pyro"] if args.backend == "both" else [args.backend]
    steps = {"numpyro": 2000, "pyro": 300}
    for backend in backends:
        runners = (numpyro_runners if backend == "numpyro" else pyro_runners)(args.num_data, args.batch_size)
        rates: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                rates[name].append(run(steps[backend]))
        medians = {name: statistics.median(r) for name, r in rates.items()}
        print(f"{backend}: N={args.num_data}, B={args.batch_size}, median of {args.rounds} rounds "
              f"x {steps[backend]} steps")
        for name, rate in medians.items():
            print(f"  {name:13s} {rate:10.1f} steps/s")
        print(f"  ratio LocalGuide / hand-written = {medians['LocalGuide'] / medians['hand-written']:.3f}"
              "  (target >= 0.95)")


if __name__ == "__main__":
    main()
