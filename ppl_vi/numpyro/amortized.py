"""Amortized VI for NumPyro: encoder guides, the Gaussian-VAE loss, the amortization gap.

Encoders and decoders are pure JAX: a pair ``(apply_fn, params)`` where ``params`` is
any pytree and ``apply_fn(params, inputs)`` is jit/grad friendly. (Neither flax nor
equinox is a dependency of ppl_vi; a flax or equinox model is used through its own
``apply``/``__call__`` written as such a pair.) :func:`mlp_encoder` builds a small
one for the shapes :func:`local_site_shapes` reads off a model. The formulas are in
:mod:`ppl_vi.core.vae`; this module adds JAX randomness, NumPyro sites and optax.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import numpy as np
import optax
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from tqdm.auto import tqdm

from ppl_vi.core import vae as core_vae

__all__ = [
    "AmortizedGuide",
    "AmortizationGap",
    "amortization_gap",
    "local_site_shapes",
    "mlp_encoder",
    "vae_loss",
]

Encoder = tuple[Callable[[Any, jnp.ndarray], Any], Any]


class _LocalSites(NamedTuple):
    trace: dict
    num_data: int
    subsample_size: Optional[int]
    plate_dim: int
    sites: dict  # name -> (site, unconstrained event_dim, unconstrained event shape)


def _inspect_local_sites(
    model: Callable[..., Any], local_plate: str, args: tuple, kwargs: dict
) -> _LocalSites:
    """Trace ``model`` once; check that its latent sites are all local to ``local_plate``."""
    with handlers.block():
        trace = handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(*args, **kwargs)
    plates = {name: site for name, site in trace.items() if site["type"] == "plate"}
    if local_plate not in plates:
        raise ValueError(
            f"AmortizedGuide: the model has no plate named {local_plate!r}; "
            f"its plates are {sorted(plates)}. Pass local_plate=<one of these>."
        )
    num_data, subsample_size = plates[local_plate]["args"][:2]
    sites, plate_dim = {}, -1
    for name, site in trace.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        frames = {f.name: f for f in site["cond_indep_stack"]}
        if local_plate not in frames:
            raise ValueError(
                f"AmortizedGuide: latent site {name!r} is outside plate "
                f"{local_plate!r}; the encoder guide covers local sites only "
                "(give global latents their own guide, e.g. with AutoGuideList)."
            )
        plate_dim = frames[local_plate].dim
        unconstrained = biject_to(site["fn"].support).inv(site["value"])
        event_dim = site["fn"].event_dim + jnp.ndim(unconstrained) - jnp.ndim(site["value"])
        if jnp.ndim(unconstrained) - event_dim != -plate_dim:
            raise ValueError(
                f"AmortizedGuide: plate {local_plate!r} must be the leftmost batch "
                f"dimension of site {name!r} (shape {jnp.shape(site['value'])})"
            )
        sites[name] = (site, event_dim, tuple(jnp.shape(unconstrained)[1:]))
    if not sites:
        raise ValueError(f"AmortizedGuide: no latent site inside plate {local_plate!r}")
    return _LocalSites(trace, num_data, subsample_size, plate_dim, sites)


def local_site_shapes(
    model: Callable[..., Any], *args: Any, local_plate: str = "data", **kwargs: Any
) -> dict[str, tuple[int, ...]]:
    """Unconstrained per-datapoint shape of each latent site of ``model`` in ``local_plate``.

    What an encoder for :class:`AmortizedGuide` must output per datapoint (e.g. for
    :func:`mlp_encoder`); ``*args, **kwargs`` are the model's.
    """
    sites = _inspect_local_sites(model, local_plate, args, kwargs).sites
    return {name: shape for name, (_, _, shape) in sites.items()}


class AmortizedGuide:
    r"""Encoder guide ``q_φ(z_i | x_i)``, mean-field Normal per local site (math.md §1).

    For every latent site ``z`` inside the plate ``local_plate``,
    ``q_φ(u_i | x_i) = N(u_i; loc_φ(x_i), diag scale_φ(x_i)²)`` in the site's
    unconstrained space (``biject_to(site.support)``), where ``(loc, scale)`` is the
    encoder's output for the plate's current (sub)sample of the data argument. The
    model's ``plate(local_plate, N, subsample_size=B)`` is reproduced in the guide, so
    the host ELBO scales the minibatch by ``N/|B|`` (Kingma & Welling 2014).

    Parameters
    ----------
    model : callable
        NumPyro model; its latent sites must all lie inside ``local_plate``, whose
        dimension is the leftmost batch dimension of each of them.
    encoder : (apply_fn, params)
        ``apply_fn(params, x_batch)`` returns ``(loc, scale)`` (one local site) or a
        dict ``site -> (loc, scale)``; shapes ``(B, *unconstrained_event_shape)``,
        ``scale > 0``. ``params`` (a pytree) is the initial value of the NumPyro
        param ``"{prefix}_encoder"``.
    local_plate : str
        Name of the data plate.
    data_arg : int or str
        Which model argument holds the data (position or keyword); the plate's
        datapoints are along its axis 0.
    prefix : str
        Prefix of the parameter name.
    """

    def __init__(
        self,
        model: Callable[..., Any],
        encoder: Encoder,
        local_plate: str = "data",
        *,
        data_arg: Union[int, str] = 0,
        prefix: str = "amortized",
    ):
        if not (isinstance(encoder, tuple) and len(encoder) == 2 and callable(encoder[0])):
            raise TypeError("AmortizedGuide: encoder must be a pair (apply_fn, params)")
        self.model = model
        self.encoder_fn, self._init_params = encoder
        self.local_plate = local_plate
        self.data_arg = data_arg
        self.prefix = prefix
        self.prototype_trace: Optional[dict] = None
        self.num_data: Optional[int] = None

    @property
    def param_name(self) -> str:
        return f"{self.prefix}_encoder"

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        prototype = _inspect_local_sites(self.model, self.local_plate, args, kwargs)
        self.num_data, self._subsample_size = prototype.num_data, prototype.subsample_size
        self._plate_dim, self._sites = prototype.plate_dim, prototype.sites
        self.prototype_trace = prototype.trace

    def _data(self, args: tuple, kwargs: dict) -> jnp.ndarray:
        if isinstance(self.data_arg, int):
            return args[self.data_arg]
        return kwargs[self.data_arg]

    def encode(self, params: Any, x_batch: jnp.ndarray) -> dict[str, tuple]:
        """Validated encoder output ``site -> (loc, scale)`` for ``x_batch`` (``(B, ...)``)."""
        output = self.encoder_fn(params, x_batch)
        if not isinstance(output, dict):
            if len(self._sites) != 1:
                raise ValueError(
                    f"AmortizedGuide: the model has local sites {sorted(self._sites)}; the "
                    "encoder must return a dict site -> (loc, scale)"
                )
            output = {next(iter(self._sites)): output}
        batch = jnp.shape(x_batch)[0]
        for name, (_, _, event_shape) in self._sites.items():
            if name not in output:
                raise ValueError(f"AmortizedGuide: encoder output has no entry for site {name!r}")
            loc, scale = output[name]
            core_vae.check_encoder_output(name, loc, scale, (batch, *event_shape))
        return output

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, jnp.ndarray]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        params = numpyro.param(self.param_name, self._init_params)
        data = self._data(args, kwargs)
        result = {}
        with numpyro.plate(
            self.local_plate,
            self.num_data,
            subsample_size=self._subsample_size,
            dim=self._plate_dim,
        ) as indices:
            q_params = self.encode(params, jnp.take(data, indices, axis=0))
            for name, (site, event_dim, _) in self._sites.items():
                loc, scale = q_params[name]
                base = dist.Normal(loc, scale).to_event(event_dim)
                support = site["fn"].support
                if support is not constraints.real and not (
                    isinstance(support, constraints.independent)
                    and support.base_constraint is constraints.real
                ):
                    base = dist.TransformedDistribution(base, biject_to(support))
                result[name] = numpyro.sample(name, base)
        return result

    def sample_posterior(
        self, rng_key: jax.Array, params: dict, *args: Any, sample_shape: tuple = (), **kwargs: Any
    ) -> dict[str, jnp.ndarray]:
        """Draws of every local site, shape ``sample_shape + site shape``, given the data.

        ``params`` is ``svi.get_params(state)``; ``*args, **kwargs`` are the model's.
        """
        num_draws = int(np.prod(sample_shape, dtype=int))
        keys = jax.random.split(rng_key, num_draws)

        def draw(key):
            return handlers.substitute(handlers.seed(self, key), data=params)(*args, **kwargs)

        draws = jax.vmap(draw)(keys)
        return jax.tree.map(lambda v: jnp.reshape(v, (*sample_shape, *jnp.shape(v)[1:])), draws)


    def median(self, params: dict, *args: Any, **kwargs: Any) -> dict[str, jnp.ndarray]:
        """Posterior median of every local site for all ``N`` datapoints of the data.

        ``biject_to(support)(loc_φ(x_i))``, the median of ``q_φ(z_i | x_i)``; ``params``
        is ``svi.get_params(state)``, ``*args, **kwargs`` the model's.
        """
        if self.prototype_trace is None:
            handlers.seed(self._setup_prototype, rng_seed=0)(*args, **kwargs)
        q_params = self.encode(params[self.param_name], self._data(args, kwargs))
        return {
            name: biject_to(site["fn"].support)(q_params[name][0])
            for name, (site, _, _) in self._sites.items()
        }


def mlp_encoder(
    rng_key: jax.Array,
    input_dim: int,
    site_shapes: dict[str, tuple[int, ...]],
    hidden: tuple[int, ...] = (64,),
) -> Encoder:
    """A pure-JAX MLP encoder ``(apply_fn, params)`` for :class:`AmortizedGuide`.

    ``apply_fn(params, x)`` maps ``x`` of shape ``(B, input_dim)`` (flattened per
    datapoint) through softplus hidden layers to ``{site: (loc, scale)}`` with shapes
    ``(B, *site_shapes[site])`` and ``scale = softplus(·) + 1e-4``. Weights are drawn
    ``N(0, 1/fan_in)``, biases zero.
    """
    sizes = [int(np.prod(shape, dtype=int)) for shape in site_shapes.values()]
    widths = [input_dim, *hidden, 2 * sum(sizes)]
    keys = jax.random.split(rng_key, len(widths) - 1)
    params = [
        (jax.random.normal(key, (n_in, n_out)) / np.sqrt(n_in), jnp.zeros(n_out))
        for key, n_in, n_out in zip(keys, widths[:-1], widths[1:])
    ]

    def apply_fn(params, x):
        h = jnp.reshape(x, (jnp.shape(x)[0], -1))
        for weight, bias in params[:-1]:
            h = jax.nn.softplus(h @ weight + bias)
        out = h @ params[-1][0] + params[-1][1]
        result, start = {}, 0
        for (name, shape), size in zip(site_shapes.items(), sizes):
            loc = out[:, start : start + size].reshape((-1, *shape))
            raw = out[:, start + size : start + 2 * size].reshape((-1, *shape))
            result[name] = (loc, jax.nn.softplus(raw) + 1e-4)
            start += 2 * size
        return result

    return apply_fn, params


def _encode_batch(encoder: Encoder, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    encoder_fn, encoder_params = encoder
    output = encoder_fn(encoder_params, x)
    if not (isinstance(output, tuple) and len(output) == 2):
        raise ValueError("vae encoder must return a pair (loc, scale) of shape (B, k) each")
    loc, scale = output
    core_vae.check_encoder_output("z", loc, scale, (jnp.shape(x)[0], jnp.shape(loc)[-1]))
    return loc, scale


def _decode_fn(decoder: Encoder) -> Callable[[jnp.ndarray], jnp.ndarray]:
    decoder_fn, decoder_params = decoder
    return lambda z: decoder_fn(decoder_params, z)


def vae_loss(
    encoder: Encoder,
    decoder: Encoder,
    x: jnp.ndarray,
    *,
    sigma: float,
    rng_key: Optional[jax.Array] = None,
    noise: Optional[jnp.ndarray] = None,
    num_particles: int = 1,
    num_data: Optional[int] = None,
) -> jnp.ndarray:
    r"""Gaussian-VAE negative ELBO of a batch, analytic KL (math.md §1).

    ``Σ_{i∈B} [ E_q ||x_i − f_θ(z)||²/(2σ²) + (D/2) log(2πσ²)
    + KL(q(z|x_i) || N(0,I)) ]``,
    times ``num_data/|B|`` when ``num_data`` is given (a minibatch of ``N`` points);
    the expectation is a mean over ``num_particles`` draws ``z = μ + s ⊙ ε``.

    Parameters
    ----------
    encoder, decoder : (apply_fn, params)
        ``encoder`` maps ``x (B, D) -> (loc, scale)``, each ``(B, k)``; ``decoder``
        maps ``z (..., k) -> (..., D)`` (the mean ``f_θ``).
    x : array, shape ``(B, D)``
    sigma : float
        Fixed decoder standard deviation.
    rng_key : jax.Array, optional
        Key of the noise ``ε`` (``(num_particles, B, k)``); or pass ``noise`` itself.
    num_data : int, optional
        Full data size ``N``.

    Returns
    -------
    scalar array
        Differentiable in both parameter pytrees (wrap in a function of them for
        ``jax.grad``).
    """
    loc, scale = _encode_batch(encoder, x)
    if noise is None:
        if rng_key is None:
            raise ValueError("vae_loss needs rng_key or noise")
        noise = jax.random.normal(rng_key, (num_particles, *jnp.shape(loc)))
    per_point = core_vae.vae_negative_elbo(x, loc, scale, noise, _decode_fn(decoder), sigma)
    scale_factor = 1.0 if num_data is None else num_data / jnp.shape(x)[0]
    return scale_factor * jnp.sum(per_point)


class AmortizationGap(NamedTuple):
    """Per-datapoint result of :func:`amortization_gap` (each array of shape ``(n,)``).

    ``gap = elbo_optimized − elbo_encoder`` (≥ 0 up to Monte Carlo error); ``iwae`` is
    the k-sample importance-weighted estimate of ``log p(x_i)`` with the optimized
    ``q_ψ*`` as proposal, on the first k of the evaluation draws; ``loc`` and
    ``scale`` (``(n, k)``) are ψ*.
    """

    elbo_encoder: Any
    elbo_optimized: Any
    gap: Any
    iwae: Any
    loc: Any
    scale: Any


def amortization_gap(
    encoder: Encoder,
    decoder: Encoder,
    x: jnp.ndarray,
    rng_key: jax.Array,
    *,
    sigma: float,
    num_steps: int = 500,
    step_size: float = 1e-2,
    num_particles: int = 8,
    num_eval_particles: int = 1000,
    num_importance: int = 1000,
    progress_bar: bool = True,
) -> AmortizationGap:
    r"""Amortization gap of a Gaussian VAE on held-out points (math.md §1).

    Starting from the encoder's ``ψ_i = (μ_φ(x_i), s_φ(x_i))``, Adam on
    ``(μ_i, log s_i)`` maximizes each point's ELBO alone (``num_steps`` steps,
    ``num_particles`` fresh draws each); both ELBOs are then evaluated on the
    same ``max(num_eval_particles, num_importance)`` draws (common random numbers), so
    their difference has little Monte Carlo noise.

    Parameters
    ----------
    encoder, decoder, sigma
        As for :func:`vae_loss`.
    x : array, shape ``(n, D)``
        Held-out points.
    rng_key : jax.Array
    num_importance : int
        ``k`` of the IWAE estimate.

    Returns
    -------
    AmortizationGap
    """
    decode = _decode_fn(decoder)
    loc0, scale0 = _encode_batch(encoder, x)
    psi = (loc0, jnp.log(scale0))
    optimizer = optax.adam(step_size)

    def loss(psi, noise):
        return jnp.sum(core_vae.vae_negative_elbo(x, psi[0], jnp.exp(psi[1]), noise, decode, sigma))

    @jax.jit
    def step(psi, opt_state, key):
        noise = jax.random.normal(key, (num_particles, *jnp.shape(loc0)))
        grads = jax.grad(loss)(psi, noise)
        updates, opt_state = optimizer.update(grads, opt_state, psi)
        return optax.apply_updates(psi, updates), opt_state

    opt_state = optimizer.init(psi)
    key_opt, key_eval = jax.random.split(rng_key)
    keys = jax.random.split(key_opt, num_steps)
    for key in tqdm(keys, desc="amortization gap", disable=not progress_bar):
        psi, opt_state = step(psi, opt_state, key)
    loc, scale = psi[0], jnp.exp(psi[1])
    num_draws = max(num_eval_particles, num_importance)
    eval_noise = jax.random.normal(key_eval, (num_draws, *jnp.shape(loc0)))
    estimates = core_vae.amortization_gap_estimates(
        x, (loc0, scale0), (loc, scale), eval_noise, decode, sigma, num_importance
    )
    return AmortizationGap(*estimates, loc, scale)
