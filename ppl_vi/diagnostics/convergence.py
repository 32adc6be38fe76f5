"""A noise-aware plateau test for stochastic ELBO traces (early stopping for SVI).

Stan's ADVI stops when the relative change of the ELBO falls below ``tol_rel_obj``
(default 0.01) in mean or median over a circular buffer of recent evaluations. A
single-particle SVI loss is too noisy to compare step to step, so this test compares
*window means*: with ``w`` the window length, ``m_1`` the mean ELBO of the last ``w``
steps and ``m_0`` of the ``w`` before,

    ``|m_1 - m_0| <= max(tol_rel * |m_1|, z * se)``,   ``se = sqrt(v_0/w + v_1/w)``

where ``v`` are the within-window variances: the change is either negligible relative to
the ELBO (Stan's criterion, on smoothed values) or not distinguishable from the
Monte Carlo noise at ``z`` standard errors. The trace has plateaued when this holds for
``patience`` consecutive windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlateauTest:
    """Windowed relative-ELBO plateau test.

    Attributes
    ----------
    window : int
        Steps per window (``w``); the test runs once per window.
    tol_rel : float
        Relative-change tolerance on window means (Stan ADVI ``tol_rel_obj`` analogue).
    z : float
        Noise allowance in standard errors of the window-mean difference.
    patience : int
        Consecutive plateaued windows needed to stop.
    """

    window: int = 200
    tol_rel: float = 1e-3
    z: float = 2.0
    patience: int = 2

    def __post_init__(self) -> None:
        if self.window < 2 or self.patience < 1 or self.tol_rel < 0 or self.z < 0:
            raise ValueError(
                f"PlateauTest needs window >= 2, patience >= 1, tol_rel >= 0, z >= 0; got {self}"
            )

    def window_changes(self, elbo: np.ndarray) -> np.ndarray:
        """Per complete window after the first: True where the window plateaued.

        Parameters
        ----------
        elbo : array, shape (num_steps,)
            ELBO per step (higher is better; pass ``-loss``).

        Returns
        -------
        array of bool, shape (num_steps // window - 1,)
        """
        trace = np.asarray(elbo, dtype=float)
        num_windows = trace.size // self.window
        if num_windows < 2:
            return np.zeros(0, dtype=bool)
        windows = trace[: num_windows * self.window].reshape(num_windows, self.window)
        means = windows.mean(axis=1)
        variances = windows.var(axis=1, ddof=1)
        change = np.abs(np.diff(means))
        se = np.sqrt((variances[1:] + variances[:-1]) / self.window)
        allowed = np.maximum(self.tol_rel * np.abs(means[1:]), self.z * se)
        return np.isfinite(change) & (change <= allowed)

    def converged(self, elbo: np.ndarray) -> bool:
        """Whether the last ``patience`` windows of ``elbo`` all plateaued."""
        flags = self.window_changes(elbo)
        return flags.size >= self.patience and bool(flags[-self.patience :].all())
