"""How a provider's lines meet the ledger's attribution: one :class:`KeyMap` per provider.

A provider line carries the provider's own key (OpenAI's ``project_id``, Anthropic's
``workspace_id``, an ``api_key_id``); the ledger attributes by its dimensions. A key map names the
provider field, the ledger dimension (or ``tag.<name>``) holding the same thing, and aliases
between their values. :func:`key_maps` overlays ``Settings.reconciliation_keys`` on
:data:`DEFAULT_KEY_MAPS` and checks it; see ``docs/reconciliation.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetledger.core.errors import InvalidInput

__all__ = ["KeyMap", "DEFAULT_KEY_MAPS", "key_maps", "settings_keys"]

_PROVIDER_KEYS = ("project_id", "api_key_id", "workspace_id", "none")
_LEDGER_KEYS = ("project", "department", "team", "cost_center", "environment", "agent", "user")


@dataclass(frozen=True, slots=True)
class KeyMap:
    """How one provider's attribution meets the ledger's.

    ``provider_key``: the provider line field (``project_id``, ``api_key_id``, ``workspace_id``, or
    ``none`` to compare per day and model only). ``ledger_key``: the event dimension or
    ``tag.<name>`` holding the same thing. ``aliases``: provider value -> ledger value (``""`` on
    either side means null: the default project or workspace, an unattributed event).
    """

    provider_key: str = "project_id"
    ledger_key: str = "project"
    aliases: Mapping[str, str] = field(default_factory=dict)

    def ledger_value(self, provider_value: str | None) -> str | None:
        mapped = self.aliases.get(provider_value or "", provider_value)
        return mapped or None


DEFAULT_KEY_MAPS: dict[str, KeyMap] = {
    "openai": KeyMap("project_id", "project"),
    "anthropic": KeyMap("workspace_id", "project"),
}


def key_maps(raw: Mapping[str, Any] | None) -> dict[str, KeyMap]:
    """The defaults overlaid with ``{provider: {"provider_key", "ledger_key", "aliases"}}`` (checked)."""
    out = dict(DEFAULT_KEY_MAPS)
    for provider, spec in (raw or {}).items():
        if not isinstance(spec, Mapping):
            raise InvalidInput(f"reconciliation_keys.{provider}: expected an object with provider_key, ledger_key")
        unknown = set(spec) - {"provider_key", "ledger_key", "aliases"}
        if unknown:
            raise InvalidInput(f"reconciliation_keys.{provider}: unknown field {sorted(unknown)[0]!r}")
        base = out.get(provider, KeyMap())
        provider_key = spec.get("provider_key", base.provider_key)
        ledger_key = spec.get("ledger_key", base.ledger_key)
        if provider_key not in _PROVIDER_KEYS:
            raise InvalidInput(
                f"reconciliation_keys.{provider}.provider_key: {provider_key!r}; use {', '.join(_PROVIDER_KEYS)}"
            )
        if ledger_key not in _LEDGER_KEYS and not (isinstance(ledger_key, str) and ledger_key.startswith("tag.")):
            raise InvalidInput(
                f"reconciliation_keys.{provider}.ledger_key: {ledger_key!r}; "
                f"use {', '.join(_LEDGER_KEYS)} or tag.<name>"
            )
        aliases = spec.get("aliases", base.aliases) or {}
        if not isinstance(aliases, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
        ):
            raise InvalidInput(f"reconciliation_keys.{provider}.aliases: expected {{provider value: ledger value}}")
        out[provider] = KeyMap(provider_key, ledger_key, dict(aliases))
    return out


def settings_keys(ledger: Any) -> dict[str, KeyMap]:
    """The key maps configured for ``ledger`` (``Settings.reconciliation_keys`` over the defaults)."""
    return key_maps(getattr(ledger.settings, "reconciliation_keys", None))
