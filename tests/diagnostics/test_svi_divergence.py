"""A diverging SVI run stops at the first non-finite loss and keeps the last finite parameters."""

from __future__ import annotations

import re

import numpy as np

from ppl_vi.diagnostics.compare import make_problem
from ppl_vi.diagnostics.methods import run_method


def blowup_model(backend):
    """z ~ N(0, 1) with a factor exp(exp(z)): the ELBO gradient pushes z up until the
    factor overflows (z > log 709 ~ 6.56), a loss of -inf after a dozen Adam steps."""
    if backend == "numpyro":
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist

        def model():
            z = numpyro.sample("z", dist.Normal(0.0, 1.0))
            numpyro.factor("blowup", jnp.exp(jnp.exp(z)))
    else:
        import pyro
        import pyro.distributions as dist
        import torch

        def model():
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.factor("blowup", torch.exp(torch.exp(z)))
    return model


def test_diverging_svi_stops_and_keeps_the_last_finite_state(backend):
    problem = make_problem((blowup_model(backend), (), {}), backend, 200, 1, 0, None, False)
    result = run_method("svi", problem, 0, step_size=0.5, num_particles=1, plateau={"window": 10})
    assert result.status == "ok", result.error
    match = re.match(r"non-finite loss \((-?inf|nan)\) at step (\d+); stopped, keeping the parameters "
                     r"of step (\d+) \(the last finite loss\)", result.stop_reason)
    assert match, result.stop_reason
    bad_step, kept_step = int(match.group(2)), int(match.group(3))
    assert kept_step == bad_step - 1 == len(result.elbo_trace) == result.num_iterations
    assert 10 < bad_step < 40 and bad_step % 10 != 1  # inside a window: the replay path is used
    assert np.all(np.isfinite(result.elbo_trace)) and result.converged is False
    z = result.draws["z"]
    assert np.all(np.isfinite(z)) and z.mean() < np.log(709.0)  # before the overflow, not after
