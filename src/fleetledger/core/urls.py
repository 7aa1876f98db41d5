"""Database URLs: the default, their normal form, and the file behind a SQLite URL.

These are settings-level facts (where the ledger lives, where its spool and reports go beside it),
so they sit in the core: :class:`~fleetledger.core.settings.Settings` needs them without the
storage layer, and :class:`~fleetledger.storage.store.Store` builds its engine from
:func:`normalize_url`.
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_URL", "normalize_url", "database_path"]

#: A SQLite file in the working directory.
DEFAULT_URL = "sqlite:///./fleetledger.db"


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver for them.

    A bare file path (no ``://``) is a SQLite file.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if "://" not in url:  # a bare file path
        return f"sqlite:///{url}"
    return url


def database_path(url: str) -> str | None:
    """The absolute path of the SQLite file ``url`` names; None for in-memory SQLite and servers."""
    url = normalize_url(url)
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        return os.path.abspath(url[len("sqlite:///") :])
    return None
