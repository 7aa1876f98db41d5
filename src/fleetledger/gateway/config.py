"""``gateway.yaml``: upstream providers, routes and fallbacks, key defaults, cache and limits.

Validated with pydantic; every error names the field (``upstreams.openai.base_url: ...``). A
minimal file::

    upstreams:
      openai: {kind: openai, base_url: https://api.openai.com, api_key_env: OPENAI_API_KEY}
      anthropic: {kind: anthropic, base_url: https://api.anthropic.com, api_key_env: ANTHROPIC_API_KEY}

See docs/configuration.md ("Gateway") for every setting.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fleetledger.core.errors import InvalidInput
from fleetledger.core.usage import normalize_provider

__all__ = ["GatewayConfig", "Upstream", "Route", "Target", "load_config", "parse_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Upstream(_Strict):
    """One provider endpoint the gateway forwards to."""

    kind: Literal["openai", "anthropic"] = Field(description="wire format the upstream speaks")
    base_url: str = Field(description="e.g. https://api.openai.com (a trailing /v1 is accepted)")
    api_key_env: str | None = Field(default=None, description="environment variable holding the real key")
    provider: str | None = Field(default=None, description="provider name for pricing; default: the upstream's name")
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    connect_timeout_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    max_connections: Annotated[int, Field(ge=1, le=100_000)] = 1000

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        value = value.rstrip("/")
        return value[:-3] if value.endswith("/v1") else value

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class Target(_Strict):
    """Where a fallback goes: another upstream, another model, or both."""

    upstream: str | None = None
    model: str | None = None


class Route(_Strict):
    """Requests for ``model`` (exact name or a glob such as ``gpt-4o*``) go to ``upstream``."""

    model: str
    upstream: str
    fallbacks: list[Target] = Field(default_factory=list)

    def matches(self, model: str) -> bool:
        return self.model == model or (any(c in self.model for c in "*?[") and fnmatch.fnmatchcase(model, self.model))


class KeyDefaults(_Strict):
    """Defaults for ``fleetledger gateway keys create`` and for keys that leave a value unset."""

    dims: dict[str, str] = Field(default_factory=dict)
    rate_limit_rpm: Annotated[int | None, Field(default=None, ge=1)] = None
    cache: Literal["off", "exact", "semantic"] = "off"


class ExactCacheSettings(_Strict):
    url: str | None = Field(default=None, description="redis://... to share the cache; default a SQLite file")
    path: str = "gateway-cache.db"
    ttl_s: Annotated[int, Field(ge=1)] = 3600
    max_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024 * 1024


class SemanticCacheSettings(_Strict):
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.95
    ttl_s: Annotated[int, Field(ge=1)] = 3600
    max_entries: Annotated[int, Field(ge=1)] = 10_000


class CacheSettings(_Strict):
    exact: ExactCacheSettings = Field(default_factory=ExactCacheSettings)
    semantic: SemanticCacheSettings = Field(default_factory=SemanticCacheSettings)


class Limits(_Strict):
    max_body_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 10 * 1024 * 1024
    #: Output tokens assumed for the budget estimate when a request sets no maximum.
    default_max_output_tokens: Annotated[int, Field(ge=1)] = 4096
    #: Request-body bytes per input token for the budget estimate (conservative: JSON and UTF-8
    #: overhead make real prompts use more bytes per token than this).
    estimate_bytes_per_token: Annotated[int, Field(ge=1, le=16)] = 3
    #: Input tokens assumed per inline image or audio part (base64 is not billed by its size).
    estimate_media_tokens: Annotated[int, Field(ge=0)] = 2000
    reservation_ttl_s: Annotated[int, Field(ge=1, le=86_400)] = 600


class GatewayConfig(_Strict):
    upstreams: dict[str, Upstream] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    keys: KeyDefaults = Field(default_factory=KeyDefaults)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    limits: Limits = Field(default_factory=Limits)
    #: How often policies, virtual keys and budgets are re-read from the database.
    refresh_interval_s: Annotated[float, Field(gt=0, le=300)] = 1.0
    #: Further client headers passed to the upstream (anthropic-version/-beta and openai-organization/
    #: -project/-beta always are; the virtual key never is).
    forward_headers: list[str] = Field(default_factory=list)
    #: Fall back on these upstream statuses (and on timeouts / connection errors).
    fallback_on: list[int] = Field(default_factory=lambda: [429, 500, 502, 503, 504, 529])

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        blocked = {"authorization", "x-api-key", "host", "content-length", "content-type", "transfer-encoding"}
        self.forward_headers = [h.strip().lower() for h in self.forward_headers if h.strip()]
        for i, header in enumerate(self.forward_headers):
            if header in blocked:
                raise ValueError(f"forward_headers.{i}: {header!r} is set by the gateway itself")
        for name, upstream in self.upstreams.items():
            upstream.provider = normalize_provider(upstream.provider or name)
        for i, route in enumerate(self.routes):
            if route.upstream not in self.upstreams:
                raise ValueError(f"routes.{i}.upstream: unknown upstream {route.upstream!r}")
            for j, target in enumerate(route.fallbacks):
                if target.upstream is not None and target.upstream not in self.upstreams:
                    raise ValueError(f"routes.{i}.fallbacks.{j}.upstream: unknown upstream {target.upstream!r}")
        return self

    def default_upstream(self, kind: str) -> str | None:
        return next((name for name, u in self.upstreams.items() if u.kind == kind), None)

    def route_for(self, model: str) -> Route | None:
        return next((r for r in self.routes if r.matches(model)), None)


def parse_config(data: Any, *, source: str = "gateway config") -> GatewayConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(p) for p in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise InvalidInput(f"{source}: " + "; ".join(problems)) from None


def load_config(path: str | Path | None) -> GatewayConfig:
    """Read and validate a gateway.yaml (None: an empty configuration)."""
    if path is None:
        return GatewayConfig()
    import yaml

    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise InvalidInput(f"gateway config {file}: cannot be read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"gateway config {file}: not valid YAML ({exc})") from None
    return parse_config(data, source=str(file))
