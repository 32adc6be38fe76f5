"""The sweep's ELBO shortcut (reusing the last enumerated site's gradient) equals a full ELBO."""

from __future__ import annotations

import jax
import numpy as np

import models
from ppl_vi.core.cavi_objective import elbo
from ppl_vi.numpyro import CAVI


def test_reported_elbo_equals_full_elbo_of_the_returned_state():
    m = models.get("bayesian_gmm")
    cavi = CAVI(m.numpyro_model)
    plan = cavi.plan(**m.data("numpyro", seed=1, num_data=200))
    state = cavi.init(jax.random.PRNGKey(0))  # reuses the plan just derived
    assert plan.latents[plan.order[-1]].discrete  # the shortcut path is the one exercised
    update = jax.jit(cavi.update)
    for _ in range(4):
        state, info = update(state)
        full = float(elbo(plan, state.mean, state.natural))
        np.testing.assert_allclose(float(info.elbo), full, rtol=1e-12)
