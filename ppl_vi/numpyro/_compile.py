"""Compiling a program in a worker thread while the caller prepares its arguments.

A first fit pays for XLA's compilation of the sweep (about 0.6 s for LDA on 90k tokens)
after planning and the start, which do NumPy work and compile small programs of their
own. The sweep's argument shapes are known once the plan is, so it can be compiled
ahead of time (``jax.jit(fn).lower(abstract).compile()``) while the start is built:
XLA's compiler releases the GIL. (The ahead-of-time executable does not enter ``jit``'s
cache, so the caller keeps it and calls it directly.)
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Optional

import jax

__all__ = ["BackgroundCompilation", "abstract_like", "supported_compiler_options", "run_once_compiler_options"]

# For programs that run once or a few times (the planner's probes, the start, the
# posterior's constructor) compiling fast matters more than running fast: no LLVM
# optimization, XLA:CPU's older fusion emitters. With both for the probes, a first LDA fit
# (90k tokens) took 0.94-1.06 s instead of 1.00-1.18 s (three alternating runs).
_RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def abstract_like(tree: Any) -> Any:
    """``tree`` with every array replaced by its ``jax.ShapeDtypeStruct``."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


@functools.lru_cache(maxsize=None)
def _known_to_xla(options: frozenset) -> bool:
    try:
        jax.jit(lambda x: x + 1.0).lower(jax.ShapeDtypeStruct((), jax.numpy.float32)).compile(compiler_options=dict(options))
    except jax.errors.JaxRuntimeError:  # "No such compile option"
        return False
    return True


_ACCEPTED: set = set()  # option names this jaxlib's XLA has accepted


def supported_compiler_options(options: dict) -> dict:
    """The entries of ``options`` (XLA compiler options) this jaxlib accepts: XLA's options
    are internal and may be renamed. Checked once per process on a trivial program (all
    together, then one by one if that fails); a name accepted once is not checked again
    with another value (a check is a compilation, on the way to the sweep's)."""
    if set(options) <= _ACCEPTED or _known_to_xla(frozenset(options.items())):
        _ACCEPTED.update(options)
        return dict(options)
    supported = {name: value for name, value in options.items() if _known_to_xla(frozenset({(name, value)}))}
    _ACCEPTED.update(supported)
    return supported


def run_once_compiler_options() -> dict:
    """Compiler options for a program that runs once or a few times (see the module)."""
    return supported_compiler_options(_RUN_ONCE_OPTIONS)


def _signature(tree: Any) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(a.shape), jax.numpy.dtype(a.dtype), bool(getattr(a, "weak_type", False))) for a in leaves)


class BackgroundCompilation:
    """``jax.jit(fn, **jit_options)`` compiled for ``abstract_args`` in a worker thread.

    Parameters
    ----------
    fn : callable
        A pure function of the arguments.
    *abstract_args : pytrees of ``jax.ShapeDtypeStruct``
        The shapes and dtypes it will be called with.
    after : BackgroundCompilation, optional
        Start only when that one has finished (the cores go to what is needed first).
    **jit_options
        Passed to ``jax.jit`` (``donate_argnums``, ``compiler_options``, ...).

    Notes
    -----
    :meth:`program` waits for the compilation and re-raises its error, if any.
    """

    def __init__(self, fn: Callable, *abstract_args: Any, after: Optional["BackgroundCompilation"] = None, **jit_options: Any):
        self._jitted = jax.jit(fn, **jit_options)
        self._signature = _signature(abstract_args)

        def compile_program():
            if after is not None:
                wait([after._future])  # its error, if any, is its caller's to see
            return self._jitted.lower(*abstract_args).compile()

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ppl_vi-compile")
        self._future: Future = executor.submit(compile_program)
        executor.shutdown(wait=False)  # its one job still runs to the end

    def program(self, *args: Any) -> Callable:
        """The compiled program if ``args`` have the announced shapes and dtypes, else
        ``jax.jit(fn, **jit_options)`` (which compiles on its first call)."""
        compiled = self._future.result()
        return compiled if _signature(args) == self._signature else self._jitted
