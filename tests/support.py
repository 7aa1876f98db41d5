"""Helpers shared by test packages (importable as `support`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(app):
    """A real uvicorn server for ``app`` on a loopback port, stopped afterwards."""
    sock = socket.socket()  # bound here and handed to uvicorn: no other process can take the port meanwhile
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # generous: a busy machine
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def record_all(ledger, events, *, prefix: str = "ev") -> None:
    """What ``ledger.record(**fields)`` does for each of ``events`` (same parsing, pricing, rows and
    ``source``), written in batches instead of one transaction per event: fixtures stay cheap."""
    items = [(f"{prefix}-{n}", {"event_id": f"{prefix}-{n}", **fields}) for n, fields in enumerate(events)]
    result = ledger.ingest(items, source="sdk")
    assert (result.accepted, result.rejected, result.duplicates) == (len(items), 0, 0), result.rejections


# -- a cache of expensive test ledgers that survives between runs -----------------------------------

CACHE_DIR = Path(os.environ.get("FLEETLEDGER_TEST_CACHE", Path.home() / ".cache" / "fleetledger-tests"))
SRC = Path(__file__).resolve().parent.parent / "src" / "fleetledger"


def source_digest(*packages: str) -> str:
    """A digest of the Python source of these ``fleetledger`` subpackages (not of caches that tools
    leave beside it): a cached ledger built by them is reused only while none of them changed."""
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted((SRC / package).rglob("*.py")):
            if path.is_file() and not any(p.startswith((".", "__pycache__")) for p in path.relative_to(SRC).parts):
                digest.update(str(path.relative_to(SRC)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cached_sqlite(name: str, key: str, build, target: Path | None, *, keep: int = 2) -> Path | None:
    """Copy the SQLite ledger ``name`` built for ``key`` to ``target`` (None: no copy); ``build(path)``
    makes it when the cache has none (one process builds, concurrent ones wait for it). Only the
    ``keep`` newest versions of ``name`` stay in the cache."""
    import fcntl

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached = CACHE_DIR / f"{name}-{key}.db"
    with open(CACHE_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not cached.exists():
            building = CACHE_DIR / f".{name}-{key}-{os.getpid()}"
            shutil.rmtree(building, ignore_errors=True)
            building.mkdir()
            try:
                build(building / "ledger.db")
                wal = building / "ledger.db-wal"
                assert not wal.exists() or wal.stat().st_size == 0, "close the ledger before caching it"
                os.replace(building / "ledger.db", cached)
            finally:
                shutil.rmtree(building, ignore_errors=True)
            for old in sorted(CACHE_DIR.glob(f"{name}-*.db"), key=lambda p: p.stat().st_mtime)[:-keep]:
                old.unlink(missing_ok=True)
        os.utime(cached)
        if target is not None:
            shutil.copyfile(cached, target)
    return target
