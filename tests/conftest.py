"""Shared test set-up: float64 everywhere, and a ``backend`` fixture for conformance tests."""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

jax.config.update("jax_enable_x64", True)
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)

BACKENDS = ("numpyro", "pyro")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Parametrize a test over both host libraries."""
    return request.param


@pytest.fixture
def as_backend(backend):
    """``as_backend(x)``: a NumPy array (or number) as an array of the ``backend`` fixture's library."""
    if backend == "numpyro":
        return jax.numpy.asarray
    return torch.as_tensor
