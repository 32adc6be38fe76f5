"""A variational diffusion model as a Pyro latent chain, and its analytic ELBO.

Generative model (math.md §2; Kingma, Salimans, Poole, Ho 2021, "Variational Diffusion
Models")::

    z_T ~ N(0, I);  z_{i-1} | z_i ~ p_θ(z_{i-1} | z_i) = q(z_{i-1} | z_i, x = x̂_θ(z_i; γ_i));
    x | z_0 ~ Categorical over K bins (VDM's exact per-pixel decoder),

with site ``z_i`` the latent at time t = i/T, and the guide is the fixed forward
process ``q(z_0 | x) Π_i q(z_i | z_{i-1})``. :class:`DiffusionELBO` replaces the Monte
Carlo estimate of ``Trace_ELBO`` on this pair by the analytic terms (prior KL, per-step KL
on one uniformly drawn step, reconstruction), or by L_∞ in continuous time
(``num_steps=None``); both estimate the same objective.

Example
-------
>>> import torch
>>> from ppl_vi.core import schedules
>>> from ppl_vi.pyro import DiffusionChain, DiffusionELBO
>>> class Eps(torch.nn.Module):
...     def __init__(self):
...         super().__init__(); self.lin = torch.nn.Linear(3, 2)
...     def forward(self, z, gamma):
...         return self.lin(torch.cat([z, gamma[:, None]], -1))
>>> chain = DiffusionChain(Eps(), schedules.linear(), num_steps=4, num_bins=17)
>>> x = torch.randint(0, 17, (8, 2))
>>> DiffusionELBO().loss(chain.model, chain.guide, x) > 0
True
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import is_validation_enabled

from ppl_vi.core import diffusion, schedules
from ppl_vi.core.diffusion import CHAIN_STEPS, DiffusionTerms

__all__ = ["DiffusionChain", "DiffusionELBO"]

MODULE_NAME = "diffusion_chain"


class DiffusionChain(torch.nn.Module):
    """Variational diffusion model (VDM) over K-bin discrete data, as a Pyro program.

    Parameters
    ----------
    denoiser : torch.nn.Module
        ε-prediction network ``denoiser(z, gamma) -> eps_hat`` with shapes
        (B, D), (B,) -> (B, D); x̂ = (z − σ_t ε̂)/a_t.
    schedule : ppl_vi.core.schedules.Schedule
        ``schedules.linear(...)``, ``cosine(...)`` or ``learned(...)`` (trained with the
        denoiser).
    num_steps : int or None
        T of the discrete-time model; None for continuous time (L_∞). The program
        (``model``, ``guide``, ``sample``) of a continuous chain is written out with
        1000 steps unless ``num_steps`` is given to those methods.
    num_bins : int
        K: data are integer bin indices in {0, ..., K − 1}, mapped to bin centres in (−1, 1).
    num_dims : int, optional
        D; taken from the first data seen if omitted (``sample`` needs it).
    """

    def __init__(self, denoiser: torch.nn.Module, schedule: schedules.Schedule,
                 num_steps: int | None = None, *, num_bins: int = 256,
                 num_dims: int | None = None):
        super().__init__()
        if not callable(denoiser):
            raise TypeError(f"denoiser must be callable (z, gamma) -> eps_hat; got {denoiser!r}")
        self.num_steps = diffusion.check_chain_arguments(schedule, num_steps, num_bins, num_dims)
        self.denoiser, self.schedule = denoiser, schedule
        self.num_bins, self.num_dims = num_bins, num_dims
        dtype = torch.get_default_dtype()
        values = {k: torch.as_tensor(v, dtype=dtype) for k, v in schedule.params.items()}
        if schedule.learnable:
            self.schedule_params = torch.nn.ParameterDict(
                {k: torch.nn.Parameter(v) for k, v in values.items()})
        else:
            for name, value in values.items():
                self.register_buffer(f"schedule_{name}", value)
        self._boundary_cache: tuple | None = None

    def _schedule_params(self) -> dict:
        if self.schedule.learnable:
            return dict(self.schedule_params.items())
        return {k: getattr(self, f"schedule_{k}") for k in self.schedule.params}

    def gamma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """γ(t) and γ'(t) under the current schedule parameters."""
        return schedules.gamma_and_derivative(t, self.schedule, self._schedule_params())

    def boundary(self) -> diffusion.BoundaryConstants:
        """Constants of the reconstruction and prior terms at the current γ(0), γ(1).

        For a fixed schedule they are computed once and reused while the schedule buffers
        are the same tensors, unmodified (``.to()``, ``load_state_dict`` recompute them).
        """
        params = self._schedule_params()
        if self.schedule.learnable:
            return diffusion.boundary_constants(*schedules.gamma_endpoints(params), self.num_bins)
        buffers = tuple(params.values())
        versions = tuple(b._version for b in buffers)
        cache = self._boundary_cache
        if cache is None or versions != cache[1] or any(a is not b for a, b in zip(buffers, cache[0])):
            with torch.no_grad():
                constants = diffusion.boundary_constants(*schedules.gamma_endpoints(params), self.num_bins)
            self._boundary_cache = cache = (buffers, versions, constants)
        return cache[2]

    def _check(self, x: torch.Tensor) -> None:
        diffusion.check_data(x, self.num_bins, self.num_dims, check_range=is_validation_enabled())
        self.num_dims = x.shape[1]

    def _gammas(self, steps: int) -> torch.Tensor:
        return self.gamma(torch.linspace(0.0, 1.0, steps + 1))[0]

    def model(self, x: torch.Tensor | None = None, num_samples: int | None = None,
              num_steps: int | None | str = CHAIN_STEPS) -> torch.Tensor:
        """The generative chain z_T → … → z_0 → x; returns x (observed or sampled)."""
        steps = diffusion.resolve_steps(num_steps, self.num_steps, program=True)
        if x is not None:
            self._check(x)
        batch = diffusion.program_batch_size(x, num_samples, self.num_dims)
        pyro.module(MODULE_NAME, self)
        g = self._gammas(steps)
        with pyro.plate("data", batch):
            z = pyro.sample(f"z_{steps}", dist.Normal(torch.zeros(batch, self.num_dims), 1.0).to_event(1))
            for i in range(steps, 0, -1):
                eps_hat = self.denoiser(z, g[i].expand(batch))
                loc, scale = diffusion.reverse_step_eps(z, eps_hat, g[i - 1], g[i])
                z = pyro.sample(f"z_{i - 1}", dist.Normal(loc, scale.expand_as(loc)).to_event(1))
            logits = diffusion.decoder_logits(z, self.boundary())
            return pyro.sample("x", dist.Categorical(logits=logits).to_event(1), obs=x)

    def guide(self, x: torch.Tensor, num_samples: int | None = None,
              num_steps: int | None | str = CHAIN_STEPS) -> None:
        """The fixed forward process q(z_0 | x) Π_i q(z_i | z_{i-1})."""
        steps = diffusion.resolve_steps(num_steps, self.num_steps, program=True)
        self._check(x)
        pyro.module(MODULE_NAME, self)
        g, boundary = self._gammas(steps), self.boundary()
        x_value = diffusion.bin_values(x, self.num_bins, g)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z_0", dist.Normal(boundary.alpha_0 * x_value, boundary.sigma_0)
                            .expand(x_value.shape).to_event(1))
            for i in range(1, steps + 1):
                loc, scale = diffusion.forward_step(z, g[i - 1], g[i])
                z = pyro.sample(f"z_{i}", dist.Normal(loc, scale.expand_as(loc)).to_event(1))

    def loss_terms(self, x: torch.Tensor, u: torch.Tensor, eps: torch.Tensor, eps_0: torch.Tensor,
                   num_steps: int | None | str = CHAIN_STEPS) -> DiffusionTerms:
        """Negative-ELBO terms per datum (nats) for given noise; see
        :func:`ppl_vi.core.diffusion.negative_elbo_terms`."""
        self._check(x)
        return diffusion.negative_elbo_terms(
            x, u, eps, eps_0, self.denoiser, self.gamma, self.boundary(),
            diffusion.resolve_steps(num_steps, self.num_steps))

    def draw_terms(self, x: torch.Tensor, num_steps: int | None | str = CHAIN_STEPS) -> DiffusionTerms:
        """:meth:`loss_terms` with fresh noise (torch RNG; low-discrepancy times as in VDM)."""
        batch = x.shape[0]
        u = torch.remainder(torch.rand(()) + torch.arange(batch) / batch, 1.0)
        eps, eps_0 = torch.randn(2, batch, x.shape[1])
        return self.loss_terms(x, u, eps, eps_0, num_steps)

    @torch.no_grad()
    def bpd_terms(self, x: torch.Tensor, num_steps: int | None | str = CHAIN_STEPS,
                  num_particles: int = 1) -> DiffusionTerms:
        """Mean reconstruction / prior / diffusion terms in bits per dimension."""
        draws = [diffusion.to_bits_per_dim(self.draw_terms(x, num_steps), x.shape[1])
                 for _ in range(num_particles)]
        return DiffusionTerms(*(torch.stack([d[k] for d in draws]).mean() for k in range(3)))

    def bpd(self, x: torch.Tensor, num_steps: int | None | str = CHAIN_STEPS,
            num_particles: int = 1) -> torch.Tensor:
        """Negative ELBO in bits per dimension, averaged over ``x`` (Monte Carlo estimate)."""
        return self.bpd_terms(x, num_steps, num_particles).total

    @torch.no_grad()
    def sample(self, num_samples: int, num_steps: int | None | str = CHAIN_STEPS) -> torch.Tensor:
        """Ancestral samples of x (bin indices), shape (num_samples, num_dims)."""
        return self.model(None, num_samples, num_steps)


