"""Derive a CAVI :class:`~ppl_vi.core.cavi_objective.Plan` from a program, or refuse.

The host adapter gives ``run(values, seed) -> {site: SiteInfo}``: the program run with
the latent sites in ``values`` substituted (NumPy arrays; discrete sites get their
enumerated support), each site reported with its family, its parameters (NumPy) and
its plate scale. :func:`build_plan` runs it a few times per latent site and classifies
every parameter of every site with :mod:`ppl_vi.core.cavi_probe`; a latent whose
family, or whose use by a child, has no conjugate update is refused *before* any
iteration, with an error naming the site, its prior, the child and what is supported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ppl_vi.core import conjugate
from ppl_vi.core.cavi_objective import Dependency, LatentSpec, Plan, Term
from ppl_vi.core.cavi_probe import changed, detect_dense, detect_gather, max_abs, probe_value

__all__ = ["SiteInfo", "build_plan", "SUPPORTED", "q_family_of", "host_attributes"]

SUPPORTED = (
    "latent priors Normal (scalar, or with event dims as one Gaussian block), MultivariateNormal, "
    "Gamma, Exponential, Beta, Dirichlet, Wishart, and enumerated Categorical/Bernoulli; "
    "conjugate uses: Normal/MultivariateNormal loc (gathered or affine), Normal precision 1/scale^2 "
    "and MultivariateNormal precision_matrix (a constant times a Gamma or Wishart latent), "
    "Gamma/Poisson/Exponential rate (a constant times a Gamma latent), Bernoulli/Binomial probs "
    "(Beta), Categorical/Multinomial probs (Dirichlet)"
)

# (role, q family) -> how to detect the dependency
_FEEDS = {
    ("real", "Normal"): "gather",
    ("real", "MultivariateNormal"): "dense",
    ("vector", "MultivariateNormal"): "gather+dense",
    ("precision", "Gamma"): "gather",
    ("positive", "Gamma"): "gather",
    ("precision_matrix", "Wishart"): "gather",
    ("precision_matrix", "Gamma"): "gather",
    ("unit", "Beta"): "gather",
    ("simplex", "Dirichlet"): "gather",
}
_LATENT_ATOM = {"Normal": 0, "Gamma": 0, "Beta": 0, "MultivariateNormal": 1, "Dirichlet": 1, "Wishart": 2}


# canonical parameter -> attribute of the host distribution object; the two hosts name
# every parameter alike except Wishart's
_HOST_ATTRS = {
    "Normal": {"loc": "loc", "scale": "scale"},
    "MultivariateNormal": {"loc": "loc", "precision_matrix": "precision_matrix"},
    "Gamma": {"concentration": "concentration", "rate": "rate"},
    "Exponential": {"rate": "rate"},
    "Poisson": {"rate": "rate"},
    "Beta": {"concentration1": "concentration1", "concentration0": "concentration0"},
    "Bernoulli": {"probs": "probs"},
    "Binomial": {"total_count": "total_count", "probs": "probs"},
    "Dirichlet": {"concentration": "concentration"},
    "Categorical": {"probs": "probs"},
    "Multinomial": {"total_count": "total_count", "probs": "probs"},
}
_WISHART_ATTRS = {
    "numpyro": {"df": "concentration", "scale_matrix": "scale_matrix"},
    "pyro": {"df": "df", "scale_matrix": "covariance_matrix"},
}


def host_attributes(backend: str) -> dict:
    """Family -> {canonical parameter: attribute of the ``backend`` distribution object}."""
    if backend not in _WISHART_ATTRS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {sorted(_WISHART_ATTRS)}")
    return {**_HOST_ATTRS, "Wishart": _WISHART_ATTRS[backend]}


@dataclass
class SiteInfo:
    """One sample site as the adapter read it (NumPy arrays).

    ``family`` is the canonical name (``"Normal"``, ...) or the host class name when
    unsupported; ``params`` uses the canonical names of :data:`conjugate.PARAM_ROLES`
    (``Normal`` ``scale`` is reported as is). ``reinterpreted_ndims`` counts
    ``to_event`` dimensions; ``scale`` includes any mask; ``log_prob`` is the site's
    scaled log-density sum (used for constant sites of unsupported families);
    ``plates`` are the ``(name, dim)`` of its vectorized plates (``dim`` negative).
    """

    name: str
    family: str
    params: dict
    value: np.ndarray
    observed: bool
    batch_shape: tuple
    event_shape: tuple
    reinterpreted_ndims: int = 0
    scale: Any = 1.0
    plates: tuple = ()
    support_size: Optional[int] = None
    log_prob: float = 0.0


_EVENT_NDIM = {"MultivariateNormal": 1, "Dirichlet": 1, "Wishart": 2}


def q_family_of(site: SiteInfo) -> Optional[str]:
    """The variational family CAVI gives a latent site, or ``None`` if unsupported.

    A Normal site with one event dimension (``Normal(...).expand([D]).to_event(1)``)
    gets one Gaussian block, ``MultivariateNormal`` over its event: the complete
    conditional of a ``to_event`` site is jointly Gaussian (e.g. regression weights).
    """
    fam, event_ndim = site.family, len(site.event_shape)
    if fam == "Normal":
        return {0: "Normal", 1: "MultivariateNormal"}.get(event_ndim)
    if fam == "Exponential":
        return "Gamma" if event_ndim == 0 else None
    if fam in ("MultivariateNormal", "Gamma", "Beta", "Dirichlet", "Wishart", "Categorical", "Bernoulli"):
        return fam if event_ndim == _EVENT_NDIM.get(fam, 0) else None
    return None


def _refuse(latent: SiteInfo, child: str, what: str, backend: str) -> None:
    fallback = "numpyro.infer.SVI with an AutoNormal guide" if backend == "numpyro" else "pyro.infer.SVI with an AutoNormal guide"
    raise NotImplementedError(
        f"CAVI cannot update site {latent.name!r}: prior {latent.family} has no conjugate update "
        f"with its child {child!r} ({what}). Supported: {SUPPORTED}. "
        f"Use SVI for this site (e.g. {fallback})."
    )


def _enumerated(size: int, enum_dim: int) -> np.ndarray:
    return np.arange(size).reshape((size,) + (1,) * (-enum_dim - 1))


def _param(site: SiteInfo, name: str, role: str) -> np.ndarray:
    value = np.asarray(site.params[name], dtype=float)
    return value**-2.0 if role == "precision" else value


def build_plan(
    run: Callable[[Optional[dict], int], dict],
    rng: np.random.Generator,
    to_backend: Callable[[np.ndarray], Any],
    backend: str,
) -> tuple[Plan, dict]:
    """Probe the program and build its CAVI plan.

    Parameters
    ----------
    run : callable
        ``run(values, seed) -> dict`` name -> :class:`SiteInfo`, sites in program order;
        ``values=None`` puts every latent at a random valid point (with ``seed``).
    rng : numpy.random.Generator
        Source of probe values (seeded by the caller).
    to_backend : callable
        NumPy array -> host array (float64 for floats, integer kept).
    backend : {"numpyro", "pyro"}
        For the error message's SVI pointer.

    Returns
    -------
    plan : Plan
    base : dict
        Name -> NumPy value of every continuous latent in a prior draw (a start).
    """
    prior = run(None, 0)
    nesting = max([-dim for s in prior.values() for _, dim in s.plates] + [0])
    latent_sites = [s for s in prior.values() if not s.observed]
    specs: dict[str, LatentSpec] = {}
    values: dict[str, np.ndarray] = {}
    unsupported: list[SiteInfo] = []
    num_discrete = 0
    for site in latent_sites:
        q_family = q_family_of(site)
        scale = np.asarray(site.scale, dtype=float)
        if not np.all(scale > 0.0):
            raise ValueError(
                f"CAVI: latent site {site.name!r} is scaled by {float(np.min(scale)):g} (handlers.scale or a mask); "
                "each entry of a latent site's factor must count a positive number of times. To leave data out, "
                "mask or scale the observed site instead."
            )
        if q_family in ("Categorical", "Bernoulli"):
            size = 2 if q_family == "Bernoulli" else int(site.support_size)
            enum_dim = -(nesting + 1 + num_discrete)
            num_discrete += 1
            specs[site.name] = LatentSpec(
                site.name, q_family, site.family, site.value.shape, site.batch_shape, to_backend(scale), enum_dim, size, tuple(site.plates)
            )
            values[site.name] = _enumerated(size, enum_dim)
            continue
        if q_family is None:
            unsupported.append(site)
        else:
            specs[site.name] = LatentSpec(site.name, q_family, site.family, site.value.shape, site.batch_shape, to_backend(scale), plates=tuple(site.plates))
        values[site.name] = np.asarray(site.value, dtype=float)
    base = run(values, 0)
    probes: dict[str, list] = {}
    for site in latent_sites:
        if site.name in specs and specs[site.name].discrete:
            continue
        q_family = specs[site.name].q_family if site.name in specs else None
        z = [values[site.name]] + [probe_value(q_family, values[site.name], rng) for _ in range(3)]
        probes[site.name] = (z, [base] + [run({**values, site.name: zk}, 0) for zk in z[1:]])
    for site in unsupported:
        z, runs = probes[site.name]
        children = [
            (child, pname)
            for child, info in base.items()
            for pname in info.params
            if child in runs[1] and pname in runs[1][child].params and changed(np.asarray(info.params[pname]), np.asarray(runs[1][child].params[pname]))
        ]
        child, pname = children[0] if children else ("(none)", "no child")
        what = f"{base[child].family} {pname}" if children else "no supported family"
        _refuse(site, child, what, backend)
    dense_cache: dict[str, list] = {}
    terms = []
    constant = 0.0
    for site in base.values():
        roles = conjugate.PARAM_ROLES.get(site.family)
        deps = {}
        if roles is not None:
            for pname, role in roles.items():
                deps[pname] = _dependency(site, pname, role, specs, probes, run, values, dense_cache, prior, to_backend, backend)
        if roles is None or (site.name in specs and q_family_of(site) is None):
            owners = [n for n, (_, runs) in probes.items() if any(changed(np.asarray(v), np.asarray(runs[1][site.name].params.get(k, v))) for k, v in site.params.items())]
            if owners or not site.observed:
                _refuse(prior[owners[0]] if owners else site, site.name, f"{site.family} site", backend)
            constant += float(site.log_prob)
            continue
        if site.observed:
            value = ("observed", _on_backend(conjugate.observed_stats(site.family, np.asarray(site.value)), to_backend))
        elif specs[site.name].discrete:
            value = ("enumerated", (to_backend(values[site.name]),))
        else:
            value = ("latent", site.name)
        batch = tuple(site.batch_shape)
        if value[0] == "enumerated":
            batch = np.broadcast_shapes(batch, values[site.name].shape)
        scale = to_backend(np.asarray(site.scale, dtype=float))
        terms.append(Term(site.name, site.family, deps, value, batch, site.reinterpreted_ndims, scale, tuple(site.plates)))
    continuous = tuple(n for n in specs if not specs[n].discrete)
    discrete = tuple(n for n in specs if specs[n].discrete)
    plan = Plan(specs, tuple(terms), constant, continuous + discrete)
    return plan, {n: values[n] for n in continuous}


def _dependency(site, pname, role, specs, probes, run, values, dense_cache, prior, to_backend, backend) -> Dependency:
    reading0 = _param(site, pname, role)
    owners = [n for n, (_, runs) in probes.items() if any(changed(reading0, _param(r[site.name], pname, role)) for r in runs[1:])]
    if not owners:
        moments = _on_backend(conjugate.const_moments(role, np.asarray(site.params[pname], dtype=float), index_dtype=np.int64), to_backend)
        return Dependency(role, "const", moments=moments, shape=reading0.shape)
    latent = owners[0]
    what = f"{site.family} {pname}"
    if len(owners) > 1:
        _refuse(prior[owners[1]], site.name, f"{what} depends on several latent sites", backend)
    spec = specs[latent]
    how = _FEEDS.get((role, spec.q_family))
    if how is None:
        _refuse(prior[latent], site.name, what, backend)
    z, runs = probes[latent]
    readings = [_param(r[site.name], pname, role) for r in runs]
    p_atom = conjugate.ROLE_ATOM_NDIM[role]
    gathered = detect_gather(readings, z, p_atom, _LATENT_ATOM[spec.q_family]) if "gather" in how else None
    if gathered is not None and _acceptable(role, spec.q_family, gathered, max_abs(reading0)):
        coef = np.asarray(gathered.coef, dtype=float)
        log_coef = None
        if role == "precision_matrix" and spec.q_family == "Gamma":
            log_coef = to_backend(np.linalg.slogdet(coef)[1])
        # only locations have an offset (``_acceptable`` checked that the others' is 0, to
        # 1e-8 of the parameter's magnitude): a topic model's probabilities are data x
        # topics, whose zero offsets are not copied to the device
        offset = to_backend(gathered.offset) if role in ("real", "vector") else None
        return Dependency(
            role, "gather", latent, index=to_backend(gathered.index), coef=to_backend(coef), offset=offset,
            log_coef=log_coef, shape=reading0.shape,
            enumerates=_enumerating_axis(np.asarray(gathered.index), math.prod(spec.batch_shape)) if role == "simplex" else None,
        )
    if "dense" in how and math.prod(spec.batch_shape) == 1:
        if latent not in dense_cache:
            z0 = z[0]
            columns = []
            for i in range(z0.size):
                bumped = z0.copy().reshape(-1)
                bumped[i] += 1.0
                columns.append(run({**values, latent: bumped.reshape(z0.shape)}, 0))
            dense_cache[latent] = columns
        columns = [_param(r[site.name], pname, role) for r in dense_cache[latent]]
        dense = detect_dense(readings[0], columns, readings[1:], z)
        if dense is not None:
            atom = reading0.shape[reading0.ndim - p_atom :] if p_atom else ()
            batch = int(math.prod(reading0.shape[: reading0.ndim - p_atom]))
            jac = dense.jacobian.reshape((batch,) + tuple(atom) + (-1,))
            return Dependency(
                role, "dense", latent, jacobian=to_backend(jac), offset=to_backend(dense.offset.reshape((batch,) + tuple(atom))),
                shape=reading0.shape,
            )
    hint = ""
    if spec.q_family == "Normal" and role == "real":
        hint = f"; if it is affine, declare {latent!r} with .to_event(1) so that it gets one Gaussian block"
    _refuse(prior[latent], site.name, f"{what}: not a constant-scaled gather or affine map of {latent!r}{hint}", backend)


def _enumerating_axis(index: np.ndarray, num_rows: int) -> Optional[int]:
    """The axis (negative) along which ``index`` is ``arange(num_rows)``, all other axes
    of size 1 (the components of a mixture, selected by an enumerated site), or ``None``."""
    if num_rows < 2 or index.size != num_rows:
        return None
    axes = [a for a, size in enumerate(index.shape) if size == num_rows]
    if len(axes) != 1 or not np.array_equal(index.reshape(-1), np.arange(num_rows)):
        return None
    return axes[0] - index.ndim


def _acceptable(role: str, q_family: str, gathered, magnitude: float) -> bool:
    """Whether a detected gather is a conjugate use for ``role``.

    Locations may be any affine gather; positive parameters must be a positive
    constant times the latent (no offset); probabilities the latent itself.
    """
    coef, offset = np.asarray(gathered.coef), np.asarray(gathered.offset)
    if role in ("real", "vector"):
        return True
    if max_abs(offset) > 1e-8 * max(1.0, magnitude):
        return False
    if role in ("unit", "simplex"):
        return bool(np.allclose(coef, 1.0, rtol=1e-6))
    if role == "precision_matrix" and q_family == "Gamma":
        return bool(np.all(np.linalg.eigvalsh(coef) > 0))
    return bool(np.all(coef > 0))


def _on_backend(value: Any, to_backend: Callable[[np.ndarray], Any]) -> Any:
    """Moments/statistics computed in NumPy, moved to the host backend.

    Computing them in NumPy and converting once avoids an eager host dispatch (and, in
    jax, a compilation) for every operation of every site.
    """
    if isinstance(value, conjugate.SimplexMoments):
        return conjugate.SimplexMoments(to_backend(value.table), to_backend(value.rows))
    if isinstance(value, tuple):
        return tuple(to_backend(np.asarray(v)) for v in value)
    return to_backend(np.asarray(value))
