"""Stochastic VI with per-datapoint (local) variational parameters, for Pyro.

:class:`LocalGuide` is Pyro's :class:`~pyro.infer.autoguide.AutoNormal` bound to a
named data plate: the checks, names and accessors of math.md §1's stochastic VI on top
of the host guide, which already stores full-size parameters and gathers them by the
plate's subsample indices. Its ``forward`` samples each site from its Normal factor
directly (as NumPyro's AutoNormal does), which is leaner per step.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Callable, Optional

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import init_to_median
from torch.distributions import biject_to

__all__ = ["LocalGuide"]


def _unconstraining(support) -> Optional[torch.distributions.transforms.Transform]:
    """``biject_to(support)``, or ``None`` for real supports (no transform needed)."""
    base = support.base_constraint if isinstance(support, constraints.independent) else support
    return None if base is constraints.real else biject_to(support)


class LocalGuide(AutoNormal):
    r"""Mean-field Normal guide with one factor ψ_i per datapoint of a data plate.

    For data ``x_1..x_N`` with local latents ``z_i`` (sites inside the plate named
    ``local_plate``) and global latents ``θ`` (all other latent sites), the guide is

    .. math:: q(θ, z) = \prod_g N(u_g; m_g, s_g^2) \prod_{i=1}^N \prod_l N(u_{il}; m_{il}, s_{il}^2)

    in the unconstrained space of each site (``biject_to(site.support)``). With the
    model's ``pyro.plate(local_plate, N, subsample_size=B)`` the host ELBO estimates the
    full-data objective ``global terms + (N/|B|) Σ_{i∈B} ELBO_i`` (Hoffman et al. 2013;
    math.md §1): the guide gathers ``ψ_B = (m_i, s_i)_{i∈B}`` by the plate's indices, so
    the gradient with respect to ``ψ_j`` is exactly zero for ``j ∉ B``. (Stateful
    optimizers such as Adam still move ``ψ_j`` by their momentum; SGD does not.)

    Works with ``pyro.infer.SVI`` (``pyro.optim``) and with ``Trace_ELBO()(model,
    guide)`` + ``torch.optim`` (the guide is an ``nn.Module``; call it once first so
    its parameters exist). Posterior draws through ``pyro.infer.Predictive``.

    Parameters
    ----------
    model : callable
        A Pyro model with a plate named ``local_plate`` of full size ``num_data``.
    local_plate : str
        Name of the data plate whose latent sites get per-datapoint factors.
    num_data : int
        ``N``, the full size of that plate (checked against the model).
    init_loc_fn : callable
        Pyro init strategy of the locations (default: prior median).
    init_scale : float
        Initial unconstrained standard deviation.
    create_plates : callable, optional
        As for AutoNormal: ``(*args, **kwargs) -> plate`` when the model subsamples
        with indices passed as an argument (``plate(..., subsample=idx)``).

    Examples
    --------
    >>> guide = LocalGuide(model, local_plate="data", num_data=1000)
    >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    """

    def __init__(
        self,
        model: Callable[..., Any],
        local_plate: str = "data",
        num_data: Optional[int] = None,
        *,
        init_loc_fn: Callable[..., Any] = init_to_median,
        init_scale: float = 0.1,
        create_plates: Optional[Callable[..., Any]] = None,
    ):
        if num_data is not None and (int(num_data) != num_data or num_data < 1):
            raise ValueError(f"LocalGuide: num_data must be a positive integer, got {num_data!r}")
        super().__init__(
            model,
            init_loc_fn=init_loc_fn,
            init_scale=float(init_scale),
            create_plates=create_plates,
        )
        self.local_plate = local_plate
        self.num_data = num_data
        self.local_sites: tuple[str, ...] = ()
        self.global_sites: tuple[str, ...] = ()

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        plate_sizes = {
            frame.name: frame.full_size or frame.size
            for _, site in self.prototype_trace.nodes.items()
            if site["type"] == "sample"
            for frame in site["cond_indep_stack"]
        }
        if self.local_plate not in plate_sizes:
            raise ValueError(
                f"LocalGuide: the model has no plate named {self.local_plate!r}; "
                f"its plates are {sorted(plate_sizes)}. Pass local_plate=<one of these>."
            )
        full_size = plate_sizes[self.local_plate]
        if self.num_data is None:
            self.num_data = full_size
        elif full_size != self.num_data:
            raise ValueError(
                f"LocalGuide: plate {self.local_plate!r} has full size {full_size} in the "
                f"model but num_data={self.num_data} was given; they must be equal."
            )
        latent = list(self.prototype_trace.iter_stochastic_nodes())
        self.local_sites = tuple(
            name
            for name, site in latent
            if any(frame.name == self.local_plate for frame in site["cond_indep_stack"])
        )
        self.global_sites = tuple(name for name, _ in latent if name not in self.local_sites)
        self._site_plan = [
            (
                name,
                [frame.name for frame in site["cond_indep_stack"] if frame.vectorized],
                _unconstraining(site["fn"].support),
            )
            for name, site in latent
        ]

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Sample every latent site from its factor; local factors gathered by the plate.

        Unlike the parent AutoNormal, a real-valued site is sampled from the Normal
        factor itself (no auxiliary site), so ``TraceMeanField_ELBO`` finds an analytic
        KL and each step does less bookkeeping; constrained sites use a
        ``TransformedDistribution`` through ``biject_to(support)``.
        """
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs)
        result = {}
        for name, plate_names, transform in self._site_plan:
            with ExitStack() as stack:
                for plate_name in plate_names:
                    stack.enter_context(plates[plate_name])
                loc, scale = self._get_loc_and_scale(name)
                factor = dist.Normal(loc, scale).to_event(self._event_dims[name])
                if transform is not None:
                    factor = dist.TransformedDistribution(factor, transform)
                result[name] = pyro.sample(name, factor)
        return result

    @torch.no_grad()
    def local_params(
        self, indices: Optional[torch.Tensor] = None
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Unconstrained ``(loc, scale)`` of each local site, rows ``indices`` of the plate.

        Parameters
        ----------
        indices : LongTensor, optional
            Datapoints to return (all ``N`` if omitted).

        Returns
        -------
        dict
            Site name -> ``(loc, scale)`` (detached), with the plate's dimension first
            among the batch dimensions, restricted to ``indices``.
        """
        if self.prototype_trace is None:
            raise RuntimeError("LocalGuide.local_params: call the guide (or SVI.step) first")
        frame_dim = self._prototype_frames[self.local_plate].dim
        result = {}
        for name in self.local_sites:
            loc, scale = self._get_loc_and_scale(name)
            loc, scale = loc.detach(), scale.detach()
            if indices is not None:
                axis = frame_dim - self._event_dims[name]
                loc = loc.index_select(axis, indices)
                scale = scale.index_select(axis, indices)
            result[name] = (loc, scale)
        return result
