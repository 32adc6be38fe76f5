"""NumPyro runners for :mod:`ppl_vi.diagnostics.methods` (SVI, NUTS, CAVI, weights).

jax and numpyro are imported inside the functions, so importing the diagnostics package
never pulls a backend; only running a method does.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from tqdm.auto import tqdm

from ppl_vi.diagnostics.convergence import PlateauTest
from ppl_vi.diagnostics.methods import MethodResult, Problem


def numpyro_program(problem: Problem) -> tuple[Callable[..., Any], tuple, dict]:
    """``(model, args, kwargs)`` as a NumPyro program (the zoo twin of a Pyro problem)."""
    if problem.backend == "numpyro":
        return problem.model, problem.args, problem.kwargs
    if problem.zoo is None or problem.numpy_data is None:
        raise ValueError("a user's Pyro program has no NumPyro twin; NumPyro cannot run it")
    from models import to_backend

    return problem.zoo.numpyro_model, (), to_backend(problem.numpy_data, "numpyro")


def inspect_sites(problem: Problem) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(continuous-or-plain latent sites, enumerated discrete sites) of the program."""
    from numpyro import handlers

    model, args, kwargs = numpyro_program(problem)
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
    latent, enumerated = [], []
    for name, site in trace.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        (enumerated if site["infer"].get("enumerate") else latent).append(name)
    return tuple(latent), tuple(enumerated)


def importance_log_weights(
    problem: Problem, guide: Callable[..., Any], params: dict, seed: int
) -> tuple[dict, list]:
    """Draws ``z ~ q`` and ``log p(x, z) - log q(z)``, for ``problem.num_khat_seeds`` seeds.

    Returns
    -------
    (dict, list)
        Latent site -> ``(1, num_draws, *site_shape)`` draws of the first seed, and one
        ``(num_draws,)`` array of log weights per seed.
    """
    import jax
    from numpyro import handlers
    from numpyro.infer.util import log_density

    model, args, kwargs = numpyro_program(problem)
    sites = problem.latent_sites

    def one(key):
        guide_key, model_key = jax.random.split(key)
        guide_logp, guide_trace = log_density(handlers.seed(guide, guide_key), args, kwargs, params)
        replayed = handlers.seed(handlers.replay(model, guide_trace), model_key)
        model_logp, _ = log_density(replayed, args, kwargs, {})
        draws = {s: guide_trace[s]["value"] for s in sites if s in guide_trace}
        return draws, model_logp - guide_logp

    weigh = jax.vmap(one)  # eager: one pass per seed costs less than compiling it
    keys = jax.random.split(jax.random.PRNGKey(seed), problem.num_khat_seeds)
    first, log_weights = None, []
    for key in keys:
        draws, lw = weigh(jax.random.split(key, problem.num_draws))
        first = first or {s: np.asarray(v)[None] for s, v in draws.items()}
        log_weights.append(np.asarray(lw, dtype=float))
    return first, log_weights


