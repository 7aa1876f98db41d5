"""Environment variables: ``FLEETLEDGER_*``, and the ``TOKENLEDGER_*`` names of earlier releases.

The project was first published as ``tokenledger``; a deployment may still set the old variables.
They keep working: each old variable that is set, and whose new name is not, is adopted under the
new name with a one-line :class:`FutureWarning` (shown once per variable) saying what to rename.
When both are set, the new name wins and the old one is ignored (with the same warning).
"""

from __future__ import annotations

import os
import warnings

__all__ = ["PREFIX", "LEGACY_PREFIX", "adopt_legacy_environment", "env"]

PREFIX = "FLEETLEDGER_"
LEGACY_PREFIX = "TOKENLEDGER_"
_warned: set[str] = set()


def adopt_legacy_environment() -> list[str]:
    """Copy every set ``TOKENLEDGER_X`` to ``FLEETLEDGER_X`` when that is unset; returns the old names seen."""
    seen = []
    for name in sorted(os.environ):
        if not name.startswith(LEGACY_PREFIX):
            continue
        new = PREFIX + name[len(LEGACY_PREFIX) :]
        seen.append(name)
        adopted = new not in os.environ
        if adopted:
            os.environ[new] = os.environ[name]
        if name not in _warned:
            _warned.add(name)
            action = "read as" if adopted else "ignored in favour of"
            warnings.warn(f"{name} is deprecated and {action} {new}: rename it", FutureWarning, stacklevel=3)
    return seen


def env(suffix: str, default: str | None = None) -> str | None:
    """The value of ``FLEETLEDGER_<suffix>`` (or its deprecated ``TOKENLEDGER_`` name), else ``default``."""
    adopt_legacy_environment()
    return os.environ.get(PREFIX + suffix, default)
