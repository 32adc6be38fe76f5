"""Langevin sampling of a 2-D Gaussian mixture with exact and learned scores (NCSN's toy).

Target: ``0.8 N((5, 5), I) + 0.2 N((−5, −5), I)`` (Song & Ermon 2019, §3.2).

1. *Plain Langevin* with the exact score, chains started uniformly on [−8, 8]²: the modes
   are separated by a region where ``p`` is ~e⁻²⁵, the score there carries no information
   about the weights, and each chain stays in the basin it started in — about half the mass
   ends in each mode, whatever the number of steps.
2. *Annealed Langevin* (σ from 20 to 1, 10 levels × 100 steps, ``α_i = ε σ_i²/σ_L²``)
   with the exact score of each perturbed density ``p_σ = p * N(0, σ² I)``: at large σ the
   modes overlap and the chains distribute by weight; the weights come out right.
3. The same annealed sampler with a *noise-conditional network* ``s_θ(x, σ)`` trained by
   denoising score matching (λ(σ) = σ²) on draws of the mixture — it reproduces step 2.

Each run is scored by the fraction of chains in the 0.8 mode (the weight error) and the
energy distance (unbiased, so ≈ 0 ± Monte Carlo noise for the right law) to fresh i.i.d.
draws of ``p`` and of ``p_{σ_L} = p * N(0, σ_L² I)``: annealed Langevin ends at the last
level, so it samples ``p_{σ_L}`` (each mode has covariance 2 I here, not I) — the weights
are right, the spread is ``σ_L``'s.
Writes ``score_mixture.png`` into ``--out`` and prints the table.

    python examples/score_mixture.py --chains 10000 --train-steps 3000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from ppl_vi.numpyro import annealed_langevin, dsm_loss, langevin  # noqa: E402

jax.config.update("jax_enable_x64", True)

WEIGHTS = jnp.array([0.8, 0.2])
MEANS = jnp.array([[5.0, 5.0], [-5.0, -5.0]])
SIGMAS = jnp.geomspace(20.0, 1.0, 10)
EPS, STEPS_PER_LEVEL, PLAIN_STEP_SIZE, PLAIN_STEPS = 0.1, 100, 0.1, 1000


def sample_mixture(rng_key, num_samples: int) -> jax.Array:
    key_component, key_noise = jax.random.split(rng_key)
    component = jax.random.choice(key_component, 2, (num_samples,), p=WEIGHTS)
    return MEANS[component] + jax.random.normal(key_noise, (num_samples, 2))


def exact_score(x: jax.Array, sigma=0.0) -> jax.Array:
    """Score of ``p * N(0, σ² I)``: ``Σ_k r_k(x) (μ_k − x) / (1 + σ²)``."""
    variance = 1.0 + sigma**2
    logits = jnp.log(WEIGHTS) - jnp.sum((x[..., None, :] - MEANS) ** 2, axis=-1) / (2 * variance)
    return (jax.nn.softmax(logits, axis=-1) @ MEANS - x) / variance


def init_network(rng_key, width: int = 128) -> list:
    sizes = [3, width, width, 2]
    keys = jax.random.split(rng_key, len(sizes) - 1)
    return [
        (jax.random.normal(k, (m, n)) * jnp.sqrt(1.0 / m), jnp.zeros(n))
        for k, m, n in zip(keys, sizes[:-1], sizes[1:])
    ]


def network_score(params: list, x: jax.Array, sigma) -> jax.Array:
    """``s_θ(x, σ) = f_θ(x / sqrt(26 + σ²), log σ) / σ`` (NCSN's 1/σ output scaling)."""
    sigma = jnp.broadcast_to(jnp.asarray(sigma, dtype=x.dtype), x.shape[:-1])
    h = jnp.concatenate([x / jnp.sqrt(26.0 + sigma[..., None] ** 2), jnp.log(sigma)[..., None]], axis=-1)
    for weight, bias in params[:-1]:
        h = jax.nn.silu(h @ weight + bias)
    weight, bias = params[-1]
    return (h @ weight + bias) / sigma[..., None]


def train(rng_key, num_steps: int, batch_size: int = 512, learning_rate: float = 2e-3) -> tuple[list, list]:
    """Noise-conditional DSM on fresh mixture draws each step (Adam, cosine decay)."""
    key_init, key_train = jax.random.split(rng_key)
    params = init_network(key_init)
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps))
    opt_state = optimizer.init(params)

    @jax.jit
    def update(params, opt_state, key):
        key_data, key_loss = jax.random.split(key)
        x0 = sample_mixture(key_data, batch_size)
        loss, grads = jax.value_and_grad(
            lambda p: dsm_loss(lambda x, s: network_score(p, x, s), x0, SIGMAS, key_loss)
        )(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for key in tqdm(jax.random.split(key_train, num_steps), desc="DSM training"):
        params, opt_state, loss = update(params, opt_state, key)
        losses.append(float(loss))
    return params, losses


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``2 E||a − b|| − E||a − a'|| − E||b − b'||``, unbiased (U-statistic): 0 in expectation iff same law."""
    def mean_distance(u, v, same: bool):
        distances = np.linalg.norm(u[:, None, :] - v[None, :, :], axis=-1)
        return float(distances.sum() / (distances.size - (len(u) if same else 0)))

    return 2 * mean_distance(a, b, False) - mean_distance(a, a, True) - mean_distance(b, b, True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=10_000)
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/score_mixture"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    keys = jax.random.split(jax.random.PRNGKey(args.seed), 7)

    init = jax.random.uniform(keys[0], (args.chains, 2), minval=-8.0, maxval=8.0)
    started = time.perf_counter()
    params, losses = train(keys[1], args.train_steps)
    train_seconds = time.perf_counter() - started
    learned = jax.jit(lambda x, s: network_score(params, x, s))
    runs = {
        "i.i.d.": sample_mixture(keys[2], args.chains),
        "plain Langevin, exact score": langevin(exact_score, init, PLAIN_STEPS, PLAIN_STEP_SIZE, keys[3]).position,
        "annealed Langevin, exact score": annealed_langevin(exact_score, init, SIGMAS, STEPS_PER_LEVEL, EPS, keys[4]).position,
        "annealed Langevin, DSM network": annealed_langevin(learned, init, SIGMAS, STEPS_PER_LEVEL, EPS, keys[5]).position,
    }
    key_target, key_noise = jax.random.split(keys[6])
    reference = np.asarray(sample_mixture(key_target, 2000))
    reference_last_level = reference + float(SIGMAS[-1]) * np.asarray(jax.random.normal(key_noise, (2000, 2)))
    standard_error = np.sqrt(0.8 * 0.2 / args.chains)
    print(f"{args.chains} chains; DSM network trained {args.train_steps} steps in {train_seconds:.0f} s "
          f"(final loss {np.mean(losses[-100:]):.3f}); binomial s.e. of a weight: {standard_error:.4f}")
    print(f"{'run':34s} {'weight (0.8 mode)':>18s} {'weight error':>13s} {'energy dist. to p':>18s} "
          f"{'to p_σL':>8s}")
    rows = []
    for name, draws in runs.items():
        draws = np.asarray(draws)
        weight = float(np.mean(draws.sum(axis=1) > 0))
        distance = energy_distance(draws[:2000], reference)
        distance_last_level = energy_distance(draws[:2000], reference_last_level)
        rows.append((name, draws, weight, distance, distance_last_level))
        print(f"{name:34s} {weight:18.3f} {abs(weight - 0.8):13.3f} {distance:18.4f} {distance_last_level:8.4f}")

    figure, axes = plt.subplots(1, 5, figsize=(24, 4.8))
    for axis, (name, draws, weight, distance, distance_last_level) in zip(axes, rows):
        axis.scatter(draws[:3000, 0], draws[:3000, 1], s=1, alpha=0.3)
        title = f"{name}\nweight {weight:.3f}; energy dist. to p {distance:.3f}, to p_σL {distance_last_level:.3f}"
        axis.set_title(title, fontsize=9)
        axis.set(xlim=(-10, 10), ylim=(-10, 10))
        axis.set_aspect("equal")
    grid = jnp.stack(jnp.meshgrid(jnp.linspace(-9, 9, 15), jnp.linspace(-9, 9, 15)), axis=-1).reshape(-1, 2)
    exact, fitted = exact_score(grid, 1.0), learned(grid, 1.0)
    axes[4].quiver(grid[:, 0], grid[:, 1], exact[:, 0], exact[:, 1], color="k", alpha=0.5, label="exact")
    axes[4].quiver(grid[:, 0], grid[:, 1], fitted[:, 0], fitted[:, 1], color="r", alpha=0.5, label="DSM network")
    axes[4].set(title="scores at σ = 1", xlim=(-10, 10), ylim=(-10, 10))
    axes[4].set_aspect("equal")
    axes[4].legend(loc="lower right")
    figure.tight_layout()
    path = args.out / "score_mixture.png"
    figure.savefig(path, dpi=110)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
