"""NumPyro vs Pyro: LocalGuide gives the same ELBO at the same parameters and noise, and
vae_loss the same value at the same weights and noise."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import pytest
import torch
from numpyro import handlers
from numpyro.infer import Trace_ELBO as NumPyroTraceELBO
from pyro.infer import Trace_ELBO as PyroTraceELBO
from pyro.poutine.messenger import Messenger

import ppl_vi.numpyro as vi_numpyro
import ppl_vi.pyro as vi_pyro

N = 8
RNG = np.random.default_rng(3)
X_NP = np.linspace(-1.0, 1.0, N)
Y_NP = 0.8 * X_NP + RNG.normal(0.0, 0.5, N)
NOISE = {"w": 0.4, "s": -0.7, "z": RNG.normal(size=N)}


def numpyro_model(x, y, subsample_size=None):
    w = numpyro.sample("w", ndist.Normal(0.0, 1.0))
    s = numpyro.sample("s", ndist.HalfNormal(1.0))
    with numpyro.plate("data", N, subsample_size=subsample_size) as idx:
        z = numpyro.sample("z", ndist.Normal(0.0, 0.7))
        numpyro.sample("y", ndist.Normal(w * x[idx] + z, s), obs=y[idx])


def pyro_model(x, y, subsample_size=None):
    w = pyro.sample("w", pdist.Normal(0.0, 1.0))
    s = pyro.sample("s", pdist.HalfNormal(1.0))
    with pyro.plate("data", N, subsample_size=subsample_size) as idx:
        z = pyro.sample("z", pdist.Normal(0.0, 0.7))
        pyro.sample("y", pdist.Normal(w * x[idx] + z, s), obs=y[idx])


def numpyro_fixed_noise(guide, indices):
    def value(msg):
        if msg["type"] == "plate" and msg["name"] == "data":
            return indices
        if msg["type"] != "sample" or msg["name"] not in NOISE:
            return None
        eps = jnp.asarray(NOISE[msg["name"]])
        eps = eps[indices] if eps.ndim else eps
        fn = msg["fn"]
        transforms = getattr(fn, "transforms", [])
        base = fn.base_dist if transforms else fn
        value = base.loc + base.scale * eps
        for transform in transforms:
            value = transform(value)
        return value

    return handlers.substitute(guide, substitute_fn=value)


class PyroFixedNoise(Messenger):
    def __init__(self, indices):
        super().__init__()
        self.indices = indices

    def _pyro_sample(self, msg):
        if msg["name"] == "data":
            msg["value"], msg["done"] = self.indices, True
        elif msg["name"] in NOISE and not msg["is_observed"]:
            eps = torch.as_tensor(NOISE[msg["name"]])
            eps = eps[self.indices] if eps.dim() else eps
            fn = msg["fn"]
            transforms = getattr(fn, "transforms", [])
            base = fn.base_dist if transforms else fn
            value = base.loc + base.scale * eps
            for transform in transforms:
                value = transform(value)
            msg["value"], msg["done"] = value, True


@pytest.mark.parametrize("indices", [np.arange(N), np.array([5, 1, 6])])
def test_local_guide_same_elbo_at_same_params_and_noise(indices):
    size = None if len(indices) == N else len(indices)
    x_t, y_t = torch.as_tensor(X_NP), torch.as_tensor(Y_NP)
    pyro.clear_param_store()
    pyro_guide = vi_pyro.LocalGuide(pyro_model, "data", N)
    pyro_guide(x_t, y_t, size)
    with torch.no_grad():
        for p in pyro_guide.parameters():
            p.add_(0.3 * torch.as_tensor(RNG.normal(size=tuple(p.shape))))
    pyro_loss = PyroTraceELBO().loss(
        pyro_model, PyroFixedNoise(torch.as_tensor(indices))(pyro_guide), x_t, y_t, size
    )
    params = {}
    for name in ("w", "s", "z"):
        params[f"{name}_local_loc"] = jnp.asarray(getattr(pyro_guide.locs, name).detach().numpy())
        params[f"{name}_local_scale"] = jnp.asarray(getattr(pyro_guide.scales, name).detach().numpy())
    numpyro_guide = vi_numpyro.LocalGuide(numpyro_model, "data", N)
    numpyro_loss = NumPyroTraceELBO().loss(
        jax.random.PRNGKey(0),
        params,
        numpyro_model,
        numpyro_fixed_noise(numpyro_guide, jnp.asarray(indices)),
        jnp.asarray(X_NP),
        jnp.asarray(Y_NP),
        size,
    )
    np.testing.assert_allclose(float(numpyro_loss), pyro_loss, rtol=1e-10)


def test_vae_loss_same_value_at_same_weights_and_noise():
    data_dim, latent_dim, batch = 5, 2, 6
    x = RNG.uniform(size=(batch, data_dim))
    w_enc = RNG.normal(size=(data_dim, 2 * latent_dim))
    w_dec, b_dec = RNG.normal(size=(latent_dim, data_dim)), RNG.normal(size=data_dim)
    noise = RNG.normal(size=(3, batch, latent_dim))

    def jax_encoder(params, x):
        h = x @ params
        return h[..., :latent_dim], jax.nn.softplus(h[..., latent_dim:])

    def jax_decoder(params, z):
        return jax.nn.sigmoid(z @ params[0] + params[1])

    class TorchEncoder(torch.nn.Module):
        def forward(self, x):
            h = x @ torch.as_tensor(w_enc)
            return h[..., :latent_dim], torch.nn.functional.softplus(h[..., latent_dim:])

    class TorchDecoder(torch.nn.Module):
        def forward(self, z):
            return torch.sigmoid(z @ torch.as_tensor(w_dec) + torch.as_tensor(b_dec))

    jax_loss = vi_numpyro.vae_loss(
        (jax_encoder, jnp.asarray(w_enc)),
        (jax_decoder, (jnp.asarray(w_dec), jnp.asarray(b_dec))),
        jnp.asarray(x),
        sigma=0.3,
        noise=jnp.asarray(noise),
        num_data=60,
    )
    torch_loss = vi_pyro.vae_loss(
        TorchEncoder(), TorchDecoder(), torch.as_tensor(x), sigma=0.3, noise=torch.as_tensor(noise), num_data=60
    )
    np.testing.assert_allclose(float(jax_loss), float(torch_loss), rtol=1e-12)
