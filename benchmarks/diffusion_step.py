"""Time per training step of DiffusionELBO through the PPL chain vs hand-written loops.

Same network (2×256 SiLU MLP ε-predictor), same loss (continuous-time VDM negative
ELBO: reconstruction + prior KL + L_∞, linear γ schedule), same batch (128 × 64 dims,
17 bins), Adam. Compared pairs:

* torch: ``DiffusionELBO().differentiable_loss(chain.model, chain.guide, x)`` with
  ``torch.optim.Adam``  vs  the loss written by hand in torch;
* jax: ``numpyro.infer.SVI(chain.model, chain.guide, optax.adam, DiffusionELBO()).update``
  (jitted)  vs  a jitted hand-written jax loss + optax step.

Before timing, both losses are checked to agree on identical noise. Times are process CPU
seconds (robust to other load on the machine), measured in short interleaved blocks; the
ratio is the median of the paired block ratios. Target: ratio ≤ 1.1.

Run: ``python benchmarks/diffusion_step.py [--steps 200] [--blocks 7]``
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402
from numpyro.infer import SVI  # noqa: E402

import ppl_vi.numpyro as vi_numpyro  # noqa: E402
import ppl_vi.pyro as vi_pyro  # noqa: E402
from ppl_vi.core import schedules  # noqa: E402

BATCH, DIMS, BINS, HIDDEN = 128, 64, 17, 256
G_MIN, G_MAX = -6.6, 4.1


def torch_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(DIMS + 1, HIDDEN), torch.nn.SiLU(), torch.nn.Linear(HIDDEN, HIDDEN),
                               torch.nn.SiLU(), torch.nn.Linear(HIDDEN, DIMS))


class TorchDenoiser(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch_net()

    def forward(self, z, gamma):
        return self.net(torch.cat([z, gamma[:, None] / 10], -1))


def jax_apply(params, z, gamma):
    h = jnp.concatenate([z, gamma[:, None] / 10], -1)
    for i in range(3):
        h = h @ params[f"w{i}"].T + params[f"b{i}"]
        h = jax.nn.silu(h) if i < 2 else h
    return h


def jax_params(module: TorchDenoiser) -> dict:
    layers = [m for m in module.net if isinstance(m, torch.nn.Linear)]
    return {f"{k}{i}": jnp.asarray(getattr(m, name).detach().numpy())
            for i, m in enumerate(layers) for k, name in (("w", "weight"), ("b", "bias"))}


def hand_loss_torch(net, x_index, u, eps, eps_0):
    """VDM continuous-time negative ELBO, written directly in torch (sum over the batch)."""
    x = (2 * x_index.to(eps.dtype) + 1) / BINS - 1
    g_t = G_MIN + (G_MAX - G_MIN) * u
    a_t, s_t = torch.sigmoid(-g_t).sqrt()[:, None], torch.sigmoid(g_t).sqrt()[:, None]
    eps_hat = net(a_t * x + s_t * eps, g_t)
    diffusion = 0.5 * (G_MAX - G_MIN) * ((eps - eps_hat) ** 2).sum(-1)
    var_1 = torch.sigmoid(torch.tensor(G_MAX))
    prior = 0.5 * (var_1 + (1 - var_1) * x ** 2 - 1 - torch.log(var_1)).sum(-1)
    a_0, var_0 = math.sqrt(1 / (1 + math.exp(G_MIN))), 1 / (1 + math.exp(-G_MIN))
    z_0 = a_0 * x + math.sqrt(var_0) * eps_0
    centers = (2 * torch.arange(BINS, dtype=eps.dtype) + 1) / BINS - 1
    log_p = torch.log_softmax(-0.5 * (z_0[..., None] - a_0 * centers) ** 2 / var_0, -1)
    recon = -log_p.gather(-1, x_index[..., None]).squeeze(-1).sum(-1)
    return (diffusion + prior + recon).sum()


def hand_loss_jax(params, x_index, u, eps, eps_0):
    x = (2 * x_index + 1) / BINS - 1
    g_t = G_MIN + (G_MAX - G_MIN) * u
    a_t, s_t = jnp.sqrt(jax.nn.sigmoid(-g_t))[:, None], jnp.sqrt(jax.nn.sigmoid(g_t))[:, None]
    eps_hat = jax_apply(params, a_t * x + s_t * eps, g_t)
    diffusion = 0.5 * (G_MAX - G_MIN) * jnp.sum((eps - eps_hat) ** 2, -1)
    var_1 = jax.nn.sigmoid(G_MAX)
    prior = 0.5 * jnp.sum(var_1 + (1 - var_1) * x ** 2 - 1 - jnp.log(var_1), -1)
    a_0, var_0 = jnp.sqrt(jax.nn.sigmoid(-G_MIN)), jax.nn.sigmoid(G_MIN)
    z_0 = a_0 * x + jnp.sqrt(var_0) * eps_0
    centers = (2 * jnp.arange(BINS) + 1) / BINS - 1
    log_p = jax.nn.log_softmax(-0.5 * (z_0[..., None] - a_0 * centers) ** 2 / var_0, -1)
    recon = -jnp.sum(jnp.take_along_axis(log_p, x_index[..., None], -1), (-2, -1))
    return jnp.sum(diffusion + prior + recon)


def noise(seed: int):
    rng = np.random.default_rng(seed)
    u = np.remainder(rng.uniform() + np.arange(BATCH) / BATCH, 1.0)
    return u, rng.normal(size=(BATCH, DIMS)), rng.normal(size=(BATCH, DIMS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--blocks", type=int, default=100, help="paired (PPL, hand) blocks")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x_np = np.random.default_rng(0).integers(0, BINS, (BATCH, DIMS))
    sched = schedules.linear(G_MIN, G_MAX)

    # --- torch: PPL chain vs hand-written, same weights -------------------------------
    chain_t = vi_pyro.DiffusionChain(TorchDenoiser(), sched, num_steps=None, num_bins=BINS).float()
    hand_net = TorchDenoiser().float()
    x_t = torch.tensor(x_np)
    u, eps, eps_0 = (torch.tensor(a, dtype=torch.float32) for a in noise(1))
    ppl_value = chain_t.loss_terms(x_t, u, eps, eps_0).total.sum()
    hand_value = hand_loss_torch(hand_net, x_t, u, eps, eps_0)
    assert torch.allclose(ppl_value, hand_value, rtol=1e-4), (ppl_value, hand_value)
    elbo, opt_ppl = vi_pyro.DiffusionELBO(), torch.optim.Adam(chain_t.parameters(), lr=1e-3)
    opt_hand = torch.optim.Adam(hand_net.parameters(), lr=1e-3)

    def step_ppl():
        loss = elbo.differentiable_loss(chain_t.model, chain_t.guide, x_t)
        opt_ppl.zero_grad(set_to_none=True)
        loss.backward()
        opt_ppl.step()

    def step_hand():
        u = torch.remainder(torch.rand(()) + torch.arange(BATCH) / BATCH, 1.0)
        eps, eps_0 = torch.randn(2, BATCH, DIMS)
        loss = hand_loss_torch(hand_net, x_t, u, eps, eps_0)
        opt_hand.zero_grad(set_to_none=True)
        loss.backward()
        opt_hand.step()

    # --- jax: NumPyro SVI with DiffusionELBO vs hand-written jit ----------------------
    params = jax_params(TorchDenoiser())
    chain_j = vi_numpyro.DiffusionChain((jax_apply, params), sched, num_steps=None, num_bins=BINS)
    x_j = jnp.asarray(x_np)
    u, eps, eps_0 = (jnp.asarray(a, dtype=jnp.float32) for a in noise(1))
    ppl_j = float(chain_j.loss_terms(None, x_j, u, eps, eps_0).total.sum())
    hand_j = float(hand_loss_jax(params, x_j, u, eps, eps_0))
    assert math.isclose(ppl_j, hand_j, rel_tol=1e-4), (ppl_j, hand_j)
    svi = SVI(chain_j.model, chain_j.guide, optax.adam(1e-3), vi_numpyro.DiffusionELBO())
    svi_state = {"s": jax.jit(svi.init)(jax.random.PRNGKey(0), x_j)}
    svi_update = jax.jit(svi.update)
    optimizer = optax.adam(1e-3)

    @jax.jit
    def hand_update(state, key):
        params, opt_state = state
        k_u, k_e = jax.random.split(key)
        u = jnp.remainder(jax.random.uniform(k_u) + jnp.arange(BATCH) / BATCH, 1.0)
        eps, eps_0 = jax.random.normal(k_e, (2, BATCH, DIMS))
        loss, grads = jax.value_and_grad(hand_loss_jax)(params, x_j, u, eps, eps_0)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    hand_state = {"s": (params, optimizer.init(params)), "key": jax.random.PRNGKey(1)}

    def step_svi():
        svi_state["s"], loss = svi_update(svi_state["s"], x_j)
        loss.block_until_ready()

    def step_hand_jax():
        hand_state["key"], key = jax.random.split(hand_state["key"])
        hand_state["s"], loss = hand_update(hand_state["s"], key)
        loss.block_until_ready()

    pairs = {"torch": (step_ppl, step_hand), "jax": (step_svi, step_hand_jax)}
    for name, (ppl, hand) in pairs.items():
        for fn in (ppl, hand):  # warm-up / compile
            for _ in range(20):
                fn()
        blocks = {"ppl": [], "hand": []}
        for _ in range(args.blocks):
            for label, fn in (("ppl", ppl), ("hand", hand)):
                start = time.process_time()
                for _ in range(args.steps):
                    fn()
                blocks[label].append((time.process_time() - start) / args.steps)
        t_ppl, t_hand = statistics.median(blocks["ppl"]), statistics.median(blocks["hand"])
        ratio = statistics.median(a / b for a, b in zip(blocks["ppl"], blocks["hand"]))
        print(f"{name:5s}  PPL chain {1e3 * t_ppl:7.3f} ms/step   hand-written {1e3 * t_hand:7.3f} ms/step"
              f"   ratio {ratio:5.2f} (median of paired blocks; target <= 1.10)")


if __name__ == "__main__":
    main()
