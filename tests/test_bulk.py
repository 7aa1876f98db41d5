"""Parallel file ingest gives exactly what serial ingest gives, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fleetledger import Ledger, Settings
from fleetledger.demo.generator import DemoSpec, generate
from fleetledger.ledger import parallel as bulk


def write_file(path, events: int) -> int:
    bad = 0
    with open(path, "w") as handle:
        for n, event in enumerate(
            generate(DemoSpec(seed=5, days=14, events=events, end=datetime(2026, 10, 1, tzinfo=UTC)))
        ):
            handle.write(json.dumps(event) + "\n")
            if n % 997 == 0:
                handle.write('{"timestamp": "2026-09-20T00:00:00Z", "model": "gpt-4o", "input_tokens": -1}\n')
                bad += 1
    return bad


def test_chunks_cover_the_file_on_line_boundaries(tmp_path):
    path = tmp_path / "u.jsonl"
    write_file(path, 3_000)
    chunks = bulk.plan_chunks(path, chunk_bytes=50_000)
    assert len(chunks) > 5
    assert chunks[0].start == 0 and chunks[-1].end == path.stat().st_size
    lines = path.read_bytes().split(b"\n")
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.end == after.start
        assert path.read_bytes()[after.start - 1 : after.start] == b"\n"
        assert lines[after.first_line - 1] == path.read_bytes()[after.start :].split(b"\n", 1)[0]


def test_parallel_equals_serial(db_url, tmp_path, monkeypatch):
    path = tmp_path / "usage.jsonl"
    bad = write_file(path, 6_000)
    monkeypatch.setattr(bulk, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 200_000)
    serial_folder = tmp_path / "serial"
    serial = Ledger(
        settings=Settings(database_url=f"sqlite:///{serial_folder}.db", spool_dir=serial_folder), background=False
    )
    expected = bulk.ingest_files(serial, [path], workers=1)
    parallel = Ledger(settings=Settings(database_url=db_url, spool_dir=tmp_path / "spool"), background=False)
    got = bulk.ingest_files(parallel, [path], workers=2)
    try:
        assert got.to_dict() == expected.to_dict() == {"accepted": 6_000, "duplicates": 0, "rejected": bad}
        assert got.cost_nanos == expected.cost_nanos
        assert [r.location for r in got.rejections] == [r.location for r in expected.rejections]
        assert got.rejections[0].location == "usage.jsonl:2"
        by = ["department", "model"]
        window = {"since": "2026-09-01", "until": "2026-10-02"}
        assert parallel.costs(by=by, **window).rows() == serial.costs(by=by, **window).rows()
        again = bulk.ingest_files(parallel, [path], workers=2)
        assert (again.accepted, again.duplicates) == (0, 6_000)
    finally:
        serial.close()
        parallel.close()
