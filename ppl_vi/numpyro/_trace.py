"""Read a NumPyro program's sample sites for the CAVI planner (private).

``run_sites(model, args, kwargs)`` returns the ``run(values, seed)`` callable that
:func:`ppl_vi.core.cavi_plan.build_plan` probes: the program under NumPyro's ``seed``,
``substitute`` and ``trace`` handlers, each site unwrapped from its ``Independent`` /
``ExpandedDistribution`` / ``MaskedDistribution`` layers and reported as a
:class:`~ppl_vi.core.cavi_plan.SiteInfo` with NumPy parameters.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.distributions import ExpandedDistribution, Independent, MaskedDistribution
from numpyro.distributions.transforms import biject_to

from ppl_vi.core.cavi_plan import SiteInfo, host_attributes
from ppl_vi.numpyro._compile import run_once_compiler_options

__all__ = ["run_sites", "to_jax"]

_ALIASES = {"BernoulliProbs": "Bernoulli", "BernoulliLogits": "Bernoulli", "CategoricalProbs": "Categorical",
            "CategoricalLogits": "Categorical", "BinomialProbs": "Binomial", "BinomialLogits": "Binomial",
            "MultinomialProbs": "Multinomial", "MultinomialLogits": "Multinomial"}
_ATTRS = host_attributes("numpyro")


def to_jax(a: np.ndarray) -> Any:
    """NumPy -> jax array (floats as float64 under ``jax_enable_x64``)."""
    a = np.asarray(a)
    return jnp.asarray(a, dtype=jnp.result_type(float)) if np.issubdtype(a.dtype, np.floating) else jnp.asarray(a)


# what tracing raises when a program needs concrete data values
_NEEDS_CONCRETE = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


def _read_site(site: dict, with_params: bool) -> tuple[dict, dict]:
    """Static description and arrays of one traced site (runs inside ``jax.jit``);
    without ``with_params``, no parameters (nor log-density) are read."""
    base, reinterpreted, mask = _unwrap(site["fn"])
    family = _ALIASES.get(type(base).__name__, type(base).__name__)
    attrs = _ATTRS.get(family)
    if not with_params:
        params = {}
    elif attrs is None:
        params = {k: getattr(base, k) for k in base.arg_constraints if hasattr(base, k)}
    else:
        params = {k: getattr(base, a) for k, a in attrs.items()}
    scale = jnp.asarray(1.0 if site["scale"] is None else site["scale"], dtype=jnp.result_type(float))
    if mask is not None:
        scale = scale * mask
    observed = bool(site["is_observed"])
    log_prob = jnp.sum(site["fn"].log_prob(site["value"]) * scale) if with_params and attrs is None and observed else jnp.zeros(())
    static = {
        "family": family,
        "observed": observed,
        "batch_shape": tuple(site["fn"].batch_shape),
        "event_shape": tuple(site["fn"].event_shape),
        "reinterpreted_ndims": reinterpreted,
        "plates": tuple((f.name, f.dim) for f in site["cond_indep_stack"] if f.dim is not None),
        "support_size": int(jnp.shape(getattr(base, _ATTRS["Categorical"]["probs"]))[-1]) if family == "Categorical" else None,
    }
    arrays = {"params": params, "value": site["value"], "scale": scale, "log_prob": log_prob}
    return static, arrays


def _unwrap(fn) -> tuple[Any, int, Any]:
    reinterpreted, mask = 0, None
    while True:
        if isinstance(fn, MaskedDistribution):
            mask = fn._mask if mask is None else mask * fn._mask
            fn = fn.base_dist
        elif isinstance(fn, Independent):
            reinterpreted += fn.reinterpreted_batch_ndims
            fn = fn.base_dist
        elif isinstance(fn, ExpandedDistribution):
            fn = fn.base_dist
        else:
            return fn, reinterpreted, mask


def _support_point(noise: dict) -> Callable[[dict], Any]:
    """``substitute_fn`` giving each latent site the point ``biject_to(support)(noise)``
    (0 for discrete sites): a valid, non-symmetric start that needs no sampler."""

    def value(site: dict) -> Any:
        if site["type"] != "sample" or site.get("is_observed"):
            return None
        fn = site["fn"]
        if fn.support.is_discrete:
            return jnp.zeros(fn.shape(), dtype=jnp.int32)
        return biject_to(fn.support)(noise[site["name"]])

    return value


def _unconstrained_shapes(program: Callable[[list], Callable], arrays: list) -> dict:
    """Name -> unconstrained shape of every continuous latent site of ``program(arrays)``.

    Traced abstractly, each latent at a placeholder of its shape: nothing is sampled,
    compiled or run. The arrays enter as abstract arguments (with them as constants,
    NumPyro checks concrete parameters eagerly: one small compilation per check), as
    constants only when the program needs concrete data values.
    """
    shapes: dict[str, tuple] = {}

    def placeholder(site: dict) -> Any:
        if site["type"] != "sample" or site.get("is_observed"):
            return None
        dtype = jnp.int32 if site["fn"].support.is_discrete else jnp.result_type(float)
        return jnp.zeros(site["fn"].shape(), dtype=dtype)

    def record(data: list) -> int:
        with numpyro.validation_enabled(False):  # see run_sites
            trace = handlers.trace(handlers.seed(handlers.substitute(program(data), substitute_fn=placeholder), rng_seed=0)).get_trace()
        for name, site in trace.items():
            if site["type"] == "sample" and not site["is_observed"] and not site["fn"].support.is_discrete:
                shapes[name] = tuple(biject_to(site["fn"].support).inverse_shape(site["fn"].shape()))
        return 0

    try:
        jax.eval_shape(record, arrays)
    except _NEEDS_CONCRETE:
        jax.eval_shape(lambda: record(arrays))
    return shapes


def run_sites(model: Callable, args: tuple, kwargs: dict) -> Callable[[Optional[dict], int], dict]:
    """The ``run(values, seed) -> {name: SiteInfo}`` callable of ``model(*args, **kwargs)``.

    ``values=None`` puts every latent site at a random point of its support (``seed``)
    and reads no parameters (the plan needs the sites' shapes and values there, and a
    mixture's parameters at a point are as large as its data times its support);
    otherwise the sites in ``values`` are substituted. Each kind of run is one
    ``jax.jit``-compiled program (compiled once, then reused for every probe) taking the
    program's array arguments as arguments; a program that needs them as concrete
    values (``float(a)``, NumPy calls) is compiled with them as constants instead.
    """
    statics: dict[str, dict] = {"support": {}, "data": {}}
    # the program's array arguments enter the compiled programs as arguments, not as
    # embedded constants: NumPyro then skips eager argument validation on concrete
    # values (one small compilation per check) and XLA does not fold the data
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    is_array = [isinstance(v, (jax.Array, np.ndarray)) for v in leaves]
    arrays = [v for v, a in zip(leaves, is_array) if a]

    def program(array_args: list) -> Callable:
        it = iter(array_args)
        call_args, call_kwargs = jax.tree_util.tree_unflatten(treedef, [next(it) if a else v for v, a in zip(leaves, is_array)])
        return lambda: model(*call_args, **call_kwargs)

    def traced(substituted: Callable, kind: str) -> dict:
        # NumPyro's argument validation runs eagerly on the program's constant parameters,
        # one small compilation per check (0.5 s of a first fit of the 100k-point mixture,
        # Wishart's checks); probes need no validation (the Pyro adapter's are off too)
        with numpyro.validation_enabled(False):
            trace = handlers.trace(handlers.seed(substituted, rng_seed=0)).get_trace()
        out = {}
        for name, site in trace.items():
            if site["type"] == "sample":
                statics[kind][name], out[name] = _read_site(site, with_params=kind == "data")
        return out

    def compiled(kind: str, substitute: Callable) -> Callable:
        """``fn(x) -> arrays`` with the data as arguments, or as constants when the
        program needs concrete data values (Python control flow on them)."""
        with_args = jax.jit(lambda x, data: traced(handlers.substitute(program(data), **substitute(x)), kind), compiler_options=run_once_compiler_options())
        with_constants = jax.jit(lambda x: traced(handlers.substitute(program(arrays), **substitute(x)), kind), compiler_options=run_once_compiler_options())
        choice: list = []

        def call(x):
            if not choice:
                try:
                    out = with_args(x, arrays)
                    choice.append(lambda y: with_args(y, arrays))
                    return out
                except _NEEDS_CONCRETE:
                    choice.append(with_constants)
            return choice[0](x)

        return call

    at_support = compiled("support", lambda noise: {"substitute_fn": _support_point(noise)})
    substituted = compiled("data", lambda data: {"data": data})
    unconstrained: list = []

    def support_noise(seed: int) -> dict:
        """Uniform(-2, 2) noise (NumPy: no random-bit program to compile) per continuous latent."""
        if not unconstrained:
            unconstrained.append(_unconstrained_shapes(program, arrays))
        rng = np.random.default_rng(seed)
        return {name: to_jax(rng.uniform(-2.0, 2.0, shape)) for name, shape in unconstrained[0].items()}

    def run(values: Optional[dict], seed: int) -> dict:
        if values is None:
            outputs, kind = at_support(support_noise(seed)), "support"
        else:
            outputs, kind = substituted({k: to_jax(v) for k, v in values.items()}), "data"
        # jit returns dicts with sorted keys; ``statics`` was filled while tracing, in program order
        return {
            name: SiteInfo(
                name=name,
                params={k: np.asarray(v) for k, v in outputs[name]["params"].items()},
                value=np.asarray(outputs[name]["value"]),
                scale=np.asarray(outputs[name]["scale"]),
                log_prob=float(outputs[name]["log_prob"]),
                **statics[kind][name],
            )
            for name in statics[kind]
            if name in outputs
        }

    return run