def run_svi(
    problem: Problem, guide_name: str, seed: int, *, plateau: PlateauTest,
    num_steps: int = 20000, step_size: float = 0.01, num_particles: int = 4,
    num_decays: int = 2, decay_factor: float = 0.1, local_plate: str = "data",
    data_arg: Optional[int | str] = None, hidden: tuple[int, ...] = (64,),
) -> MethodResult:
    """NumPyro SVI with ``autoguide.<guide_name>`` (or ppl_vi's ``LocalGuide`` /
    ``AmortizedGuide`` over ``local_plate``) and Adam, stopped by the plateau test.

    ``AmortizedGuide`` gets an :func:`ppl_vi.numpyro.mlp_encoder` with ``hidden``
    widths, reading the model argument ``data_arg`` (see :func:`resolve_data_arg`).

    Reduce-on-plateau: on each plateau the step size is multiplied by ``decay_factor``
    until ``num_decays`` decays are used; the next plateau stops the run. The step size
    is an injected optax hyperparameter, so one compiled window of steps serves all.
    """
    import jax
    import optax
    from numpyro import handlers
    from numpyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, autoguide

    model, args, kwargs = numpyro_program(problem)
    hidden = list(problem.enumerated_sites)
    guide_model = handlers.block(model, hide=hidden) if hidden else model
    if guide_name == "LocalGuide":
        from ppl_vi.numpyro import LocalGuide

        guide = LocalGuide(guide_model, local_plate=local_plate)
    elif guide_name == "AmortizedGuide":
        from ppl_vi.numpyro.amortized import AmortizedGuide, local_site_shapes, mlp_encoder

        data_arg, data = resolve_data_arg(args, kwargs, data_arg)
        shapes = local_site_shapes(guide_model, *args, local_plate=local_plate, **kwargs)
        encoder = mlp_encoder(jax.random.PRNGKey(seed + 1), int(np.prod(np.shape(data)[1:])), shapes, hidden)
        guide = AmortizedGuide(guide_model, encoder, local_plate, data_arg=data_arg)
    else:
        guide = getattr(autoguide, guide_name)(guide_model)
    loss = TraceEnum_ELBO(num_particles=num_particles) if hidden else Trace_ELBO(num_particles=num_particles)
    svi = SVI(model, guide, optax.inject_hyperparams(optax.adam)(learning_rate=step_size), loss)
    fit_key, weight_key = jax.random.split(jax.random.PRNGKey(seed))
    state = svi.init(fit_key, *args, **kwargs)
    run_window = jax.jit(lambda s: jax.lax.scan(lambda t, _: svi.update(t, *args, **kwargs), s, None,
                                                length=plateau.window))
    losses: list = []
    phase_start, decays = 0, 0
    previous_start = None  # state at the start of the previous window (for rewinding)
    stop_reason = f"reached num_steps={num_steps}"
    with tqdm(total=num_steps, desc=f"svi:{guide_name}", disable=not problem.progress_bar, leave=False) as bar:
        while len(losses) < num_steps:
            new_state, window_losses = run_window(state)
            window_losses = np.asarray(window_losses, dtype=float)
            bar.update(plateau.window)
            if not np.all(np.isfinite(window_losses)):
                first_bad = int(np.argmin(np.isfinite(window_losses)))
                bad_loss, bad_step = window_losses[first_bad], len(losses) + first_bad
                losses.extend(window_losses[:first_bad].tolist())
                state = _last_finite_state(svi, args, kwargs, state, previous_start, first_bad, plateau.window)
                stop_reason = non_finite_reason(bad_step, bad_loss, len(losses))
                break
            previous_start, state = state, new_state
            losses.extend(window_losses.tolist())
            if plateau.converged(-np.asarray(losses[phase_start:])):
                if decays == num_decays:
                    stop_reason = f"ELBO plateau at step size {step_size * decay_factor ** decays:.2g}"
                    break
                decays += 1
                phase_start = len(losses)
                state = _with_step_size(state, step_size * decay_factor**decays)
    params = svi.get_params(state)
    draws, log_weights = importance_log_weights(problem, guide, params, int(weight_key[-1]))
    return _vi_result(draws, log_weights, -np.asarray(losses), stop_reason.startswith("ELBO plateau"), stop_reason)


def resolve_data_arg(args: tuple, kwargs: dict, data_arg: Optional[int | str]) -> tuple[int | str, Any]:
    """``(data_arg, data)``: which model argument an amortized encoder reads, and its value.

    ``None`` means the first positional argument; a program called with keywords only
    (the zoo's) must name it, e.g. ``method_options={"amortized": {"data_arg": "x"}}``.
    """
    if data_arg is None:
        if not args:
            raise ValueError("amortized: the model takes keyword arguments only "
                             f"({', '.join(kwargs)}); pass the data argument as option data_arg=<name>")
        data_arg = 0
    if isinstance(data_arg, int):
        if not -len(args) <= data_arg < len(args):
            raise ValueError(f"amortized: data_arg={data_arg} but the model has {len(args)} positional arguments")
        return data_arg, args[data_arg]
    if data_arg not in kwargs:
        raise ValueError(f"amortized: data_arg={data_arg!r} is not a keyword argument; they are {sorted(kwargs)}")
    return data_arg, kwargs[data_arg]


