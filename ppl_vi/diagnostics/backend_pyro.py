"""Pyro runners for :mod:`ppl_vi.diagnostics.methods` (SVI, CAVI, weights, NUTS fallback).

torch and pyro are imported inside the functions. Zoo programs use NumPyro NUTS as
their reference even on this backend (same program, faster sampler); Pyro's own NUTS
is used only for a user's Pyro program, which has no NumPyro twin.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

import numpy as np
from tqdm.auto import tqdm

from ppl_vi.diagnostics.convergence import PlateauTest
from ppl_vi.diagnostics.methods import MethodResult, Problem


def inspect_sites(problem: Problem) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(latent sites, enumerated discrete sites) of the Pyro program."""
    import pyro
    from pyro import poutine
    from pyro.poutine.util import site_is_subsample

    with pyro.get_param_store().scope():
        trace = poutine.trace(problem.model).get_trace(*problem.args, **problem.kwargs)
    latent, enumerated = [], []
    for name, site in trace.nodes.items():
        # Pyro records each plate's subsample indices as a sample site: not a latent
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        (enumerated if site["infer"].get("enumerate") else latent).append(name)
    return tuple(latent), tuple(enumerated)


def importance_log_weights(
    problem: Problem, guide: Callable[..., Any], params: Optional[dict], seed: int
) -> tuple[dict, list]:
    """Draws ``z ~ q`` and ``log p(x, z) - log q(z)`` for ``problem.num_khat_seeds`` seeds.

    Vectorized over draws with :func:`pyro.infer.importance.vectorized_importance_weights`
    (a particle plate left of the model's plates); programs that do not vectorize fall back
    to one guide trace and one replayed model trace per draw. ``params`` is unused (Pyro
    guides hold their parameters in the param store).

    Returns
    -------
    (dict, list)
        Site -> ``(1, num_draws, *site_shape)`` draws of the first seed; one
        ``(num_draws,)`` log-weight array per seed.
    """
    import pyro
    import torch

    first: dict = {}
    log_weights = []
    for k in range(problem.num_khat_seeds):
        pyro.set_rng_seed(seed + k)
        with torch.no_grad():
            try:
                draws, lw = _vectorized_weights(problem, guide)
            except Exception:  # e.g. a program whose shapes do not broadcast with a particle plate
                draws, lw = _looped_weights(problem, guide)
        log_weights.append(lw)
        first = first or {s: v[None] for s, v in draws.items()}
    return first, log_weights


def _site_shapes_and_nesting(problem: Problem) -> tuple[dict, int]:
    from pyro import poutine

    trace = poutine.trace(problem.model).get_trace(*problem.args, **problem.kwargs)
    shapes = {s: tuple(trace.nodes[s]["value"].shape) for s in problem.latent_sites}
    nesting = max([-f.dim for site in trace.nodes.values() if site["type"] == "sample"
                   for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None] + [0])
    return shapes, nesting


def _vectorized_weights(problem: Problem, guide: Callable[..., Any]) -> tuple[dict, np.ndarray]:
    from pyro.infer.importance import vectorized_importance_weights

    shapes, nesting = _site_shapes_and_nesting(problem)
    num = problem.num_draws
    lw, _, guide_trace = vectorized_importance_weights(
        problem.model, guide, *problem.args, num_samples=num, max_plate_nesting=nesting + 1,
        normalized=False, **problem.kwargs,
    )
    draws = {s: _numpy(guide_trace.nodes[s]["value"]).reshape((num, *shape))
             for s, shape in shapes.items() if s in guide_trace.nodes}
    lw = _numpy(lw).astype(float)
    if lw.shape != (num,):
        raise ValueError(f"vectorized log weights have shape {lw.shape}, expected ({num},)")
    return draws, lw


def _looped_weights(problem: Problem, guide: Callable[..., Any]) -> tuple[dict, np.ndarray]:
    from pyro import poutine

    values: dict = {s: [] for s in problem.latent_sites}
    lw = np.empty(problem.num_draws)
    for i in range(problem.num_draws):
        guide_trace = poutine.trace(guide).get_trace(*problem.args, **problem.kwargs)
        replayed = poutine.replay(problem.model, trace=guide_trace)
        model_trace = poutine.trace(replayed).get_trace(*problem.args, **problem.kwargs)
        lw[i] = float(model_trace.log_prob_sum() - guide_trace.log_prob_sum())
        for s in values:
            if s in guide_trace.nodes:
                values[s].append(_numpy(guide_trace.nodes[s]["value"]))
    return {s: np.stack(v) for s, v in values.items() if v}, lw


