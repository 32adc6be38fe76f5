"""Stochastic VI with per-datapoint (local) variational parameters, for NumPyro.

:class:`LocalGuide` is NumPyro's :class:`~numpyro.infer.autoguide.AutoNormal` bound to a
named data plate: the checks, names and accessors of math.md §1's stochastic VI on top
of the host guide, which already stores full-size parameters and gathers them by the
plate's subsample indices.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax.numpy as jnp
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.initialization import init_to_median

__all__ = ["LocalGuide"]


class LocalGuide(AutoNormal):
    r"""Mean-field Normal guide with one factor ψ_i per datapoint of a data plate.

    For data ``x_1..x_N`` with local latents ``z_i`` (sites inside the plate named
    ``local_plate``) and global latents ``θ`` (all other latent sites), the guide is

    .. math:: q(θ, z) = \prod_g N(u_g; m_g, s_g^2) \prod_{i=1}^N \prod_l N(u_{il}; m_{il}, s_{il}^2)

    in the unconstrained space of each site (``biject_to(site.support)``). With the
    model's ``plate(local_plate, N, subsample_size=B)`` the host ELBO estimates the
    full-data objective ``global terms + (N/|B|) Σ_{i∈B} ELBO_i`` (Hoffman et al. 2013;
    math.md §1): the guide gathers ``ψ_B = (m_i, s_i)_{i∈B}`` by the plate's indices, so
    the gradient with respect to ``ψ_j`` is exactly zero for ``j ∉ B``. (Stateful
    optimizers such as Adam still move ``ψ_j`` by their momentum; ``optax.sgd`` does not.)

    Parameters
    ----------
    model : callable
        A NumPyro model with a plate named ``local_plate`` of full size ``num_data``.
    local_plate : str
        Name of the data plate whose latent sites get per-datapoint factors.
    num_data : int
        ``N``, the full size of that plate (checked against the model).
    prefix : str
        Prefix of the parameter names, ``"{site}_{prefix}_loc"`` / ``"_scale"``.
    init_loc_fn : callable
        NumPyro init strategy of the unconstrained locations (default median of prior).
    init_scale : float
        Initial unconstrained standard deviation.
    create_plates : callable, optional
        As for AutoNormal: ``(*args, **kwargs) -> plate`` when the model subsamples
        with indices passed as an argument (``plate(..., subsample=idx)``).

    Examples
    --------
    >>> guide = LocalGuide(model, local_plate="data", num_data=1000)
    >>> svi = numpyro.infer.SVI(model, guide, optax.adam(1e-2), Trace_ELBO())
    """

    def __init__(
        self,
        model: Callable[..., Any],
        local_plate: str = "data",
        num_data: Optional[int] = None,
        *,
        prefix: str = "local",
        init_loc_fn: Callable[..., Any] = init_to_median,
        init_scale: float = 0.1,
        create_plates: Optional[Callable[..., Any]] = None,
    ):
        if num_data is not None and (int(num_data) != num_data or num_data < 1):
            raise ValueError(f"LocalGuide: num_data must be a positive integer, got {num_data!r}")
        self.local_plate = local_plate
        self.num_data = num_data
        self.local_sites: tuple[str, ...] = ()
        self.global_sites: tuple[str, ...] = ()
        super().__init__(
            model,
            prefix=prefix,
            init_loc_fn=init_loc_fn,
            init_scale=init_scale,
            create_plates=create_plates,
        )

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        plate_sizes = self._prototype_frame_full_sizes
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
        latent = [
            (name, site)
            for name, site in self.prototype_trace.items()
            if site["type"] == "sample" and not site["is_observed"]
        ]
        self.local_sites = tuple(
            name
            for name, site in latent
            if any(frame.name == self.local_plate for frame in site["cond_indep_stack"])
        )
        self.global_sites = tuple(name for name, _ in latent if name not in self.local_sites)

    def local_params(
        self, params: dict, indices: Optional[Any] = None
    ) -> dict[str, tuple[jnp.ndarray, jnp.ndarray]]:
        """Unconstrained ``(loc, scale)`` of each local site, rows ``indices`` of the plate.

        Parameters
        ----------
        params : dict
            ``svi.get_params(state)`` (constrained parameter values).
        indices : array of int, optional
            Datapoints to return (all ``N`` if omitted).

        Returns
        -------
        dict
            Site name -> ``(loc, scale)``, each with the plate's dimension first
            among the batch dimensions, restricted to ``indices``.
        """
        if self.prototype_trace is None:
            raise RuntimeError("LocalGuide.local_params: call the guide (or SVI.init) first")
        frame_dim = self._prototype_frames[self.local_plate].dim
        result = {}
        for name in self.local_sites:
            axis = frame_dim - self._event_dims[name]
            loc = params[f"{name}_{self.prefix}_loc"]
            scale = params[f"{name}_{self.prefix}_scale"]
            if indices is not None:
                loc = jnp.take(loc, jnp.asarray(indices), axis=axis)
                scale = jnp.take(scale, jnp.asarray(indices), axis=axis)
            result[name] = (loc, scale)
        return result
