"""Ingest large files on every core.

Validating and pricing an event costs tens of microseconds of Python; the database write is the
smaller part. So a large file is cut into chunks at line boundaries and each chunk is ingested by a
worker process with its own connection: the CPU-bound part runs in parallel, the writes interleave
(SQLite queues writers with ``BEGIN IMMEDIATE``; PostgreSQL runs them concurrently). Nothing about
the result depends on the order: ingest is idempotent by ``event_id`` and rollups are sums.

Line numbers in rejections are those of the original file, whatever chunk a line fell in.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetledger.core.settings import Settings
from fleetledger.ingest.files import detect_format, parse_jsonl_line, read_events
from fleetledger.ledger.facade import IngestResult, Ledger, Rejection

__all__ = ["ingest_files", "plan_chunks", "Chunk"]

#: Files smaller than this are ingested in-process (starting workers would cost more).
PARALLEL_MIN_BYTES = 8 * 1024 * 1024
CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Chunk:
    path: str
    start: int  # byte offset of the first line
    end: int  # byte offset after the last line
    first_line: int  # 1-based number of the first line


def plan_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """Cut a JSONL file into chunks that end on a newline, with the line number each starts at."""
    size = path.stat().st_size
    chunks: list[Chunk] = []
    start, line = 0, 1
    with open(path, "rb") as handle:
        while start < size:
            handle.seek(min(start + chunk_bytes, size))
            handle.readline()  # finish the line the cut fell in
            end = min(handle.tell(), size)
            if end <= start:
                end = size
            handle.seek(start)
            lines = handle.read(end - start).count(b"\n")
            chunks.append(Chunk(str(path), start, end, line))
            start, line = end, line + lines
    return chunks


def _chunk_lines(chunk: Chunk) -> Iterator[tuple[str, Any]]:
    name = Path(chunk.path).name
    with open(chunk.path, "rb") as handle:
        handle.seek(chunk.start)
        data = handle.read(chunk.end - chunk.start)
    for number, raw in enumerate(data.split(b"\n"), chunk.first_line):
        location = f"{name}:{number}"
        item = parse_jsonl_line(raw, location)
        if item is not None:
            yield location, item


_worker_ledger: Ledger | None = None


def _init_worker(settings_json: str) -> None:
    global _worker_ledger
    _worker_ledger = Ledger(settings=Settings.model_validate_json(settings_json), background=False)


def _ingest_chunk(chunk: Chunk, source: str | None) -> tuple[int, int, int, int, list[tuple[str, str]], int]:
    assert _worker_ledger is not None
    result = _worker_ledger.ingest(_chunk_lines(chunk), source=source)
    lines = result.accepted + result.duplicates + result.rejected
    return (
        result.accepted,
        result.duplicates,
        result.rejected,
        result.cost_nanos,
        [(r.location, r.reason) for r in result.rejections],
        lines,
    )


def ingest_files(
    ledger: Ledger,
    paths: Sequence[Path],
    *,
    fmt: str | None = None,
    source: str | None = None,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Ingest JSONL/CSV files; large JSONL files are split across ``workers`` processes.

    ``workers`` defaults to the number of CPUs; 1 ingests in this process.
    """
    workers = workers or os.cpu_count() or 1
    formats = [detect_format(path, fmt) for path in paths]
    parallel = [
        p for p, f in zip(paths, formats, strict=True) if f == "jsonl" and p.stat().st_size >= PARALLEL_MIN_BYTES
    ]
    serial = [(p, f) for p, f in zip(paths, formats, strict=True) if p not in parallel]
    result = IngestResult()
    for path, file_format in serial:
        _merge(result, ledger.ingest(read_events(path, file_format), source=source, on_progress=on_progress))
    if not parallel:
        return result
    if workers == 1:
        for path in parallel:
            _merge(result, ledger.ingest(read_events(path, "jsonl"), source=source, on_progress=on_progress))
        return result
    ledger.flush()
    chunks = [chunk for path in parallel for chunk in plan_chunks(path)]
    settings_json = ledger.settings.model_dump_json()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(settings_json,)) as pool:
        pending = {pool.submit(_ingest_chunk, chunk, source) for chunk in chunks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                accepted, duplicates, rejected, cost, rejections, lines = future.result()
                result.accepted += accepted
                result.duplicates += duplicates
                result.rejected += rejected
                result.cost_nanos += cost
                result.rejections.extend(Rejection(location, reason) for location, reason in rejections)
                if on_progress is not None:
                    on_progress(lines)
    result.rejections.sort(key=lambda r: _location_key(r.location))
    return result


def _location_key(location: str) -> tuple[str, int]:
    name, _, number = location.rpartition(":")
    return (name, int(number)) if number.isdigit() else (location, 0)


def _merge(total: IngestResult, part: IngestResult) -> None:
    total.accepted += part.accepted
    total.duplicates += part.duplicates
    total.rejected += part.rejected
    total.cost_nanos += part.cost_nanos
    total.rejections.extend(part.rejections)