def run_svi(
    problem: Problem, guide_name: str, seed: int, *, plateau: PlateauTest,
    num_steps: int = 20000, step_size: float = 0.01, num_particles: int = 4,
    num_decays: int = 2, decay_factor: float = 0.1, local_plate: str = "data",
    data_arg: Optional[int | str] = None, hidden: tuple[int, ...] = (64,),
) -> MethodResult:
    """``pyro.infer.SVI`` with ``autoguide.<guide_name>`` (or ppl_vi's ``LocalGuide`` /
    ``AmortizedGuide`` over ``local_plate``, the latter with an ``MLPEncoder`` of
    ``hidden`` widths reading model argument ``data_arg``) and Adam, stopped by the
    plateau test.

    Same schedule as the NumPyro runner: on each plateau the step size is multiplied by
    ``decay_factor`` (a fresh Adam on the current parameters), ``num_decays`` times.
    """
    import pyro
    from pyro import poutine
    from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, autoguide

    import torch

    from ppl_vi.diagnostics.backend_numpyro import _vi_result, non_finite_reason, resolve_data_arg

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    hidden = list(problem.enumerated_sites)
    model = problem.model
    guide_model = poutine.block(model, hide=hidden) if hidden else model
    if guide_name == "LocalGuide":
        from ppl_vi.pyro import LocalGuide

        guide = LocalGuide(guide_model, local_plate=local_plate)
    elif guide_name == "AmortizedGuide":
        from ppl_vi.pyro.amortized import AmortizedGuide, MLPEncoder, local_site_shapes

        data_arg, data = resolve_data_arg(problem.args, problem.kwargs, data_arg)
        shapes = local_site_shapes(guide_model, *problem.args, local_plate=local_plate, **problem.kwargs)
        encoder = MLPEncoder(int(np.prod(tuple(data.shape[1:]))), shapes, tuple(hidden)).to(data.dtype)
        guide = AmortizedGuide(guide_model, encoder, local_plate, data_arg=data_arg)
    else:
        guide = getattr(autoguide, guide_name)(guide_model)
    elbo_cls = TraceEnum_ELBO if hidden else Trace_ELBO
    loss = elbo_cls(num_particles=num_particles, vectorize_particles=num_particles > 1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": step_size}), loss)
    losses: list = []
    phase_start, decays = 0, 0
    stop_reason = f"reached num_steps={num_steps}"
    store = pyro.get_param_store()
    snapshots: deque = deque(maxlen=2)  # parameters before the previous and the current step
    with tqdm(total=num_steps, desc=f"svi:{guide_name}", disable=not problem.progress_bar, leave=False) as bar:
        while len(losses) < num_steps:
            snapshots.append({name: p.detach().clone() for name, p in store.named_parameters()})
            step_loss = svi.step(*problem.args, **problem.kwargs)
            bar.update(1)
            if not np.isfinite(step_loss):
                # svi.step returns the loss at its input parameters: keep those of the last finite loss
                if len(snapshots) < 2 or set(snapshots[0]) != set(snapshots[1]):
                    raise FloatingPointError(f"SVI: non-finite loss ({step_loss}) at step {len(losses) + 1}, "
                                             "before any parameters with a finite loss could be kept")
                with torch.no_grad():
                    for name, p in store.named_parameters():
                        p.copy_(snapshots[0][name])
                stop_reason = non_finite_reason(len(losses), step_loss, len(losses))
                break
            losses.append(step_loss)
            if (len(losses) - phase_start) % plateau.window or not plateau.converged(-np.asarray(losses[phase_start:])):
                continue
            if decays == num_decays:
                stop_reason = f"ELBO plateau at step size {step_size * decay_factor ** decays:.2g}"
                break
            decays += 1
            phase_start = len(losses)
            svi = SVI(model, guide, pyro.optim.Adam({"lr": step_size * decay_factor**decays}), loss)
    draws, log_weights = importance_log_weights(problem, guide, None, seed + 1)
    return _vi_result(draws, log_weights, -np.asarray(losses), stop_reason.startswith("ELBO plateau"), stop_reason)


def run_cavi(problem: Problem, seed: int, **options: Any) -> MethodResult:
    """``ppl_vi.pyro.CAVI`` through its public API (run, sample_posterior, guide)."""
    import pyro

    from ppl_vi.diagnostics.backend_numpyro import _cavi_result
    from ppl_vi.pyro import CAVI

    pyro.set_rng_seed(seed)
    cavi = CAVI(problem.model)
    fit = cavi.run(*problem.args, progress_bar=problem.progress_bar, **options, **problem.kwargs)
    sample = cavi.sample_posterior(fit, problem.num_draws)
    draws = {s: _numpy(sample[s])[None] for s in problem.latent_sites if s in sample}
    result = _cavi_result(_HostFit(fit), draws)
    try:
        result.log_weights = importance_log_weights(problem, cavi.guide(fit), None, seed + 1)[1]
    except Exception as exc:  # k̂ is a diagnostic; its failure must not discard the fit
        result.notes.append(f"no k̂: {type(exc).__name__}: {exc}")
    return result


class _HostFit:
    """A Pyro CAVI result seen through NumPy (torch tensors detached)."""

    def __init__(self, fit: Any) -> None:
        self.elbo = _numpy(fit.elbo)
        self.converged = fit.converged
        self.num_steps = getattr(fit, "num_steps", self.elbo.size)
        self.stop_reason = getattr(fit, "stop_reason", "")
        self.posterior = {s: _MomentView(q) for s, q in fit.posterior.items()}


class _MomentView:
    def __init__(self, q: Any) -> None:
        self.q = q

    @property
    def mean(self) -> np.ndarray:
        return _numpy(self.q.mean)

    @property
    def variance(self) -> np.ndarray:
        return _numpy(self.q.variance)


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def run_nuts(
    problem: Problem, seed: int, *, num_warmup: int = 500, num_samples: Optional[int] = None,
    num_chains: int = 4,
) -> MethodResult:
    """Pyro NUTS (chains run one after another) for a user's Pyro program."""
    import pyro
    from pyro.infer import MCMC, NUTS

    pyro.set_rng_seed(seed)
    num_samples = num_samples or problem.num_draws
    mcmc = MCMC(NUTS(problem.model), num_samples=num_samples, warmup_steps=num_warmup,
                num_chains=num_chains, mp_context=None, disable_progbar=not problem.progress_bar)
    mcmc.run(*problem.args, **problem.kwargs)
    samples = mcmc.get_samples(group_by_chain=True)
    draws = {s: _numpy(samples[s]) for s in problem.latent_sites if s in samples}
    return MethodResult(method="nuts", draws=draws, num_iterations=num_warmup + num_samples,
                        stop_reason=f"{num_chains} Pyro chains x ({num_warmup} warmup + {num_samples}) draws")


def exact_guide(params: dict) -> Callable[..., Any]:
    """A Pyro guide sampling the zoo's closed-form posterior ``params``."""
    import pyro
    import pyro.distributions as dist
    import torch

    for site, (family, _) in params.items():
        if not isinstance(site, str) or not hasattr(dist, family):
            raise NotImplementedError(f"closed form {family!r} of {site!r} is not a Pyro distribution")

    def guide(*args: Any, **kwargs: Any) -> None:
        for site, (family, values) in params.items():
            q = getattr(dist, family)(**{k: torch.as_tensor(np.asarray(v), dtype=torch.get_default_dtype()) for k, v in values.items()})
            pyro.sample(site, q.to_event(len(q.batch_shape)) if q.batch_shape else q)

    return guide


def run_langevin(problem: Problem, seed: int, **options: Any) -> MethodResult:
    """MALA (or ULA with ``mala=False``) on the posterior score of the Pyro program."""
    from ppl_vi.diagnostics.backend_numpyro import _langevin_result
    from ppl_vi.pyro.langevin_sampling import langevin_posterior

    options.setdefault("num_samples", problem.num_draws)
    fit = langevin_posterior(problem.model, problem.args, problem.kwargs, seed=seed,
                             progress_bar=problem.progress_bar, **options)
    fit = fit._replace(samples={k: _numpy(v) for k, v in fit.samples.items()}, step_size=_numpy(fit.step_size))
    return _langevin_result(problem, fit)


def run_ngsvi(problem: Problem, seed: int, *, local_plate: str = "data", batch_size: Optional[int] = None,
              num_epochs: int = 10) -> MethodResult:
    """ppl_vi's ``NaturalGradientSVI``: draws from the fitted global factors."""
    import pyro

    from ppl_vi.diagnostics.backend_numpyro import _batch_option, ngsvi_result
    from ppl_vi.pyro import NaturalGradientSVI

    pyro.set_rng_seed(seed)
    ngsvi = NaturalGradientSVI(problem.model, local_plate=local_plate, **_batch_option(batch_size))
    fit = ngsvi.run(*problem.args, num_epochs=num_epochs, progress_bar=problem.progress_bar, **problem.kwargs)
    draws = {s: _numpy(fit.posterior[s].sample((problem.num_draws,)))[None]
             for s in problem.latent_sites if s in fit.posterior}
    return ngsvi_result(fit, draws)
