"""The series the detector reads: per scope and point, spend, requests and tokens, and the
expected sum of each window from the weekly profile (same window of the trailing weeks, trend-scaled).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fleetledger.analytics.anomalies.anomaly import DetectorConfig
from fleetledger.analytics.charts import measure_sums
from fleetledger.storage.store import DAY_US, HOUR_US, Store

__all__ = ["STEP", "SEASON", "level_key", "scope_series", "window_sums", "expected_sums"]

STEP = {"day": DAY_US, "hour": HOUR_US}
SEASON = {"day": 7, "hour": 168}  # points per week


def level_key(level: str) -> list[str]:
    return [] if level == "fleet" else [level]


def scope_series(
    store: Store, level: str, granularity: str, first_us: int, until_us: int, *, by_model: bool = False
) -> dict[tuple[Any, ...], dict[str, list[int]]]:
    """Per scope of ``level`` (and model), cost, requests and tokens per point of the range."""
    step = STEP[granularity]
    n = (until_us - first_us) // step
    out: dict[tuple[Any, ...], dict[str, list[int]]] = {}
    keys = [granularity, *level_key(level), *(["model"] if by_model else [])]
    measures = ("cost_nanos", "requests", "input_tokens", "output_tokens")
    for (bucket, *scope), (cost, requests, tokens_in, tokens_out) in measure_sums(
        store, keys, first_us, until_us, {}, measures
    ).items():
        i = (int(bucket) - first_us) // step
        if 0 <= i < n:
            series = out.setdefault(tuple(scope), {k: [0] * n for k in ("cost", "requests", "tokens")})
            series["cost"][i] += cost
            series["requests"][i] += requests
            series["tokens"][i] += tokens_in + tokens_out
    return out


def window_sums(x: np.ndarray, length: int) -> np.ndarray:
    """Sum of the ``length`` points ending at each index of the last axis (NaN before a full window)."""
    n = x.shape[-1]
    out = np.full(x.shape, np.nan)
    if length <= n:
        c = np.cumsum(x, axis=-1, dtype=float)
        out[..., length - 1] = c[..., length - 1]
        out[..., length:] = c[..., length:] - c[..., :-length]
    return out


def expected_sums(x: np.ndarray, length: int, season: int, born: int, config: DetectorConfig) -> np.ndarray:
    """Expected sum of each ``length``-point window ending at index t (NaN: too little history).

    The median of the same window 1..``weeks`` weeks earlier, each scaled by how the series' level
    (its mean over the week before the window) has moved since, clipped to [0.5, 2]: the weekly
    profile (weekday, hour of week) with a robust trend adjustment. ``x`` may hold several series
    (rows) of one scope; they share ``born``, the first point with data.
    """
    n = x.shape[-1]
    window = window_sums(x, length)
    level = window_sums(x, season) / season  # level[..., t]: mean of the week ending at t
    t = np.arange(n)
    now_level = level[..., np.clip(t - length, 0, n - 1)]
    refs = np.full((config.weeks, *x.shape), np.nan)
    for j in range(1, config.weeks + 1):
        k = t - j * season
        then = np.where(k - length + 1 >= born, window[..., np.clip(k, 0, n - 1)], np.nan)
        then_level = level[..., np.clip(k - length, 0, n - 1)]
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.minimum(np.maximum(now_level / then_level, 0.5), 2.0)
        factor = np.where((k - length >= season - 1) & np.isfinite(factor), factor, 1.0)
        refs[j - 1] = then * factor
    # Median of the valid references (NaNs sort last), without numpy's slow masked nanmedian.
    count = np.sum(~np.isnan(refs), axis=0)
    ordered = np.sort(refs, axis=0)
    low = np.take_along_axis(ordered, (np.maximum(count - 1, 0) // 2)[None], axis=0)[0]
    high = np.take_along_axis(ordered, (count // 2 - (count == 0))[None], axis=0)[0]
    return np.where(count >= config.min_weeks, (low + high) / 2, np.nan)