class DiffusionELBO(ELBO):
    """Analytic negative ELBO of a :class:`DiffusionChain` (VDM's estimator).

    ``−ELBO(x) = KL(q(z_1|x) || N(0, I)) + L_T(x) − E_q log p(x | z_0)`` with
    ``L_T = T E_i[½ (SNR(s_i) − SNR(t_i)) ||x − x̂||²]`` (one uniformly drawn step per datum)
    or L_∞ in continuous time. Like ``TraceMeanField_ELBO`` it replaces Monte Carlo terms
    of ``Trace_ELBO`` by exact ones; both are unbiased for the same objective. Takes
    ``(chain.model, chain.guide)`` and returns the sum over the batch (Pyro's convention).
    """

    def _get_trace(self, model, guide, args, kwargs):
        """Traces of the written-out program, as ``Trace_ELBO`` sees it (for inspection)."""
        _chain_of(model, guide)
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def _terms(self, model, guide, *args, **kwargs) -> torch.Tensor:
        chain = _chain_of(model, guide)
        x = args[0] if args else kwargs["x"]
        pyro.module(MODULE_NAME, chain)
        num_steps = kwargs.get("num_steps", CHAIN_STEPS)
        if self.num_particles == 1:
            return chain.draw_terms(x, num_steps).total.sum()
        totals = [chain.draw_terms(x, num_steps).total.sum() for _ in range(self.num_particles)]
        return torch.stack(totals).mean()

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        return self._terms(model, guide, *args, **kwargs)

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return float(self._terms(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self._terms(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


def _chain_of(model, guide) -> DiffusionChain:
    chain = getattr(model, "__self__", None)
    if not isinstance(chain, DiffusionChain) or getattr(guide, "__self__", None) is not chain:
        raise TypeError("DiffusionELBO needs the model and guide of one DiffusionChain "
                        f"(chain.model, chain.guide); got {model!r} and {guide!r}")
    return chain

