"""ppl_vi for Pyro (torch) programs.

Names are loaded on first use, so importing one algorithm does not import them all.
The same names exist in :mod:`ppl_vi.numpyro`.
"""

from __future__ import annotations

import importlib

# public name -> submodule that defines it
_EXPORTS = {
    "CAVI": "cavi",
    "CAVIResult": "cavi",
    "LocalGuide": "svi",
    "NaturalGradientSVI": "ngsvi",
    "AmortizedGuide": "amortized",
    "vae_loss": "amortized",
    "amortization_gap": "amortized",
    "AmortizationGap": "amortized",
    "local_site_shapes": "amortized",
    "MLPEncoder": "amortized",
    "DiffusionChain": "diffusion",
    "DiffusionELBO": "diffusion",
    "langevin": "langevin_sampling",
    "annealed_langevin": "langevin_sampling",
    "posterior_score": "langevin_sampling",
    "langevin_posterior": "langevin_sampling",
    "dsm_loss": "score",
    "kde_score": "score",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
