"""What the gateway's request handling shares: ASGI types, the per-request state and its tags, response
helpers (headers, error responses)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from fleetledger.budgets.enforce import Reservation
from fleetledger.gateway.keys import VirtualKey
from fleetledger.gateway.policies import Applied
from fleetledger.gateway.upstream import UpstreamResponse
from fleetledger.gateway.wire import GatewayError

__all__ = [
    "Scope",
    "Message",
    "Receive",
    "Send",
    "HOP_BY_HOP",
    "ClientGone",
    "Call",
    "call_tags",
    "response_headers",
    "send_bytes",
    "send_json",
    "send_error",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"content-encoding",
        b"date",
        b"server",
    }
)


class ClientGone(Exception):
    """The client went away (or the response must be cut off): end the ASGI call without a response."""


@dataclass
class Call:
    """One request's state as it moves through the gateway."""

    request_id: str
    wire: str
    endpoint: str
    path: str
    headers: dict[bytes, bytes]
    key: VirtualKey | None = None
    body: dict[str, Any] = field(default_factory=dict)
    raw: bytes = b""
    changed: bool = False
    requested_model: str = ""
    model: str = ""
    upstream: str | None = None
    stream: bool = False
    hide_usage_chunk: bool = False
    applied: Applied | None = None
    downgraded_from: str | None = None
    reservation: Reservation | None = None
    remaining_nanos: int | None = None
    cache_mode: str = "off"
    cache_ttl_s: int = 3600
    cache_threshold: float | None = None
    cache_key: str | None = None
    started: float = 0.0

    @property
    def dims(self) -> dict[str, Any]:
        return dict(self.key.dims) if self.key else {}


async def send_bytes(
    send: Send, status: int, body: bytes, request_id: str | None, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    out = list(headers or ())
    if not any(name == b"content-type" for name, _ in out):
        out.append((b"content-type", b"application/json"))
    if request_id is not None:
        out.append((b"x-request-id", request_id.encode()))
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_json(send: Send, status: int, payload: Any, request_id: str) -> None:
    await send_bytes(send, status, json.dumps(payload).encode(), request_id)


def response_headers(call: Call, response: UpstreamResponse | None = None) -> list[tuple[bytes, bytes]]:
    """The headers of a response to ``call``: the upstream's (``response``), less hop-by-hop and
    fleetledger ones, plus the request id and the model a policy downgraded from."""
    out: list[tuple[bytes, bytes]] = []
    if response is not None:
        for lowered, value in response.raw_headers:
            if lowered not in HOP_BY_HOP and not lowered.startswith(b"x-fleetledger-") and lowered != b"x-request-id":
                out.append((lowered, value))
    out.append((b"x-request-id", call.request_id.encode()))
    if call.downgraded_from:
        out.append((b"x-fleetledger-downgraded-from", call.downgraded_from.encode()))
    return out


def call_tags(call: Call, outcome: str | None = None) -> dict[str, str]:
    """The ``gateway.*`` tags of the usage event recorded for ``call``."""
    tags = {"gateway.key": call.key.key_id if call.key else "", "gateway.upstream": call.upstream or ""}
    if call.downgraded_from:
        tags["gateway.downgraded_from"] = call.downgraded_from
    if call.applied and call.applied.policy_ids:
        tags["gateway.policies"] = ",".join(map(str, call.applied.policy_ids))
    if outcome:
        tags["gateway.outcome"] = outcome
    return tags


async def send_error(send: Send, call: Call, exc: GatewayError) -> None:
    """Answer with ``exc`` in the caller's provider error shape."""
    extra = [(k.encode(), v.encode()) for k, v in exc.headers.items()]
    await send_bytes(send, exc.status, exc.body(call.wire), call.request_id, extra)
