"""Read usage events from JSONL and CSV files, line by line, never giving up on a whole file.

Each reader yields ``(location, item)`` pairs where ``location`` is ``"file.jsonl:17"`` and ``item``
is the event (a mapping, or for JSONL the raw JSON line), or an :class:`~fleetledger.core.errors.InvalidEvent`
saying why that line cannot
be read (invalid UTF-8, broken JSON, a CSV row with too many cells...). The ledger validates the
mappings, so every rejection, whatever its cause, ends in one place with its line number.

CSV: the header names the event fields; empty cells are absent; ``tags`` may be a JSON object and
any ``tag.<name>`` column becomes a tag.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fleetledger.core.errors import InvalidEvent, InvalidInput

__all__ = ["read_events", "detect_format", "write_rejects", "parse_jsonl_line"]

#: A line longer than this is rejected rather than parsed (protects memory against a broken file).
MAX_LINE_BYTES = 1_000_000


def detect_format(path: Path, explicit: str | None = None) -> str:
    if explicit:
        if explicit not in ("jsonl", "csv"):
            raise InvalidInput(f"--input-format: {explicit!r} must be jsonl or csv")
        return explicit
    suffixes = [s.lower() for s in path.suffixes]
    if ".csv" in suffixes:
        return "csv"
    if {".jsonl", ".ndjson", ".json"} & set(suffixes):
        return "jsonl"
    raise InvalidInput(f"{path}: cannot tell the format from the name; pass --input-format jsonl or csv")


def read_events(path: Path, fmt: str | None = None) -> Iterator[tuple[str, Any]]:
    fmt = detect_format(path, fmt)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    reader = _read_jsonl if fmt == "jsonl" else _read_csv
    yield from reader(path)


def parse_jsonl_line(raw: bytes, location: str) -> bytes | InvalidEvent | None:
    """One JSONL line: the raw JSON for the ledger to parse, a reason it cannot be, or None if blank."""
    if not raw.strip():
        return None
    if len(raw) > MAX_LINE_BYTES:
        return InvalidEvent(f"line longer than {MAX_LINE_BYTES} bytes", location=location)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InvalidEvent(f"invalid UTF-8 at byte {exc.start}", location=location)
    # The raw line: the ledger parses and validates it in one pass (pydantic-core).
    return raw.rstrip(b"\r\n")


def _read_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            location = f"{path.name}:{number}"
            item = parse_jsonl_line(raw, location)
            if item is not None:
                yield location, item


def _csv_lines(path: Path) -> Iterator[tuple[int, str | InvalidEvent]]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield number, InvalidEvent(f"invalid UTF-8 at byte {exc.start}")


def _read_csv(path: Path) -> Iterator[tuple[str, Any]]:
    header: list[str] | None = None
    for number, line in _csv_lines(path):
        location = f"{path.name}:{number}"
        if isinstance(line, InvalidEvent):
            if header is None:
                raise InvalidInput(f"{location}: the header line is not valid UTF-8")
            line.location = location
            yield location, line
            continue
        if not line.strip():
            continue
        try:
            cells = next(csv.reader(io.StringIO(line)))
        except (csv.Error, StopIteration) as exc:
            yield location, InvalidEvent(f"broken CSV: {exc}", location=location)
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            if "timestamp" not in header:
                raise InvalidInput(f"{location}: CSV header must name the event fields (timestamp, provider, model...)")
            continue
        if len(cells) != len(header):
            yield location, InvalidEvent(f"{len(cells)} cells but the header has {len(header)}", location=location)
            continue
        yield location, _csv_row(dict(zip(header, cells, strict=True)), location)


def _csv_row(row: dict[str, str], location: str) -> dict[str, Any] | InvalidEvent:
    data: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for key, value in row.items():
        if value == "":
            continue
        if key.startswith("tag."):
            tags[key[4:]] = value
        elif key == "tags":
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                return InvalidEvent("tags: not a JSON object", location=location)
            if not isinstance(parsed, dict):
                return InvalidEvent("tags: not a JSON object", location=location)
            tags.update(parsed)
        else:
            data[key] = value
    if tags:
        data["tags"] = tags
    return data


def write_rejects(path: Path, rejections: list[Any]) -> None:
    """One JSON object per rejected line: where it was and why."""
    with open(path, "w", encoding="utf-8") as handle:
        for rejection in rejections:
            handle.write(json.dumps(rejection.to_dict()) + "\n")
