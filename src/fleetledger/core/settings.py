"""Configuration, from arguments, environment variables (``FLEETLEDGER_*``) or a ``.env`` file.

The ``TOKENLEDGER_*`` names of earlier releases are still read, with a one-line deprecation warning
(:mod:`fleetledger.core.environment`).

| setting | environment variable | default |
| --- | --- | --- |
| ``database_url`` | ``FLEETLEDGER_DATABASE_URL`` | ``sqlite:///./fleetledger.db`` |
| ``fx_rates`` | ``FLEETLEDGER_FX_RATES`` (JSON, units per USD) | EUR, GBP, JPY, CHF, CAD, AUD, INR rates |
| ``currency`` | ``FLEETLEDGER_CURRENCY`` | ``USD`` |
| ``spool_dir`` | ``FLEETLEDGER_SPOOL_DIR`` | beside the SQLite file, or ``~/.local/state/fleetledger`` |
| ``batch_size`` | ``FLEETLEDGER_BATCH_SIZE`` | 200 events per background write |
| ``flush_interval_s`` | ``FLEETLEDGER_FLUSH_INTERVAL_S`` | 0.2 s |
| ``queue_size`` | ``FLEETLEDGER_QUEUE_SIZE`` | 100 000 events held before ``record()`` waits |
| ``approval_limit_usd`` | ``FLEETLEDGER_APPROVAL_LIMIT_USD`` | none: budget increases above it need approval |
| ``otel_attribute_map`` | ``FLEETLEDGER_OTEL_ATTRIBUTE_MAP`` | ``{}``: extra span attribute -> event field mapping |
| ``reconciliation_keys`` | ``FLEETLEDGER_RECONCILIATION_KEYS`` | ``{}``: provider key -> ledger key maps (JSON) |
| ``reconciliation_tolerance_usd`` | ``FLEETLEDGER_RECONCILIATION_TOLERANCE_USD`` | 0.0001 per request |
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fleetledger.core.environment import PREFIX, adopt_legacy_environment
from fleetledger.core.urls import DEFAULT_URL, database_path

__all__ = ["Settings", "DEFAULT_FX_RATES"]

#: Indicative rates (units of currency per 1 USD), to be replaced by the finance team's own.
DEFAULT_FX_RATES = {
    "EUR": Decimal("0.92"),
    "GBP": Decimal("0.79"),
    "JPY": Decimal("150"),
    "CHF": Decimal("0.88"),
    "CAD": Decimal("1.37"),
    "AUD": Decimal("1.52"),
    "INR": Decimal("83.5"),
}


class Settings(BaseSettings):
    """Every setting; ``TOKENLEDGER_*`` variables of earlier releases are still read (with a warning)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")

    def __init__(self, **values: Any) -> None:
        adopt_legacy_environment()
        super().__init__(**values)

    database_url: str = DEFAULT_URL
    fx_rates: dict[str, Decimal] = Field(default_factory=lambda: dict(DEFAULT_FX_RATES))
    currency: str = "USD"
    spool_dir: Path | None = None
    batch_size: int = Field(default=200, ge=1, le=10_000)
    flush_interval_s: float = Field(default=0.2, gt=0, le=60)
    queue_size: int = Field(default=100_000, ge=100)
    approval_limit_usd: Decimal | None = None
    otel_attribute_map: dict[str, str] = Field(default_factory=dict)
    #: How provider lines meet the ledger's attribution, per provider (docs/reconciliation.md).
    reconciliation_keys: dict[str, dict[str, Any]] = Field(default_factory=dict)
    reconciliation_tolerance_usd: Decimal = Field(default=Decimal("0.0001"), ge=0)

    @field_validator("fx_rates")
    @classmethod
    def _positive(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        for currency, rate in rates.items():
            if not rate.is_finite() or rate <= 0:
                raise ValueError(f"fx rate for {currency} must be positive")
        return {currency.upper(): rate for currency, rate in rates.items()}

    def resolved_spool_dir(self) -> Path:
        if self.spool_dir is not None:
            return self.spool_dir
        path = database_path(self.database_url)
        if path is not None:
            return Path(path + ".spool")
        digest = hashlib.sha256(self.database_url.encode()).hexdigest()[:12]
        return Path.home() / ".local" / "state" / "fleetledger" / f"spool-{digest}"
