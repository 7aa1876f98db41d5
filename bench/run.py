"""fleetledger benchmarks. Results: docs/performance.md (copied by hand with the machine details).

    python bench/run.py                       # record, ingest, query at 1M events
    python bench/run.py query --sizes 1000000,10000000
    python bench/run.py ingest --events 500000 --postgres postgresql://postgres@127.0.0.1:5432/test

Each benchmark prints a table and writes bench/results/<name>.json. Ledgers built for the query
benchmark are cached in bench/.cache/ (delete it to rebuild). PostgreSQL runs when --postgres or
FLEETLEDGER_TEST_POSTGRES_URL names a server (each run uses its own schema, dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from fleetledger import Ledger, Settings
from fleetledger.demo.generator import DemoSpec, generate
from fleetledger.ledger.parallel import ingest_files
from fleetledger.storage.store import normalize_url

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CACHE = HERE / ".cache"
END = datetime(2026, 11, 1, tzinfo=UTC)


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def save(name: str, data: dict[str, object]) -> None:
    RESULTS.mkdir(exist_ok=True)
    data = {"benchmark": name, "when": datetime.now(UTC).isoformat(), "machine": machine(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))
    print(json.dumps(data, indent=2, default=str))


@contextmanager
def _sqlite_url(path: Path):
    yield f"sqlite:///{path}"


@contextmanager
def pg_schema(base: str):
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(normalize_url(base))
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def write_demo_file(path: Path, events: int, days: int = 90, seed: int = 7) -> None:
    with open(path, "w") as handle:
        for event in generate(DemoSpec(seed=seed, days=days, events=events, end=END)):
            handle.write(json.dumps(event, separators=(",", ":")) + "\n")


# -- record() ---------------------------------------------------------------------------------------


def _record_timings(calls: int, rate: float | None, writer_idle: bool = False) -> tuple[list[float], float]:
    folder = Path(tempfile.mkdtemp())
    settings = Settings(database_url=f"sqlite:///{folder / 'record.db'}", spool_dir=folder / "spool")
    if writer_idle:  # the writer sleeps through the timed calls: record()'s own cost, no contention
        settings = settings.model_copy(update={"batch_size": 10_000, "flush_interval_s": 60})
        calls = min(calls, 9_000)
    timings: list[float] = []
    with Ledger(settings=settings) as ledger:
        with ledger.attribute(department="research", agent="bench", environment="production"):
            for _ in range(2_000):  # warm-up: price tables, code paths
                ledger.record(provider="openai", model="gpt-4o", input_tokens=1200, output_tokens=300)
            ledger.flush()
            clock = time.perf_counter_ns
            interval = int(1e9 / rate) if rate else 0
            next_at = clock()
            for i in range(calls):
                if interval:
                    # Sleep (do not spin) until the next slot, as a process waiting on LLM calls does.
                    next_at += interval
                    delay = (next_at - clock()) / 1e9
                    if delay > 0:
                        time.sleep(delay)
                start = clock()
                ledger.record(
                    provider="anthropic" if i % 2 else "openai",
                    model="claude-sonnet-4-5" if i % 2 else "gpt-4o",
                    input_tokens=1200 + i % 500,
                    cache_read_tokens=400,
                    output_tokens=300,
                    operation="summarize",
                    session_id=f"s{i // 20}",
                )
                timings.append((clock() - start) / 1000)
        flush_start = time.perf_counter()
    flush_s = time.perf_counter() - flush_start
    shutil.rmtree(folder, ignore_errors=True)
    return timings, flush_s


def bench_record(args: argparse.Namespace) -> None:
    """Caller-thread cost of Ledger.record() with the background writer (SQLite).

    Three loads: a tight loop while the background writer is idle (record()'s own cost), a tight
    loop that saturates the writer (GIL contention, the worst case), and calls paced at ``--rate``
    per second with sleeps in between (on small VMs, code that runs after a sleep is 2-3x slower:
    cold caches; see docs/performance.md).
    """
    runs = []
    loads = (
        ("tight loop, writer idle", None, True),
        ("tight loop, writer busy", None, False),
        (f"paced {args.rate:,.0f}/s", args.rate, False),
    )
    for label, rate, idle in loads:
        timings, flush_s = _record_timings(args.calls, rate, idle)
        runs.append(
            {
                "load": label,
                "calls": len(timings),
                "p50_us": round(percentile(timings, 50), 1),
                "p90_us": round(percentile(timings, 90), 1),
                "p99_us": round(percentile(timings, 99), 1),
                "p999_us": round(percentile(timings, 99.9), 1),
                "max_us": round(max(timings), 1),
                "close_flush_s": round(flush_s, 3),
            }
        )
        print(runs[-1], flush=True)
    save("record", {"runs": runs})


# -- bulk ingest ------------------------------------------------------------------------------------


def bench_ingest(args: argparse.Namespace) -> None:
    """Events/s of `fleetledger ingest` on a demo JSONL file, SQLite and PostgreSQL, 1 and N workers."""
    folder = Path(tempfile.mkdtemp())
    source = folder / "usage.jsonl"
    write_demo_file(source, args.events)
    size_mb = source.stat().st_size / 1e6
    runs = []
    targets = [("sqlite", None)]
    if args.postgres:
        targets.append(("postgresql", args.postgres))
    for name, base in targets:
        for workers in sorted({1, os.cpu_count() or 1}):
            with _sqlite_url(folder / f"ingest-{workers}.db") if base is None else pg_schema(base) as url:
                ledger = Ledger(settings=Settings(database_url=url, spool_dir=folder / "spool"), background=False)
                start = time.perf_counter()
                result = ingest_files(ledger, [source], workers=workers)
                elapsed = time.perf_counter() - start
                ledger.close()
            assert result.accepted == args.events, result.to_dict()
            runs.append(
                {
                    "database": name,
                    "workers": workers,
                    "events": args.events,
                    "seconds": round(elapsed, 2),
                    "events_per_s": round(args.events / elapsed),
                }
            )
            print(runs[-1], flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    save("ingest", {"file_mb": round(size_mb, 1), "runs": runs})


# -- grouped query ----------------------------------------------------------------------------------


def _ingest_cached(source: Path, work: Path, path: Path) -> Path:
    """Ingest the JSONL ``source`` into a ledger built in ``work``, then move it to ``path`` (the cache)."""
    partial = work / "ledger.db"
    ledger = Ledger(settings=Settings(database_url=f"sqlite:///{partial}", spool_dir=work / "spool"), background=False)
    start = time.perf_counter()
    result = ingest_files(ledger, [source])
    ledger.close()
    print(f"  ingested {result.accepted:,} in {time.perf_counter() - start:.0f}s", flush=True)
    source.unlink()
    partial.rename(path)
    shutil.rmtree(work, ignore_errors=True)
    return path


def build_ledger(events: int) -> Path:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"demo-{events}.db"
    if path.exists():
        return path
    print(f"building a {events:,}-event demo ledger in {path} ...", flush=True)
    work = Path(tempfile.mkdtemp(dir=CACHE))
    source = work / "usage.jsonl"
    write_demo_file(source, events)
    return _ingest_cached(source, work, path)


def _regroup(fleet_seed: int, departments: int) -> dict[str, tuple[str, str]]:
    """agent -> (department, cost center): the demo's ~200 agents regrouped into ``departments``.

    Each demo department is split into sub-departments (``engineering-1``, ``engineering-2``...) in
    proportion to its agents (largest remainder, at least one each), so the bench ledger has the
    issue's "50 departments x 200 agents" shape with the demo's realistic traffic.
    """
    from fleetledger.demo.generator import build_fleet

    fleet = build_fleet(fleet_seed)
    names = [d.name for d in fleet.departments]
    agents = {name: [a for a in fleet.agents if a.department == name] for name in names}
    quotas = {name: departments * len(agents[name]) / len(fleet.agents) for name in names}
    split = {name: max(1, int(q)) for name, q in quotas.items()}
    for name in sorted(names, key=lambda n: split[n] - quotas[n])[: max(0, departments - sum(split.values()))]:
        split[name] += 1
    out = {}
    for i, name in enumerate(names):
        for j, agent in enumerate(agents[name]):
            out[agent.name] = (f"{name}-{j % split[name] + 1}", f"CC-{1001 + i}-{j % split[name] + 1}")
    out["infra-billing"] = ("platform-1", "CC-infra")  # the demo's dollar-priced line items
    return out


def build_insights_ledger(events: int, departments: int = 50, seed: int = 7) -> Path:
    """The demo fleet over 90 days with its agents regrouped into ``departments`` departments (cached)."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"insights-{departments}d-{events}.db"
    if path.exists():
        return path
    print(f"building a {events:,}-event {departments}-department ledger in {path} ...", flush=True)
    work = Path(tempfile.mkdtemp(dir=CACHE))
    source = work / "usage.jsonl"
    regroup = _regroup(seed, departments)
    with open(source, "w") as handle:
        for event in generate(DemoSpec(seed=seed, days=90, events=events, end=END)):
            event["department"], event["cost_center"] = regroup[event["agent"]]
            handle.write(json.dumps(event, separators=(",", ":")) + "\n")
    return _ingest_cached(source, work, path)


def bench_query(args: argparse.Namespace) -> None:
    """30-day `costs --by department,model` latency over demo ledgers of 1M and 10M events."""
    runs = []
    for size in args.sizes:
        path = build_ledger(size)
        # "now" 17 minutes past the hour, so the range has raw, hourly and daily segments.
        now = END - timedelta(days=1) + timedelta(minutes=17)
        settings = Settings(database_url=f"sqlite:///{path}", spool_dir=path.parent / "spool")
        with Ledger(settings=settings, background=False, clock=lambda now=now: now) as ledger:
            for by in (["department", "model"], ["agent"], ["day"]):
                timings = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    report = ledger.costs(by=by, since="30d")
                    rows = report.rows()
                    timings.append((time.perf_counter() - start) * 1000)
                runs.append(
                    {
                        "events": size,
                        "by": ",".join(by),
                        "rows": len(rows),
                        "requests_in_range": int(report.total["requests"]),
                        "p50_ms": round(percentile(timings, 50), 1),
                        "p95_ms": round(percentile(timings, 95), 1),
                        "max_ms": round(max(timings), 1),
                    }
                )
                print(runs[-1], flush=True)
    save("query", {"range": "30d ending 17 min past an hour", "runs": runs})


# -- insights: forecasts, sunburst, anomaly scan ----------------------------------------------------


def _cpu_s() -> float:
    """CPU seconds of this process and its reaped children (forecast workers)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(fn, repeat: int = 1) -> tuple[list[float], object, float]:
    """Wall seconds of each run, the last result, and the CPU seconds of all runs."""
    timings, result = [], None
    cpu = _cpu_s()
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        timings.append(time.perf_counter() - start)
    return timings, result, _cpu_s() - cpu


def bench_insights(args: argparse.Namespace) -> None:
    """Issue 5 targets over the demo fleet regrouped into 50 departments (see build_insights_ledger).

    Forecasts (fleet + every department + every agent, 90 days ahead, each backtested), the
    department -> agent -> model -> operation sunburst of the last 30 days, and the anomaly scan
    (detection + root causes, not stored) of every agent over 90 days, by day and by hour.
    """
    from fleetledger.analytics import charts, forecast
    from fleetledger.analytics.anomalies import detect as anomalies

    path = build_insights_ledger(args.insights_events)
    now = END
    settings = Settings(database_url=f"sqlite:///{path}", spool_dir=path.parent / "spool")
    results: dict[str, object] = {"events": args.insights_events}
    with Ledger(settings=settings, background=False, clock=lambda: now) as ledger:
        ledger.costs(by=["day"], since="180d")  # warm the page cache once, as a running server has it
        import statsmodels.tsa.holtwinters  # noqa: F401  (imported once per process: ~2 s, not a forecast's cost)

        series = {}
        total = cpu = 0.0
        for level in ("fleet", "department", "agent"):
            (elapsed,), found, used = _timed(
                lambda level=level: forecast.forecast_many(ledger, level=level, horizon=90)
            )
            series[level] = {"series": len(found), "seconds": round(elapsed, 2), "cpu_s": round(used, 2)}
            total, cpu = total + elapsed, cpu + used
            print(level, series[level], flush=True)
        results["forecast_90d"] = {"levels": series, "seconds": round(total, 2), "cpu_s": round(cpu, 2), "target_s": 10}
        timings, tree, used = _timed(lambda: charts.sunburst(ledger, since="30d"), repeat=args.repeat)
        results["sunburst_30d"] = {
            "departments": len(tree["children"]),
            "agents": sum(len(d.get("children", [])) for d in tree["children"]),
            "p50_ms": round(percentile(timings, 50) * 1000, 1),
            "p95_ms": round(percentile(timings, 95) * 1000, 1),
            "cpu_ms_per_run": round(used / args.repeat * 1000, 1),
            "target_ms": 300,
        }
        print(results["sunburst_30d"], flush=True)
        for granularity in ("day", "hour"):
            timings, found, used = _timed(
                lambda g=granularity: anomalies.detect(
                    ledger.store, now=now, since="90d", levels=("agent",), granularity=g
                ),
                repeat=3,
            )
            results[f"anomaly_scan_agents_90d_{granularity}"] = {
                "anomalies": len(found),
                "p50_s": round(percentile(timings, 50), 2),
                "max_s": round(max(timings), 2),
                "cpu_s_per_run": round(used / 3, 2),
                "target_s": 5,
            }
            print(granularity, results[f"anomaly_scan_agents_90d_{granularity}"], flush=True)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    save("insights", results)


# -- budgets: reserve + commit ----------------------------------------------------------------------


def bench_budgets(args: argparse.Namespace) -> None:
    """reserve() + record(reservation=...) with 20 budgets matching each request."""
    runs = []
    folder = Path(tempfile.mkdtemp())
    targets = [("sqlite", None)] + ([("postgresql", args.postgres)] if args.postgres else [])
    for name, base in targets:
        with _sqlite_url(folder / "budgets.db") if base is None else pg_schema(base) as url:
            settings = Settings(database_url=url, spool_dir=folder / "spool")
            with Ledger(settings=settings, background=False) as ledger:
                scopes = [
                    {},
                    {"department": "research"},
                    {"agent": "planner"},
                    {"environment": "production"},
                    {"model": "gpt-4o"},
                    {"provider": "openai"},
                    {"project": "search"},
                    {"team": "nlp"},
                ]
                for i in range(20):
                    scope = {**scopes[i % len(scopes)], **({"department": "research"} if i >= len(scopes) else {})}
                    ledger.budgets.create(
                        name=f"b{i}",
                        scope=scope,
                        amount="1000000",
                        action="block",
                        period=("monthly", "daily", "weekly", "quarterly")[i % 4],
                    )
                dims = {
                    "department": "research",
                    "agent": "planner",
                    "environment": "production",
                    "project": "search",
                    "team": "nlp",
                    "provider": "openai",
                    "model": "gpt-4o",
                }
                timings = []
                for i in range(args.reservations + 200):
                    start = time.perf_counter()
                    reservation = ledger.reserve(Decimal("0.01"), **dims)
                    ledger.record(input_tokens=1000, output_tokens=100, reservation=reservation)
                    if i >= 200:  # warm-up
                        timings.append((time.perf_counter() - start) * 1000)
                matched = len(ledger.check(Decimal("0.01"), **dims).budgets)
            runs.append(
                {
                    "database": name,
                    "budgets_matching": matched,
                    "pairs": len(timings),
                    "p50_ms": round(percentile(timings, 50), 2),
                    "p99_ms": round(percentile(timings, 99), 2),
                    "max_ms": round(max(timings), 2),
                }
            )
            print(runs[-1], flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    save("budgets", {"runs": runs})


# -- the HTTP API -----------------------------------------------------------------------------------


@contextmanager
def _server(url: str, spool: Path):
    import socket
    import subprocess

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "FLEETLEDGER_SPOOL_DIR": str(spool)}
    exe = Path(sys.executable).with_name("fleetledger")
    proc = subprocess.Popen(
        [str(exe), "--db", url, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


async def _hammer(base: str, path: str, params: dict, clients: int, requests: int) -> list[float]:
    import asyncio

    import httpx

    timings: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=clients)) as http:

        async def client(n: int) -> None:
            for _ in range(n):
                start = time.perf_counter()
                response = await http.get(path, params=params)
                response.raise_for_status()
                timings.append((time.perf_counter() - start) * 1000)

        await asyncio.gather(*(client(requests // clients) for _ in range(clients)))
    return timings


def bench_api(args: argparse.Namespace) -> None:
    """POST /api/v1/events in batches of 500; GET /api/budget/status at 50 clients; GET /api/costs over 1M."""
    import asyncio

    import httpx

    folder = Path(tempfile.mkdtemp())
    results: dict[str, object] = {}
    events = [json.loads(line) for line in _demo_lines(args.events)]
    with (
        _server(f"sqlite:///{folder / 'api.db'}", folder / "spool") as base,
        httpx.Client(base_url=base, timeout=60) as http,
    ):
        start = time.perf_counter()
        for i in range(0, len(events), 500):
            response = http.post("/api/v1/events", json=events[i : i + 500])
            assert response.json()["accepted"] == len(events[i : i + 500]), response.text[:200]
        elapsed = time.perf_counter() - start
        results["ingest"] = {
            "events": len(events),
            "batch": 500,
            "seconds": round(elapsed, 2),
            "events_per_s": round(len(events) / elapsed),
        }
        print(results["ingest"], flush=True)
        for i in range(20):
            http.post(
                "/api/budgets",
                json={
                    "name": f"dept-{i}",
                    "amount": "1000",
                    "scope": {"department": events[i * 37 % len(events)]["department"]},
                },
            )
        timings = asyncio.run(_hammer(base, "/api/budget/status", {}, 50, 2_000))
        results["budget_status"] = {
            "clients": 50,
            "requests": len(timings),
            "budgets": 20,
            "p50_ms": round(percentile(timings, 50), 1),
            "p99_ms": round(percentile(timings, 99), 1),
        }
        print(results["budget_status"], flush=True)
    ledger_1m = build_ledger(1_000_000)
    with _server(f"sqlite:///{ledger_1m}", folder / "spool2") as base:
        params = {"by": "department", "since": "2026-10-01T00:17:00Z", "until": "2026-10-31T00:17:00Z"}
        timings = asyncio.run(_hammer(base, "/api/costs", params, 1, 100))
        results["costs_30d_by_department_1M"] = {
            "requests": len(timings),
            "p50_ms": round(percentile(timings, 50), 1),
            "p95_ms": round(percentile(timings, 95), 1),
        }
        print(results["costs_30d_by_department_1M"], flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    save("api", results)


# -- reports ---------------------------------------------------------------------------------------


def build_month_ledger(events_90d: int) -> Path:
    """October alone, at the daily density of an ``events_90d``-event 90-day demo ledger (cached).

    A month's report reads only that month's rollups, so this stands for a month of the big demo
    ledger without ingesting its other two months."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"demo-month-of-{events_90d}.db"
    if path.exists():
        return path
    events = events_90d * 31 // 90
    print(f"building October at the density of a {events_90d:,}-event ledger ({events:,} events) ...", flush=True)
    work = Path(tempfile.mkdtemp(dir=CACHE))
    source = work / "usage.jsonl"
    write_demo_file(source, events, days=31)
    return _ingest_cached(source, work, path)


def bench_reports(args: argparse.Namespace) -> None:
    """A month's report (October, the last full month of the demo ledger) in every format."""
    from fleetledger.reports import export

    runs = []
    now = END + timedelta(days=1)
    ledgers = [(f"{size:,} events (90 days)", size, build_ledger) for size in args.sizes]
    ledgers += [(f"October at the density of {n:,} events / 90 days", n, build_month_ledger) for n in args.month_of]
    for label, size, build in ledgers:
        path = build(size)
        settings = Settings(database_url=f"sqlite:///{path}", spool_dir=path.parent / "spool")
        with Ledger(settings=settings, background=False, clock=lambda now=now: now) as ledger:
            for fmt, kind in (
                ("xlsx", "summary"),
                ("xlsx", "detailed"),
                ("pdf", "summary"),
                ("csv", "detailed"),
                ("focus", "summary"),
            ):
                timings = []
                for _ in range(max(1, min(args.repeat, 3))):
                    start = time.perf_counter()
                    made = export(ledger, "2026-10", fmt=fmt, kind=kind)
                    timings.append(time.perf_counter() - start)
                assert made.data is not None
                runs.append(
                    {
                        "ledger": label,
                        "format": fmt,
                        "kind": kind,
                        "requests_in_month": made.data.measure("requests"),
                        "detail_lines": len(made.data.detail.lines),
                        "bytes": len(made.content),
                        "best_s": round(min(timings), 2),
                        "max_s": round(max(timings), 2),
                    }
                )
                print(runs[-1], flush=True)
    save("reports", {"period": "2026-10 (a full month of the 90-day demo ledger)", "runs": runs})


def _demo_lines(events: int) -> list[str]:
    return [json.dumps(e) for e in generate(DemoSpec(seed=11, days=30, events=events, end=END))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmarks", nargs="*", default=["record", "ingest", "query", "budgets", "api"])
    parser.add_argument("--reservations", type=int, default=2_000, help="budgets: reserve+commit pairs")
    parser.add_argument("--calls", type=int, default=30_000, help="record(): calls to time")
    parser.add_argument("--rate", type=float, default=2_000, help="record(): paced calls per second")
    parser.add_argument("--events", type=int, default=200_000, help="ingest: events in the file")
    parser.add_argument("--sizes", default="1000000", help="query: ledger sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--month-of", default="", help="reports: also a month at these 90-day ledger densities")
    parser.add_argument("--insights-events", type=int, default=10_000_000, help="insights: ledger size")
    parser.add_argument("--postgres", default=os.environ.get("FLEETLEDGER_TEST_POSTGRES_URL"))
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in str(args.sizes).split(",")]
    args.month_of = [int(s) for s in str(args.month_of).split(",") if s]
    for name in args.benchmarks:
        benches = {
            "record": bench_record,
            "ingest": bench_ingest,
            "query": bench_query,
            "budgets": bench_budgets,
            "api": bench_api,
            "reports": bench_reports,
            "insights": bench_insights,
        }
        benches[name](args)


if __name__ == "__main__":
    sys.exit(main())
