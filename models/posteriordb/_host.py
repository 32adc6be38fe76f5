"""Host pieces that :mod:`pyroapi` does not route: flat priors and deterministic sites.

**Flat priors.** Stan's implicit prior is an improper flat density on a parameter's support.

A Stan parameter with no sampling statement (``vector[2] beta;``,
``real<lower=0> sigma;``) has the improper prior ``p(θ) ∝ 1`` on its declared support.
Both hosts have this distribution, ``ImproperUniform(support, batch_shape, event_shape)``
(``log_prob`` is 0, the support drives the unconstraining bijection), so the port is
exact. The hosts' ``ImproperUniform.sample`` raises, which would stop a plain
``trace(seed(model))``; the subclasses here return instead a point drawn like NumPyro's
``init_to_uniform`` (uniform on ``(-2, 2)`` in the unconstrained space, mapped onto the
support). Such a point is **not** a prior draw — an improper prior has none — it only
lets the program run unconditioned (tracing, initialisation); densities are unchanged.

**Deterministic sites.** NumPyro's pyroapi shim has no ``pyro.deterministic``;
:func:`deterministic` calls the host's own.
"""

from __future__ import annotations

import functools

from pyroapi import distributions as dist

_RADIUS = 2.0


def flat_prior(support: str, event_shape: tuple[int, ...] = ()):
    """The improper flat prior on ``dist.constraints.<support>`` for the current backend.

    Parameters
    ----------
    support : {"real", "positive"}
        Stan's declaration: unconstrained, or ``<lower=0>``.
    event_shape : tuple of int
        Shape of the parameter, e.g. ``(k,)`` for ``vector[k]``.

    Returns
    -------
    Distribution
        A Pyro or NumPyro ``ImproperUniform`` subclass instance with batch shape ``()``.
    """
    if support not in ("real", "positive"):
        raise ValueError(
            f"flat_prior: support {support!r} is not supported; expected 'real' or 'positive'"
        )
    cls = {"numpyro": _numpyro_class, "pyro": _pyro_class}[_host()]()
    return cls(getattr(dist.constraints, support), (), tuple(event_shape))


def deterministic(name: str, value):
    """Record ``value`` as the deterministic site ``name`` in the current backend; return it."""
    if _host() == "numpyro":
        import numpyro

        return numpyro.deterministic(name, value)
    import pyro

    return pyro.deterministic(name, value)


def _host() -> str:
    """``"numpyro"`` or ``"pyro"``: the library :mod:`pyroapi` routes to now."""
    return dist.Normal.__module__.split(".")[0]


@functools.cache
def _numpyro_class():
    import jax
    import numpyro.distributions as nd

    class TraceableImproperUniform(nd.ImproperUniform):
        """NumPyro ``ImproperUniform`` whose ``sample`` gives an initialisation point."""

        def sample(self, key, sample_shape=()):
            transform = nd.biject_to(self.support)
            shape = transform.inverse_shape(
                tuple(sample_shape) + self.batch_shape + self.event_shape
            )
            return transform(
                jax.random.uniform(key, shape, minval=-_RADIUS, maxval=_RADIUS)
            )

    return TraceableImproperUniform


@functools.cache
def _pyro_class():
    import pyro.distributions as pd
    import torch

    class TraceableImproperUniform(pd.ImproperUniform):
        """Pyro ``ImproperUniform`` whose ``sample`` gives an initialisation point."""

        def sample(self, sample_shape=()):
            transform = pd.transforms.biject_to(self.support)
            shape = transform.inverse_shape(
                torch.Size(sample_shape) + self.batch_shape + self.event_shape
            )
            return transform((torch.rand(shape) * 2 - 1) * _RADIUS)

    return TraceableImproperUniform
