"""Amortized VI for Pyro: encoder guides, the Gaussian-VAE loss, the amortization gap.

Encoders and decoders are ``torch.nn.Module`` s; :class:`MLPEncoder` is a small one
for the shapes :func:`local_site_shapes` reads off a model. The formulas are in
:mod:`ppl_vi.core.vae`; this module adds torch randomness, Pyro sites and
``torch.optim``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to, constraints
from tqdm.auto import tqdm

from ppl_vi.core import vae as core_vae

__all__ = [
    "AmortizedGuide",
    "AmortizationGap",
    "amortization_gap",
    "local_site_shapes",
    "MLPEncoder",
    "vae_loss",
]


class _LocalSites(NamedTuple):
    trace: Any
    num_data: int
    subsample_size: int
    plate_dim: int
    sites: dict  # name -> (site, unconstrained event_dim, unconstrained event shape)


def _inspect_local_sites(
    model: Callable[..., Any], local_plate: str, args: tuple, kwargs: dict
) -> _LocalSites:
    """Trace ``model`` once; check that its latent sites are all local to ``local_plate``."""
    with torch.no_grad():
        trace = poutine.block(poutine.trace(model).get_trace)(*args, **kwargs)
    samples = [site for site in trace.nodes.values() if site["type"] == "sample"]
    frames = {f.name: f for site in samples for f in site["cond_indep_stack"]}
    if local_plate not in frames:
        raise ValueError(
            f"AmortizedGuide: the model has no plate named {local_plate!r}; "
            f"its plates are {sorted(frames)}. Pass local_plate=<one of these>."
        )
    frame = frames[local_plate]
    sites = {}
    for name, site in trace.iter_stochastic_nodes():
        if site_is_subsample(site):
            continue
        if not any(f.name == local_plate for f in site["cond_indep_stack"]):
            raise ValueError(
                f"AmortizedGuide: latent site {name!r} is outside plate "
                f"{local_plate!r}; the encoder guide covers local sites only "
                "(give global latents their own guide, e.g. with AutoGuideList)."
            )
        unconstrained = biject_to(site["fn"].support).inv(site["value"])
        event_dim = site["fn"].event_dim + unconstrained.dim() - site["value"].dim()
        if unconstrained.dim() - event_dim != -frame.dim:
            raise ValueError(
                f"AmortizedGuide: plate {local_plate!r} must be the leftmost batch "
                f"dimension of site {name!r} (shape {tuple(site['value'].shape)})"
            )
        sites[name] = (site, event_dim, tuple(unconstrained.shape[1:]))
    if not sites:
        raise ValueError(f"AmortizedGuide: no latent site inside plate {local_plate!r}")
    return _LocalSites(trace, frame.full_size or frame.size, frame.size, frame.dim, sites)


def local_site_shapes(
    model: Callable[..., Any], *args: Any, local_plate: str = "data", **kwargs: Any
) -> dict[str, tuple[int, ...]]:
    """Unconstrained per-datapoint shape of each latent site of ``model`` in ``local_plate``.

    What an encoder for :class:`AmortizedGuide` must output per datapoint (e.g. for
    :class:`MLPEncoder`); ``*args, **kwargs`` are the model's.
    """
    sites = _inspect_local_sites(model, local_plate, args, kwargs).sites
    return {name: shape for name, (_, _, shape) in sites.items()}


class AmortizedGuide(torch.nn.Module):
    r"""Encoder guide ``q_φ(z_i | x_i)``, mean-field Normal per local site (math.md §1).

    For every latent site ``z`` inside the plate ``local_plate``,
    ``q_φ(u_i | x_i) = N(u_i; loc_φ(x_i), diag scale_φ(x_i)²)`` in the site's
    unconstrained space (``biject_to(site.support)``), where ``(loc, scale)`` is the
    encoder's output for the plate's current (sub)sample of the data argument. The
    model's ``pyro.plate(local_plate, N, subsample_size=B)`` is reproduced in the
    guide (the subsample size is read from the model at the first call), so the host
    ELBO scales the minibatch by ``N/|B|`` (Kingma & Welling 2014).

    The encoder is registered with ``pyro.module`` at each call (for ``pyro.infer.SVI``)
    and is a submodule (for ``Trace_ELBO()(model, guide)`` + ``torch.optim``).

    Parameters
    ----------
    model : callable
        Pyro model; its latent sites must all lie inside ``local_plate``, whose
        dimension is the leftmost batch dimension of each of them.
    encoder : torch.nn.Module
        ``encoder(x_batch)`` returns ``(loc, scale)`` (one local site) or a dict
        ``site -> (loc, scale)``; shapes ``(B, *unconstrained_event_shape)``, ``scale > 0``.
    local_plate : str
        Name of the data plate.
    data_arg : int or str
        Which model argument holds the data (position or keyword); the plate's
        datapoints are along its dimension 0.
    name : str
        Name under which the encoder's parameters enter Pyro's param store.
    """

    def __init__(
        self,
        model: Callable[..., Any],
        encoder: torch.nn.Module,
        local_plate: str = "data",
        *,
        data_arg: Union[int, str] = 0,
        name: str = "amortized_encoder",
    ):
        super().__init__()
        if not isinstance(encoder, torch.nn.Module):
            raise TypeError(
                f"AmortizedGuide: encoder must be a torch.nn.Module, got {type(encoder).__name__}"
            )
        self.model = model
        self.encoder = encoder
        self.local_plate = local_plate
        self.data_arg = data_arg
        self.name = name
        self.prototype_trace = None
        self.num_data: Optional[int] = None

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        prototype = _inspect_local_sites(self.model, self.local_plate, args, kwargs)
        self.num_data, self._subsample_size = prototype.num_data, prototype.subsample_size
        self._plate_dim, self._sites = prototype.plate_dim, prototype.sites
        self.prototype_trace = prototype.trace

    def _data(self, args: tuple, kwargs: dict) -> torch.Tensor:
        return args[self.data_arg] if isinstance(self.data_arg, int) else kwargs[self.data_arg]

    def encode(self, x_batch: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Validated encoder output ``site -> (loc, scale)`` for ``x_batch`` (``(B, ...)``)."""
        output = self.encoder(x_batch)
        if not isinstance(output, dict):
            if len(self._sites) != 1:
                raise ValueError(
                    f"AmortizedGuide: the model has local sites {sorted(self._sites)}; the "
                    "encoder must return a dict site -> (loc, scale)"
                )
            output = {next(iter(self._sites)): output}
        batch = x_batch.shape[0]
        for name, (_, _, event_shape) in self._sites.items():
            if name not in output:
                raise ValueError(f"AmortizedGuide: encoder output has no entry for site {name!r}")
            loc, scale = output[name]
            core_vae.check_encoder_output(name, loc, scale, (batch, *event_shape))
        return output

    @torch.no_grad()
    def median(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Posterior median ``biject_to(support)(loc_φ(x_i))`` of every local site, for
        all ``N`` datapoints of the data argument (``*args, **kwargs`` are the model's)."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        q_params = self.encode(self._data(args, kwargs))
        return {
            name: biject_to(site["fn"].support)(q_params[name][0])
            for name, (site, _, _) in self._sites.items()
        }

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        pyro.module(self.name, self.encoder)
        data = self._data(args, kwargs)
        result = {}
        with pyro.plate(
            self.local_plate,
            self.num_data,
            subsample_size=self._subsample_size,
            dim=self._plate_dim,
        ) as indices:
            q_params = self.encode(data.index_select(0, indices))
            for name, (site, event_dim, _) in self._sites.items():
                loc, scale = q_params[name]
                base = dist.Normal(loc, scale).to_event(event_dim)
                support = site["fn"].support
                if support is not constraints.real and not (
                    isinstance(support, constraints.independent)
                    and support.base_constraint is constraints.real
                ):
                    base = dist.TransformedDistribution(base, biject_to(support))
                result[name] = pyro.sample(name, base)
        return result


class MLPEncoder(torch.nn.Module):
    """An MLP encoder for :class:`AmortizedGuide`.

    Maps ``x`` of shape ``(B, input_dim)`` (flattened per datapoint) through softplus
    hidden layers to ``{site: (loc, scale)}`` with shapes ``(B, *site_shapes[site])``
    and ``scale = softplus(·) + 1e-4``.
    """

    def __init__(
        self, input_dim: int, site_shapes: dict[str, tuple[int, ...]], hidden: tuple[int, ...] = (64,)
    ):
        super().__init__()
        self.site_shapes = {name: tuple(shape) for name, shape in site_shapes.items()}
        self._sizes = [int(torch.Size(shape).numel()) for shape in self.site_shapes.values()]
        widths = [input_dim, *hidden]
        layers: list[torch.nn.Module] = []
        for n_in, n_out in zip(widths[:-1], widths[1:]):
            layers += [torch.nn.Linear(n_in, n_out), torch.nn.Softplus()]
        self.body = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 2 * sum(self._sizes)))

    def forward(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = self.body(x.reshape(x.shape[0], -1))
        result, start = {}, 0
        for (name, shape), size in zip(self.site_shapes.items(), self._sizes):
            loc = out[:, start : start + size].reshape(-1, *shape)
            raw = out[:, start + size : start + 2 * size].reshape(-1, *shape)
            result[name] = (loc, torch.nn.functional.softplus(raw) + 1e-4)
            start += 2 * size
        return result


def _encode_batch(encoder: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    output = encoder(x)
    if not (isinstance(output, tuple) and len(output) == 2):
        raise ValueError("vae encoder must return a pair (loc, scale) of shape (B, k) each")
    loc, scale = output
    core_vae.check_encoder_output("z", loc, scale, (x.shape[0], loc.shape[-1]))
    return loc, scale


def vae_loss(
    encoder: torch.nn.Module,
    decoder: torch.nn.Module,
    x: torch.Tensor,
    *,
    sigma: float,
    noise: Optional[torch.Tensor] = None,
    num_particles: int = 1,
    num_data: Optional[int] = None,
) -> torch.Tensor:
    r"""Gaussian-VAE negative ELBO of a batch, analytic KL (math.md §1).

    ``Σ_{i∈B} [ E_q ||x_i − f_θ(z)||²/(2σ²) + (D/2) log(2πσ²)
    + KL(q(z|x_i) || N(0,I)) ]``,
    times ``num_data/|B|`` when ``num_data`` is given (a minibatch of ``N`` points);
    the expectation is a mean over ``num_particles`` draws ``z = μ + s ⊙ ε``.

    Parameters
    ----------
    encoder : torch.nn.Module
        ``x (B, D) -> (loc, scale)``, each ``(B, k)``.
    decoder : torch.nn.Module
        ``z (..., k) -> (..., D)``, the mean ``f_θ``.
    x : Tensor, shape ``(B, D)``
    sigma : float
        Fixed decoder standard deviation.
    noise : Tensor, optional
        ``ε`` of shape ``(num_particles, B, k)``; drawn with ``torch.randn`` if omitted.
    num_data : int, optional
        Full data size ``N``.

    Returns
    -------
    scalar Tensor, differentiable in the parameters of both modules.
    """
    loc, scale = _encode_batch(encoder, x)
    if noise is None:
        noise = torch.randn((num_particles, *loc.shape), dtype=loc.dtype, device=loc.device)
    per_point = core_vae.vae_negative_elbo(x, loc, scale, noise, decoder, sigma)
    scale_factor = 1.0 if num_data is None else num_data / x.shape[0]
    return scale_factor * per_point.sum()


class AmortizationGap(NamedTuple):
    """Per-datapoint result of :func:`amortization_gap` (each tensor of shape ``(n,)``).

    ``gap = elbo_optimized − elbo_encoder`` (≥ 0 up to Monte Carlo error); ``iwae`` is
    the k-sample importance-weighted estimate of ``log p(x_i)`` with the optimized
    ``q_ψ*`` as proposal, on the first k of the evaluation draws; ``loc`` and
    ``scale`` (``(n, k)``) are ψ*.
    """

    elbo_encoder: torch.Tensor
    elbo_optimized: torch.Tensor
    gap: torch.Tensor
    iwae: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor


def amortization_gap(
    encoder: torch.nn.Module,
    decoder: torch.nn.Module,
    x: torch.Tensor,
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
    ``num_particles`` fresh draws each; the decoder is held fixed); both ELBOs are
    then evaluated on the same ``max(num_eval_particles, num_importance)`` draws
    (common random numbers), so their difference has little Monte Carlo noise.
    Randomness from torch's global generator (``pyro.set_rng_seed``).

    Parameters
    ----------
    encoder, decoder, sigma
        As for :func:`vae_loss`.
    x : Tensor, shape ``(n, D)``
        Held-out points.
    num_importance : int
        ``k`` of the IWAE estimate.

    Returns
    -------
    AmortizationGap
    """
    with torch.no_grad():
        loc0, scale0 = _encode_batch(encoder, x)
    loc = loc0.clone().requires_grad_(True)
    log_scale = scale0.log().requires_grad_(True)
    optimizer = torch.optim.Adam([loc, log_scale], lr=step_size)
    for _ in tqdm(range(num_steps), desc="amortization gap", disable=not progress_bar):
        noise = torch.randn((num_particles, *loc0.shape), dtype=loc0.dtype)
        loss = core_vae.vae_negative_elbo(x, loc, log_scale.exp(), noise, decoder, sigma).sum()
        # gradients for ψ only: the decoder's .grad stays untouched
        loc.grad, log_scale.grad = torch.autograd.grad(loss, [loc, log_scale])
        optimizer.step()
    with torch.no_grad():
        loc, scale = loc.detach(), log_scale.detach().exp()
        num_draws = max(num_eval_particles, num_importance)
        eval_noise = torch.randn((num_draws, *loc0.shape), dtype=loc0.dtype)
        estimates = core_vae.amortization_gap_estimates(
            x, (loc0, scale0), (loc, scale), eval_noise, decoder, sigma, num_importance
        )
    return AmortizationGap(*estimates, loc, scale)