def _last_finite_state(svi, args, kwargs, window_start, previous_start, first_bad: int, window: int):
    """The SVI state at which the last finite loss was evaluated.

    ``svi.update`` returns the loss at its *input* state, so with the first non-finite
    loss at offset ``first_bad`` of the window, the wanted state is ``first_bad - 1``
    updates after ``window_start`` (or ``window - 1`` after ``previous_start`` when the
    window's first loss is already non-finite). Replayed step by step: the state
    carries its own PRNG key, so the replay retraces the same draws.
    """
    import jax

    if first_bad == 0:
        if previous_start is None:
            raise FloatingPointError("SVI: the loss is non-finite at the initial parameters")
        window_start, first_bad = previous_start, window
    update = jax.jit(lambda s: svi.update(s, *args, **kwargs)[0])
    state = window_start
    for _ in range(first_bad - 1):
        state = update(state)
    return state


def non_finite_reason(step: int, loss: float, num_finite: int) -> str:
    """``stop_reason`` of a run whose loss first became non-finite at (0-based) ``step``."""
    return (f"non-finite loss ({loss}) at step {step + 1}; stopped, keeping the parameters of "
            f"step {num_finite} (the last finite loss)")


def _with_step_size(state: Any, step_size: float) -> Any:
    """``state`` with a new injected learning rate (NumPyro keeps an optax optimizer's
    state as ``optim_state = (step, (params, optax_state))``)."""
    import jax.numpy as jnp

    step, (params, opt_state) = state.optim_state
    old = opt_state.hyperparams["learning_rate"]
    hyper = {**opt_state.hyperparams, "learning_rate": jnp.asarray(step_size, dtype=jnp.result_type(old))}
    return state._replace(optim_state=(step, (params, opt_state._replace(hyperparams=hyper))))


def _vi_result(draws, log_weights, elbo_trace, converged, stop_reason) -> MethodResult:
    from ppl_vi.diagnostics.psis import elbo_estimate

    elbo, elbo_se = elbo_estimate(log_weights)
    result = MethodResult(
        method="", draws=draws, elbo_trace=elbo_trace, elbo=elbo, log_weights=log_weights,
        num_iterations=len(elbo_trace), converged=converged, stop_reason=stop_reason,
        sample_stats={"log_weight": log_weights[0][None]},
    )
    result.notes.append(f"ELBO estimated from {sum(map(len, log_weights))} draws (se {elbo_se:.3g})")
    return result


def run_nuts(
    problem: Problem, seed: int, *, num_warmup: int = 500, num_samples: Optional[int] = None,
    num_chains: int = 4,
) -> MethodResult:
    """NumPyro NUTS, ``num_chains`` chains vectorized; draws and divergences returned."""
    import jax
    from numpyro.infer import MCMC, NUTS

    model, args, kwargs = numpyro_program(problem)
    num_samples = num_samples or problem.num_draws
    mcmc = MCMC(
        NUTS(model), num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
        chain_method="vectorized", progress_bar=problem.progress_bar,
    )
    mcmc.run(jax.random.PRNGKey(seed), *args, extra_fields=("diverging", "num_steps"), **kwargs)
    samples = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    draws = {s: np.asarray(samples[s]) for s in problem.latent_sites if s in samples}
    stats = {"diverging": np.asarray(extra["diverging"]), "n_steps": np.asarray(extra["num_steps"])}
    result = MethodResult(
        method="nuts", draws=draws, num_iterations=num_warmup + num_samples,
        stop_reason=f"{num_chains} NumPyro chains x ({num_warmup} warmup + {num_samples}) draws",
        sample_stats=stats,
    )
    divergences = int(stats["diverging"].sum())
    if divergences:
        result.notes.append(f"{divergences} divergent transitions")
    return result


def run_cavi(problem: Problem, seed: int, **options: Any) -> MethodResult:
    """``ppl_vi.numpyro.CAVI`` through its public API (run, sample_posterior, guide)."""
    import jax

    from ppl_vi.numpyro import CAVI

    cavi = CAVI(problem.model)
    fit_key, draw_key, weight_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    fit = cavi.run(fit_key, *problem.args, progress_bar=problem.progress_bar, **options, **problem.kwargs)
    sample = cavi.sample_posterior(draw_key, fit, problem.num_draws)
    draws = {s: np.asarray(sample[s])[None] for s in problem.latent_sites if s in sample}
    result = _cavi_result(fit, draws)
    try:
        result.log_weights = importance_log_weights(problem, cavi.guide(fit), {}, int(weight_key[-1]))[1]
    except Exception as exc:  # k̂ is a diagnostic; its failure must not discard the fit
        result.notes.append(f"no k̂: {type(exc).__name__}: {exc}")
    return result


