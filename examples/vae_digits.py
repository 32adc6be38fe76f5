"""Gaussian VAE on scikit-learn's 8×8 digits (Pyro), with the amortization gap.

Pixels are scaled to [0, 1] (divided by 16); the decoder is ``N(f_θ(z), σ² I_64)``
with fixed σ, the encoder a diagonal Normal, the prior ``N(0, I_k)`` (math.md §1).
Training minimizes :func:`ppl_vi.pyro.vae_loss` (analytic KL) with ``torch.optim.Adam``
on minibatches, or, with ``--loss host``, Pyro's ``Trace_ELBO`` through
:class:`ppl_vi.pyro.AmortizedGuide` and ``pyro.infer.SVI``. Then, on held-out
digits, it prints the ELBO of the encoder, the ELBO after per-datapoint optimization
(the amortization gap) and an IWAE estimate of log p(x), and saves reconstructions
and prior samples as PNGs.

Run: ``python examples/vae_digits.py`` (about 1.5 CPU minutes: 2,400 Adam steps and the
gap optimization; PNGs go to ``reports/vae_digits/``), ``--help`` for options.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from ppl_vi.pyro import AmortizedGuide, amortization_gap, vae_loss  # noqa: E402


class Encoder(torch.nn.Module):
    """x (B, 64) -> (loc, scale) of q(z | x), each (B, k)."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: int):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(data_dim, hidden), torch.nn.Softplus())
        self.loc = torch.nn.Linear(hidden, latent_dim)
        self.raw_scale = torch.nn.Linear(hidden, latent_dim)

    def forward(self, x):
        h = self.body(x)
        return self.loc(h), torch.nn.functional.softplus(self.raw_scale(h)) + 1e-4


class Decoder(torch.nn.Module):
    """z (..., k) -> mean of p(x | z) in [0, 1], (..., 64)."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: int):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(latent_dim, hidden), torch.nn.Softplus(), torch.nn.Linear(hidden, data_dim), torch.nn.Sigmoid()
        )

    def forward(self, z):
        return self.net(z)


def make_model(decoder: Decoder, num_data: int, latent_dim: int, sigma: float, batch_size: int):
    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", num_data, subsample_size=batch_size) as idx:
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([latent_dim]).to_event(1))
            pyro.sample("x", dist.Normal(decoder(z), sigma).to_event(1), obs=x[idx])

    return model


def train(args, x_train, encoder, decoder) -> list[float]:
    num_data, batch_size = len(x_train), args.batch_size
    steps = args.epochs * (num_data // batch_size)
    losses = []
    if args.loss == "host":
        model = make_model(decoder, num_data, args.latent_dim, args.sigma, batch_size)
        guide = AmortizedGuide(model, encoder, "data")
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": args.lr}), pyro.infer.Trace_ELBO())
        step = lambda: svi.step(x_train)  # noqa: E731
    else:
        optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=args.lr)

        def step():
            batch = x_train[torch.randint(num_data, (batch_size,))]
            loss = vae_loss(encoder, decoder, batch, sigma=args.sigma, num_data=num_data)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.item()

    with tqdm(range(steps), desc="VAE training", disable=not args.progress) as bar:
        for t in bar:
            losses.append(step())
            if t % 50 == 0:
                bar.set_postfix(neg_elbo_per_digit=f"{np.mean(losses[-50:]) / num_data:.1f}")
    return losses


def save_images(path: pathlib.Path, rows: list[np.ndarray], titles: list[str]) -> None:
    fig, axes = plt.subplots(len(rows), rows[0].shape[0], figsize=(rows[0].shape[0], 1.1 * len(rows)))
    axes = np.atleast_2d(axes)
    for r, (images, title) in enumerate(zip(rows, titles)):
        for c, image in enumerate(images):
            axes[r, c].imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--sigma", type=float, default=0.15, help="fixed decoder standard deviation")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--loss", choices=["analytic", "host"], default="analytic")
    parser.add_argument("--num-heldout", type=int, default=100)
    parser.add_argument("--gap-steps", type=int, default=500)
    parser.add_argument("--num-importance", type=int, default=1000, help="k of the IWAE estimate")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("reports/vae_digits"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args()

    torch.set_default_dtype(torch.float32)
    pyro.set_rng_seed(args.seed)
    images = torch.as_tensor(load_digits().data / 16.0, dtype=torch.float32)  # scaled to [0, 1]
    order = torch.randperm(len(images))
    x_test, x_train = images[order[: args.num_heldout]], images[order[args.num_heldout :]]
    encoder = Encoder(64, args.latent_dim, args.hidden)
    decoder = Decoder(64, args.latent_dim, args.hidden)

    start = time.perf_counter()
    losses = train(args, x_train, encoder, decoder)
    print(f"trained {len(losses)} steps in {time.perf_counter() - start:.1f} s; "
          f"final -ELBO per training digit {np.mean(losses[-50:]) / len(x_train):.2f} nats")

    gap = amortization_gap(encoder, decoder, x_test, sigma=args.sigma, num_steps=args.gap_steps,
                           num_importance=args.num_importance, progress_bar=args.progress)
    print(f"held-out digits (n={len(x_test)}), nats per digit, mean ± standard error:")
    for name, values in [("ELBO, encoder q_phi(z|x)", gap.elbo_encoder),
                         ("ELBO, optimized psi*", gap.elbo_optimized),
                         ("amortization gap", gap.gap),
                         (f"IWAE log p(x), k={args.num_importance}", gap.iwae)]:
        print(f"  {name:32s} {values.mean():9.2f} ± {values.std() / len(values) ** 0.5:.2f}")

    args.out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        originals = x_test[:10]
        reconstructions = decoder(encoder(originals)[0])
        samples = decoder(torch.randn(2, 10, args.latent_dim))
    save_images(args.out / "reconstructions.png", [originals.numpy(), reconstructions.numpy()],
                ["held-out digits", "reconstructions (decoder mean at encoder mean)"])
    save_images(args.out / "samples.png", [s.numpy() for s in samples], ["decoder means, z ~ N(0, I)", ""])
    print(f"saved {args.out / 'reconstructions.png'} and {args.out / 'samples.png'}")


if __name__ == "__main__":
    main()
