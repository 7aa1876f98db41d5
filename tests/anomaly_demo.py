"""The 1M-event demo ledger that tests/insights/test_anomalies.py scores the detector on.

Building it costs about two and a half CPU-minutes (generating, validating and pricing a million
events), so the built SQLite file is cached in ``support.CACHE_DIR``. Its key is the spec, the
demo generator's source, and a fingerprint of what the rest of the pipeline (validation, pricing,
storage, schema, rollups) makes of the same fleet at 2% of the volume: every row of every table of
a 20k-event demo ledger built the same way, about two CPU-seconds. A change to the generator, or
any change of ingest, pricing or storage that changes a stored value, builds it again; a
refactoring that changes nothing stored reuses it.

``.ci/run`` starts ``python tests/anomaly_demo.py`` in the background as soon as the runtime is
installed, so that on a fresh machine the build overlaps the test extra's installation; the test
waits for it (a file lock) instead of building a second copy.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `support`, also when run as a script

from support import cached_sqlite, source_digest  # noqa: E402

DEMO_END = datetime(2026, 11, 1, tzinfo=UTC)


def spec():
    from fleetledger.demo.generator import DemoSpec

    return DemoSpec(seed=7, days=90, events=1_000_000, end=DEMO_END)


@functools.cache
def cache_key() -> str:
    digest = hashlib.sha256(f"{spec()!r}|{source_digest('demo')}|".encode())
    digest.update(_pipeline_fingerprint())
    return digest.hexdigest()[:16]


def _pipeline_fingerprint() -> bytes:
    """Everything stored (schema and rows of every table) for the same demo fleet at 20k events."""
    import sqlite3
    import tempfile

    from fleetledger import Ledger, Settings
    from fleetledger.demo.generator import DemoSpec, generate

    small = DemoSpec(seed=spec().seed, days=spec().days, events=20_000, end=DEMO_END)
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="fleetledger-fingerprint-") as folder:
        path = Path(folder) / "small.db"
        settings = Settings(database_url=f"sqlite:///{path}", spool_dir=Path(folder) / "spool")
        with Ledger(settings=settings, background=False, clock=lambda: DEMO_END) as ledger:
            ledger.ingest(((f"demo:{n}", e) for n, e in enumerate(generate(small), 1)), source="demo")
        with closing(sqlite3.connect(path)) as db:
            for name, sql in db.execute("SELECT name, sql FROM sqlite_master ORDER BY type, name"):
                digest.update(f"{name}|{sql}\n".encode())
                if sql and sql.startswith("CREATE TABLE"):
                    for row in sorted(map(repr, db.execute(f'SELECT * FROM "{name}"'))):
                        digest.update(row.encode() + b"\n")
    return digest.digest()


def build(path: Path) -> None:
    """Generate the demo stream to JSONL and ingest it on every core, as ``fleetledger demo`` would."""
    from fleetledger import Ledger, Settings
    from fleetledger.demo.generator import generate, ground_truth
    from fleetledger.ledger.parallel import ingest_files

    demo = spec()
    source = path.with_name("demo.jsonl")
    with open(source, "w") as handle:
        for event in generate(demo):
            handle.write(json.dumps(event, separators=(",", ":")) + "\n")
    settings = Settings(database_url=f"sqlite:///{path}", spool_dir=path.parent / "spool")
    with Ledger(settings=settings, background=False, clock=lambda: DEMO_END) as ledger:
        result = ingest_files(ledger, [source], source="demo")
        assert result.accepted > 0 and result.rejected == result.duplicates == 0, result
        ledger.store.set_meta("demo_ground_truth", ground_truth(demo))  # as `fleetledger demo` records it
    source.unlink()


def demo_ledger_file(target: Path | None) -> Path | None:
    """A private copy of the demo ledger at ``target`` (built, or taken from the cache); None:
    only make sure the cache has it."""
    return cached_sqlite("anomaly-demo", cache_key(), build, target)


if __name__ == "__main__":  # prebuild the cache entry (.ci/run)
    demo_ledger_file(None)
    print(f"anomaly demo ledger cached: {cache_key()}", flush=True)