def _cavi_result(fit: Any, draws: dict) -> MethodResult:
    elbo_trace = np.asarray(fit.elbo, dtype=float)
    moments = {}
    for site in draws:
        try:
            q = fit.posterior[site]
            moments[site] = (np.asarray(q.mean), np.sqrt(np.asarray(q.variance)))
        except (KeyError, NotImplementedError, AttributeError):
            continue
    return MethodResult(
        method="cavi", draws=draws, moments=moments, elbo_trace=elbo_trace,
        elbo=float(elbo_trace[-1]) if elbo_trace.size else float("nan"),
        num_iterations=int(getattr(fit, "num_steps", elbo_trace.size)),
        converged=bool(fit.converged), stop_reason=str(getattr(fit, "stop_reason", "")),
    )


def exact_guide(params: dict) -> Callable[..., Any]:
    """A NumPyro guide sampling the zoo's closed-form posterior ``params``."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    for site, (family, _) in params.items():
        if not isinstance(site, str) or not hasattr(dist, family):
            raise NotImplementedError(f"closed form {family!r} of {site!r} is not a NumPyro distribution")

    def guide(*args: Any, **kwargs: Any) -> None:
        for site, (family, values) in params.items():
            q = getattr(dist, family)(**{k: jnp.asarray(v) for k, v in values.items()})
            numpyro.sample(site, q.to_event(len(q.batch_shape)) if q.batch_shape else q)

    return guide


def run_langevin(problem: Problem, seed: int, **options: Any) -> MethodResult:
    """MALA (or ULA with ``mala=False``) on the posterior score of the NumPyro program."""
    from ppl_vi.numpyro.langevin_sampling import langevin_posterior

    model, args, kwargs = numpyro_program(problem)
    options.setdefault("num_samples", problem.num_draws)
    fit = langevin_posterior(model, args, kwargs, rng_key=seed, progress_bar=problem.progress_bar, **options)
    return _langevin_result(problem, fit)


def _langevin_result(problem: Problem, fit: Any) -> MethodResult:
    draws = {s: np.asarray(fit.samples[s]) for s in problem.latent_sites if s in fit.samples}
    num_chains, num_samples = next(iter(draws.values())).shape[:2]
    result = MethodResult(
        method="langevin", draws=draws, num_iterations=num_samples,
        stop_reason=f"{num_chains} chains x {num_samples} draws, median step size {float(np.median(fit.step_size)):.3g}",
    )
    result.notes.append(f"mean acceptance probability {float(fit.acceptance_rate):.2f}")
    return result


def run_ngsvi(problem: Problem, seed: int, *, local_plate: str = "data", batch_size: Optional[int] = None,
              num_epochs: int = 10) -> MethodResult:
    """ppl_vi's ``NaturalGradientSVI``: draws from the fitted global factors."""
    import jax

    from ppl_vi.numpyro import NaturalGradientSVI

    fit_key, draw_key = jax.random.split(jax.random.PRNGKey(seed))
    ngsvi = NaturalGradientSVI(problem.model, local_plate=local_plate, **_batch_option(batch_size))
    fit = ngsvi.run(fit_key, *problem.args, num_epochs=num_epochs, progress_bar=problem.progress_bar,
                    **problem.kwargs)
    keys = dict(zip(fit.posterior, jax.random.split(draw_key, len(fit.posterior))))
    draws = {s: np.asarray(fit.posterior[s].sample(keys[s], (problem.num_draws,)))[None]
             for s in problem.latent_sites if s in fit.posterior}
    return ngsvi_result(fit, draws)


def _batch_option(batch_size: Optional[int]) -> dict:
    return {} if batch_size is None else {"batch_size": batch_size}


def ngsvi_result(fit: Any, draws: dict) -> MethodResult:
    """A :class:`MethodResult` from a NaturalGradientSVI result of either backend."""
    elbo = np.asarray(fit.elbo, dtype=float)
    result = MethodResult(
        method="ngsvi", draws=draws, elbo_trace=elbo, elbo=float(elbo[-1]) if elbo.size else float("nan"),
        num_iterations=int(fit.num_steps), stop_reason=f"{int(fit.num_steps)} minibatch steps",
    )
    result.notes.append("ELBO: exact full-data mean-field ELBO per epoch; no k̂ (global factors only)")
    return result
