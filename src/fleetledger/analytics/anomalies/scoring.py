"""Robust statistics of the detector: the robust z of a log ratio, the overdispersion of a count
series and the 0-1 score a z becomes (``1 - 2^-(z/z_half)^2``: z = 3 scores 0.5, z = 5 about 0.85).
"""

from __future__ import annotations

import numpy as np

__all__ = ["overdispersion", "robust_z", "evidence_score"]


def overdispersion(actual: np.ndarray, expected: np.ndarray) -> float:
    """How many times noisier than Poisson a count series is (>= 1): calls come in sessions.

    The robust variance of the Pearson residuals ``(actual - expected) / sqrt(expected)``; a
    Poisson series gives about 1, a series whose calls come in runs of ~k calls about k.
    """
    ok = ~np.isnan(expected) & ~np.isnan(actual) & (np.nan_to_num(expected) > 0)
    if ok.sum() < 7:
        return 1.0
    pearson = (actual[ok] - expected[ok]) / np.sqrt(expected[ok])
    spread = 1.4826 * float(np.median(np.abs(pearson - np.median(pearson))))
    return max(1.0, spread**2)


def robust_z(
    actual: np.ndarray,
    expected: np.ndarray,
    floor: float,
    *,
    counts: bool,
    dispersion: float = 1.0,
    weights: np.ndarray | None = None,
    min_ratio: float = 1.0,
) -> np.ndarray:
    """Robust z of ``log(actual / expected)``: centred on the median residual, scaled by 1.4826 x MAD.

    Counts (requests) also get an overdispersed-Poisson floor on the scale,
    ``sqrt(dispersion / expected)``, so a handful of calls (or one long session) in a quiet window
    is not an alarm.
    """
    ok = ~np.isnan(expected) & ~np.isnan(actual)
    z = np.zeros(len(actual))
    if ok.sum() < 7:
        return z
    positive = actual[ok & (actual > 0)]
    if not len(positive):
        return z
    eps = max(2.0, 0.05 * float(np.median(positive))) if counts else 0.05 * float(np.median(positive))
    residual = np.log((actual[ok] + eps) / (expected[ok] + eps))
    center = float(np.median(residual))
    if weights is not None:  # a mean of n draws: its residual times sqrt(n) has a common scale
        scaled = (residual - center) * np.sqrt(weights[ok])
        z[ok] = scaled / max(1.4826 * float(np.median(np.abs(scaled - np.median(scaled)))), floor)
    else:
        scale = max(1.4826 * float(np.median(np.abs(residual - center))), floor)
        local = np.maximum(scale, np.sqrt(dispersion / (expected[ok] + eps))) if counts else scale
        z[ok] = (residual - center) / local
    if min_ratio > 1.0:  # a driver counts only when it moved materially itself
        z[ok] = np.where(actual[ok] >= min_ratio * expected[ok], z[ok], np.minimum(z[ok], 0.0))
    return z


def evidence_score(z: float, z_half: float) -> float:
    return 0.0 if z <= 0 else 1.0 - 2.0 ** (-((z / z_half) ** 2))
