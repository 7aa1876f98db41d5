"""Root causes (:func:`explain`): which dimension values explain an anomaly, and by which mechanism.

The window is compared with the same hours of the trailing ``weeks`` weeks (per value: the mean
of those weeks, scaled to the detector's expectation; means add up to the same baseline total
in every dimension, so shares compare across dimensions). For each dimension of
:data:`CAUSE_DIMENSIONS`, each value's *excess* is its spend beyond a proportional scale-up of
its baseline, ``c_v - b_v x C/B``; its explained share is ``excess / (C - B)``. A share above 1
means other values fell as this one rose: if this value's calls cost what the scope's calls
cost before, it is a relabelling (a version rollout) and the share is folded back (``2 - x``);
if they cost ``_DEARER`` (1.5x) or more (a dearer model, bloated prompts), it explains the
change whole (1). The best value per dimension is
a candidate; its mechanism comes from its own slice: a single ``session_id`` is a
``runaway_loop``; a ``model`` whose share of requests rose is a ``model_switch``, one with the
same share but dearer tokens a ``price_change``; a slice sending >= 1.5x the tokens per request
is ``token_bloat``; otherwise more requests are a ``request_surge`` (``mix_change`` when
requests did not rise). Candidates within 0.15 of the best explained share are ranked by how
specific and actionable their dimension is (:data:`CAUSE_DIMENSIONS` order: a session, then a
model, a version, an environment... before a task or a user, which often just label the same
extra traffic); the others follow by explained share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetledger.analytics.anomalies.anomaly import CAUSE_DIMENSIONS, Anomaly
from fleetledger.core.money import format_usd
from fleetledger.core.time import to_us
from fleetledger.storage.query import grouped_costs
from fleetledger.storage.store import DAY_US, Store

__all__ = ["explain"]

_TIE = 0.15  # explained shares this close count as a tie, broken by dimension
_DEARER = 1.5  # cost per request, relative to the scope's baseline, that marks a dearer slice
_MAX_CAUSES = 5


@dataclass
class _Slice:
    # nano-USD as a float: baselines are averages of past weeks scaled by trend (estimates, shown
    # rounded to the nano-dollar); the anomaly's own expected/actual/impact figures are integers.
    cost: float = 0.0
    requests: float = 0.0
    tokens: float = 0.0

    @property
    def tokens_per_request(self) -> float | None:
        return self.tokens / self.requests if self.requests else None

    @property
    def cost_per_token(self) -> float | None:
        return self.cost / self.tokens if self.tokens else None


def _slices(
    store: Store, dimensions: Sequence[str], since_us: int, until_us: int, where: Mapping[str, list[str]]
) -> dict[str, dict[Any, _Slice]]:
    """Spend, requests and tokens per value of each dimension, in two grouped queries.

    One query for the dimensions the rollups keep, one (raw events) for the others (session,
    task, user); each groups by all of its dimensions at once and is summed per dimension here.
    """
    out: dict[str, dict[Any, _Slice]] = {d: {} for d in dimensions}
    raw = [d for d in dimensions if d in ("session_id", "task", "user")]
    for group in (raw, [d for d in dimensions if d not in raw]):
        if not group:
            continue
        for row in grouped_costs(store, group, since_us, until_us, where or None):
            m = row.measures
            cost, requests = float(m["cost_nanos"]), float(m["requests"])
            tokens = float(m["input_tokens"]) + float(m["output_tokens"])
            for dimension, value in zip(group, row.keys, strict=True):
                acc = out[dimension].get(value)
                if acc is None:
                    out[dimension][value] = _Slice(cost, requests, tokens)
                else:
                    acc.cost, acc.requests, acc.tokens = acc.cost + cost, acc.requests + requests, acc.tokens + tokens
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _mechanism(dimension: str, share: float, now: _Slice, base: _Slice, total_now: _Slice, total_base: _Slice) -> str:
    reference = base if base.requests else total_base
    tokens_ratio = _ratio(now.tokens_per_request, reference.tokens_per_request) or 1.0
    price_ratio = _ratio(now.cost_per_token, reference.cost_per_token) or 1.0
    requests_ratio = _ratio(total_now.requests, total_base.requests) or float("inf")
    if dimension == "session_id" and share >= 0.3:
        return "runaway_loop"
    if dimension == "model":
        share_now = now.requests / total_now.requests if total_now.requests else 0.0
        share_then = base.requests / total_base.requests if total_base.requests else 0.0
        if share_now - share_then >= 0.1:
            return "model_switch"
        if price_ratio >= 1.2 and tokens_ratio < 1.2:
            return "price_change"
    if tokens_ratio >= 1.5:
        return "token_bloat"
    if price_ratio >= 1.25 and tokens_ratio < 1.2 and requests_ratio < 1.3:
        return "price_change"
    return "request_surge" if requests_ratio >= 1.3 else "mix_change"


def _whole_scope_cause(anomaly: Anomaly, now: _Slice, base: _Slice) -> dict[str, Any]:
    requests = _rounded_ratio(now.requests, base.requests)
    per_request = _rounded_ratio(now.tokens_per_request, base.tokens_per_request)
    cost_per_token_now = now.cost / now.tokens if now.tokens else 0.0
    cost_per_token_base = base.cost / base.tokens if base.tokens else 0.0
    if requests is not None and requests >= 1.5 and (per_request is None or per_request < 1.3):
        cause = "request_surge"
    elif per_request is not None and per_request >= 1.3:
        cause = "token_bloat"
    elif cost_per_token_base and cost_per_token_now / cost_per_token_base >= 1.2:
        cause = "price_change"
    else:
        cause = "request_surge" if (requests or 0) >= 1.0 else "token_bloat"
    return {
        "cause": cause,
        "dimension": dict(anomaly.scope) or {"scope": "fleet"},
        "explained_share": 1.0,
        "baseline_usd": format_usd(round(base.cost)),
        "actual_usd": format_usd(round(now.cost)),
        "requests_ratio": requests,
        "tokens_per_request_ratio": per_request,
    }


def explain(store: Store, anomaly: Anomaly, *, weeks: int = 4) -> list[dict[str, Any]]:
    """Ranked root causes of ``anomaly``: which dimension values explain the change, and how."""
    since_us, until_us = to_us(anomaly.start), to_us(anomaly.end)
    where = {key: [value] for key, value in anomaly.scope.items()}
    candidates: list[dict[str, Any]] = []
    whole: tuple[_Slice, _Slice] | None = None
    dimensions = [d for d in CAUSE_DIMENSIONS if d not in anomaly.scope]
    windows = [_slices(store, dimensions, since_us, until_us, where)] + [
        _slices(store, dimensions, since_us - j * 7 * DAY_US, until_us - j * 7 * DAY_US, where)
        for j in range(1, weeks + 1)
    ]
    for dimension in dimensions:
        now = windows[0][dimension]
        weeks_back = [w[dimension] for w in windows[1:]]
        values = set(now).union(*weeks_back)
        # Each value's mean over the reference weeks (means, not medians: they add up to the same
        # total whatever the dimension, so explained shares compare across dimensions), scaled below
        # to the detector's expectation.
        base = {
            v: _Slice(
                *(sum(getattr(w.get(v, _Slice()), m) for w in weeks_back) / weeks for m in _Slice.__annotations__)
            )
            for v in values
        }
        total_now = _Slice(*(sum(getattr(s, m) for s in now.values()) for m in _Slice.__annotations__))
        total_base = _Slice(*(sum(getattr(s, m) for s in base.values()) for m in _Slice.__annotations__))
        # Scale the baseline to the detector's expectation (trend), so the deltas add up to the impact.
        k = anomaly.expected_nanos / total_base.cost if total_base.cost else 1.0
        for v in values:
            b = base[v]
            base[v] = _Slice(b.cost * k, b.requests * k, b.tokens * k)
        total_base = _Slice(total_base.cost * k, total_base.requests * k, total_base.tokens * k)
        whole = (total_now, total_base)
        delta = total_now.cost - total_base.cost
        if delta <= 0:
            continue
        growth = total_now.cost / total_base.cost if total_base.cost else 0.0
        base_per_request = total_base.cost / total_base.requests if total_base.requests else None
        best: tuple[float, Any] | None = None
        for v in values:
            c, r = now.get(v, _Slice()).cost, now.get(v, _Slice()).requests
            share = (c - base[v].cost * growth) / delta
            if share > 1:
                # More than the whole change: other values fell as this one rose. Calls that cost
                # what the scope's calls cost before are a relabelling (a version rollout), not the
                # explanation: fold the share back (2 - x). Calls that cost far more (a dearer
                # model, bloated prompts) explain the change whole.
                dearer = base_per_request and r and (c / r) / base_per_request >= _DEARER
                share = 1.0 if dearer else 2.0 - share
            share = max(0.0, min(1.0, share))
            if best is None or share > best[0]:
                best = (share, v)
        if best is None or best[0] <= 0:
            continue
        share, value = best
        slice_now, slice_base = now.get(value, _Slice()), base[value]
        candidates.append(
            {
                "cause": _mechanism(dimension, share, slice_now, slice_base, total_now, total_base),
                "dimension": {dimension: value},
                "explained_share": round(share, 3),
                "baseline_usd": format_usd(round(slice_base.cost)),
                "actual_usd": format_usd(round(slice_now.cost)),
                "requests_ratio": _rounded_ratio(slice_now.requests, slice_base.requests),
                "tokens_per_request_ratio": _rounded_ratio(
                    slice_now.tokens_per_request, (slice_base if slice_base.requests else total_base).tokens_per_request
                ),
            }
        )
    if not candidates:
        # Nothing shifted between values (one agent, one model, just more of it): the change is the
        # scope as a whole. Say which mechanism moved: requests, tokens per request, or price.
        return [_whole_scope_cause(anomaly, *whole)] if whole is not None else []
    top = max(c["explained_share"] for c in candidates)
    order = {d: i for i, d in enumerate(CAUSE_DIMENSIONS)}

    def rank(c: dict[str, Any]) -> tuple[int, float]:
        tied = c["explained_share"] >= top - _TIE
        (dimension,) = c["dimension"]
        return (0, order[dimension]) if tied else (1, -c["explained_share"])

    return sorted(candidates, key=rank)[:_MAX_CAUSES]


def _rounded_ratio(a: float | None, b: float | None) -> float | None:
    ratio = _ratio(a, b)
    return None if ratio is None else round(ratio, 2)
