"""Gateway benchmark: latency added over calling the upstream directly, and throughput, with LiteLLM's
proxy side by side in the same run. Results: docs/performance.md ("Gateway").

    python bench/gateway.py                         # direct, fleetledger gateway, LiteLLM (when installed)
    python bench/gateway.py --no-litellm --rate 20,300 --seconds 15 --throughput-seconds 10
    python bench/gateway.py --install-litellm       # first pip install 'litellm[proxy]' into bench/.cache/

Every part runs in its own process on loopback (127.0.0.1): the upstream simulator
(`fleetledger simulator`), the gateway (`fleetledger gateway`, metering into a fresh SQLite ledger),
LiteLLM's proxy (its own venv in bench/.cache/litellm-venv, pointed at the same simulator as an
OpenAI-compatible upstream), and the load generators.

Method (see docs/performance.md):

* **Latency** (`latency` phases): a load generator process (asyncio + uvloop, a minimal HTTP/1.1
  client on raw sockets, so the client adds little and the same to every target) runs 100 clients,
  each with its own keep-alive connection, together offering ``--rate`` requests/s (open loop: each
  client sends on its own schedule, not when the previous answer arrives). The targets (direct to
  the simulator, through the gateway, through LiteLLM) take turns in short slices, round-robin,
  so they share the same background load. Non-streaming: time to the complete response;
  streaming: time to the first body byte (the first SSE event). The **added latency** is the
  target's percentile minus the direct percentile at the same offered load. The load generator's
  CPU is its own process's; it is reported and never counted as the gateway's.
* **Throughput** (`throughput` phases): `wrk` (C, one thread, 100 connections) when installed,
  otherwise the Python generator in closed loop; each target alone for ``--throughput-seconds``.
  Requests/s are what the whole 2-core machine delivered with the upstream simulator and the load
  generator on it too; the gateway's own CPU time per request (from /proc) says what one gateway
  process would sustain on a core of its own.

Bounded: every phase has a time limit, the whole run a deadline; the processes are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
LITELLM_VENV = CACHE / "litellm-venv"
VENV_BIN = Path(sys.executable).parent
MODEL = "gpt-4o-mini"
PROMPT = "Summarise the quarterly LLM spend of the research department in two sentences, please."
UPSTREAM_KEY = "sk-simulator-upstream"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (from /proc)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu.get(current, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return total


class Service:
    """A server process we started (stopped with its process group at the end)."""

    def __init__(self, name: str, argv: list[str], url: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.url, self.log = name, url, log
        self.proc = subprocess.Popen(
            argv,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def wait_ready(self, probe: str, timeout: float, headers: dict[str, str] | None = None) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); log: {self.log}\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + probe, headers=headers, timeout=2).status_code < 500:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; log: {self.log}\n{self.tail()}")

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cpu(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def fleetledger(*args: str) -> list[str]:
    return [str(VENV_BIN / "fleetledger"), *args]


def start_simulator(work: Path, latency_ms: float) -> Service:
    port = free_port()
    service = Service(
        "simulator",
        fleetledger("simulator", "--port", str(port), "--latency-ms", str(latency_ms)),
        f"http://127.0.0.1:{port}",
        work / "simulator.log",
    )
    service.wait_ready("/v1/models", 30)
    return service


def gateway_available() -> str | None:
    """None when `fleetledger gateway` can run here, else why not."""
    try:
        import fleetledger.gateway.proxy  # noqa: F401
    except ImportError as exc:
        return f"the gateway is not available in this tree ({exc})"
    return None


def start_gateway(work: Path, simulator: Service) -> tuple[Service, str]:
    db = f"sqlite:///{work / 'gateway-ledger.db'}"
    config = work / "gateway.yaml"
    config.write_text(
        "upstreams:\n"
        f"  openai: {{kind: openai, base_url: '{simulator.url}', api_key_env: TL_BENCH_UPSTREAM_KEY}}\n"
        f"  anthropic: {{kind: anthropic, base_url: '{simulator.url}', api_key_env: TL_BENCH_UPSTREAM_KEY}}\n"
        f"cache:\n  exact:\n    path: '{work / 'gateway-cache.db'}'\n"
    )
    env = {"TL_BENCH_UPSTREAM_KEY": UPSTREAM_KEY}
    subprocess.run(fleetledger("--db", db, "init"), check=True, capture_output=True, env={**os.environ, **env})
    created = subprocess.run(
        fleetledger("--db", db, "gateway", "keys", "create", "--name", "bench", "--format", "json"),
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    key = json.loads(created.stdout)["key"]
    port = free_port()
    service = Service(
        "gateway",
        fleetledger("--db", db, "gateway", "--config", str(config), "--port", str(port)),
        f"http://127.0.0.1:{port}",
        work / "gateway.log",
        env,
    )
    service.wait_ready("/v1/models", 60, headers={"Authorization": f"Bearer {key}"})
    return service, key


def install_litellm() -> str:
    """pip install 'litellm[proxy]' into bench/.cache/litellm-venv (never the project venv)."""
    CACHE.mkdir(exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(LITELLM_VENV)], check=True)
    result = subprocess.run(
        [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], capture_output=True, text=True
    )
    (CACHE / "litellm-install.log").write_text(result.stdout + result.stderr)
    if result.returncode:
        return f"pip install 'litellm[proxy]' failed (exit {result.returncode}): {result.stderr.strip()[-600:]}"
    return ""


def litellm_version() -> str | None:
    result = subprocess.run(
        [str(LITELLM_VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def start_litellm(work: Path, simulator: Service, workers: int) -> Service:
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {simulator.url}/v1\n"
        f"      api_key: {UPSTREAM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  set_verbose: false\n"
        "  json_logs: false\n"
        "general_settings:\n"
        "  master_key: sk-litellm-bench\n"
    )
    port = free_port()
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        argv += ["--num_workers", str(workers)]
    service = Service("litellm", argv, f"http://127.0.0.1:{port}", work / "litellm.log", env)
    service.wait_ready("/health/liveliness", 180)
    return service


# -- the load generator (its own process) --------------------------------------------------------------


class Conn:
    """One keep-alive HTTP/1.1 connection; just enough of the protocol (Content-Length and chunked)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None

    async def request(self, raw: bytes) -> tuple[int, float, float, bytes]:
        """(status, seconds to the first body byte, seconds to the end, last bytes of the body)."""
        if self.writer is None or self.writer.is_closing():
            await self.open()
        assert self.reader is not None and self.writer is not None
        started = time.perf_counter()
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        first = None
        tail = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                data = await self.reader.readexactly(size + 2)
                if first is None:
                    first = time.perf_counter()
                tail = (tail + data[:-2])[-64:]
        else:
            length = int(headers.get("content-length", "0"))
            data = await self.reader.readexactly(length) if length else b""
            first = time.perf_counter()
            tail = data[-64:]
        end = time.perf_counter()
        if headers.get("connection", "").lower() == "close":
            self.writer.close()
        return status, (first or end) - started, end - started, tail


def build_request(target: dict[str, Any], stream: bool) -> bytes:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
    if stream:
        body["stream"] = True
    payload = json.dumps(body).encode()
    host = target["url"].split("//", 1)[1]
    head = (
        f"POST {target['path']} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {target['key']}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 3),
        "p90_ms": round(percentile(values, 90) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
        "max_ms": round(max(values) * 1000, 3),
    }


async def settle(pids: list[int], window: float = 0.2, idle: float = 0.15, limit: float = 5.0) -> None:
    """Wait until the servers use less than `idle` of a core (at most `limit` seconds)."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        before = sum(tree_cpu_seconds(p) for p in pids)
        await asyncio.sleep(window)
        if sum(tree_cpu_seconds(p) for p in pids) - before < idle * window:
            return


async def _latency(spec: dict[str, Any]) -> dict[str, Any]:
    """Round-robin slices; in each, one target gets `rate` req/s from `clients` open-loop clients."""
    return {("stream" if stream else "json"): await _latency_mode(spec, stream) for stream in spec["modes"]}


async def _latency_mode(spec: dict[str, Any], stream: bool) -> dict[str, Any]:
    clients, rate, slice_s = spec["clients"], spec["rate"], spec["slice_s"]
    targets = spec["targets"]
    conns = {t["name"]: [Conn("127.0.0.1", t["port"]) for _ in range(clients)] for t in targets}
    raws = {t["name"]: build_request(t, stream) for t in targets}
    samples: dict[str, dict[str, list[float]]] = {t["name"]: {"ttfb": [], "total": []} for t in targets}
    errors = dict.fromkeys(raws, 0)
    late = dict.fromkeys(raws, 0)
    cut = dict.fromkeys(raws, 0)
    in_flight = dict.fromkeys(raws, 0)
    cpu: dict[str, float] = dict.fromkeys(raws, 0.0)

    all_pids = [p for pids in spec["pids"].values() for p in pids]

    async def client(name: str, conn: Conn, offset: float, until: float, period: float, record: bool) -> None:
        next_at = offset
        while next_at < until:
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -period:
                late[name] += record  # the client could not keep its schedule (the target was too slow)
            in_flight[name] += 1
            try:
                status, ttfb, total, tail = await conn.request(raws[name])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors[name] += record
                conn.close()
            else:
                if status != 200 or (stream and b"[DONE]" not in tail):
                    errors[name] += record
                elif record:
                    samples[name]["ttfb"].append(ttfb)
                    samples[name]["total"].append(total)
            finally:
                in_flight[name] -= 1
            next_at += period

    async def run_slice(name: str, seconds: float, record: bool) -> None:
        period = clients / rate
        pids = spec["pids"].get(name, [])
        for conn in conns[name]:  # fresh connections: servers close idle keep-alive ones between slices
            conn.close()
            await conn.open()
        await settle(all_pids)  # the previous target's background work (e.g. metering) must not bleed in
        start = time.perf_counter() + 0.01
        until = start + seconds
        before = sum(tree_cpu_seconds(p) for p in pids)
        offsets = [start + i * period / clients for i in range(clients)]
        tasks = [
            asyncio.ensure_future(client(name, c, offset, until, period, record))
            for c, offset in zip(conns[name], offsets, strict=True)
        ]
        _, pending = await asyncio.wait(tasks, timeout=seconds + spec["grace_s"])
        if pending:  # a saturated target: stop waiting, count what was still outstanding
            cut[name] += in_flight[name] * record
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)  # the next slice opens fresh connections
        if record:
            cpu[name] += sum(tree_cpu_seconds(p) for p in pids) - before

    for t in targets:  # warm-up: connections, caches, lazy imports
        await run_slice(t["name"], spec["warmup_s"], False)
    own_before = time.process_time()
    for _ in range(spec["rounds"]):
        for t in targets:
            await run_slice(t["name"], slice_s, True)
    out: dict[str, Any] = {"loadgen_cpu_s": round(time.process_time() - own_before, 3)}
    for name in raws:
        n = len(samples[name]["total"])
        out[name] = {
            **summary_ms(samples[name]["ttfb" if stream else "total"]),
            "total": summary_ms(samples[name]["total"]) if stream else None,
            "errors": errors[name],
            "late_sends": late[name],
            "cut_outstanding": cut[name],
            "server_cpu_us_per_request": round(cpu[name] / n * 1e6, 1) if n else None,
        }
    for c in (c for group in conns.values() for c in group):
        if c.writer is not None:
            c.writer.close()
    return out


async def _closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """Closed loop: `clients` clients send back to back for `seconds` (fallback when wrk is missing)."""
    target = spec["target"]
    raw = build_request(target, spec["stream"])
    conns = [Conn("127.0.0.1", target["port"]) for _ in range(spec["clients"])]
    for c in conns:
        await c.open()
    done = errors = 0
    until = time.perf_counter() + spec["seconds"]

    async def client(conn: Conn) -> None:
        nonlocal done, errors
        while time.perf_counter() < until:
            try:
                status, _, _, _ = await conn.request(raw)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                conn.close()
                continue
            done += status == 200
            errors += status != 200

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in conns))
    return {"requests": done, "errors": errors, "seconds": time.perf_counter() - started}


def loadgen_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    job = _latency if spec["kind"] == "latency" else _closed_loop
    result = asyncio.run(job(spec))
    sys.stdout.write(json.dumps(result))


def run_loadgen(work: Path, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    path = work / f"spec-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, __file__, "--loadgen", str(path)], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode:
        raise RuntimeError(f"load generator failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


# -- throughput with wrk ------------------------------------------------------------------------------


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""


def wrk_throughput(work: Path, target: dict[str, Any], seconds: float, clients: int, stream: bool) -> dict[str, Any]:
    raw = build_request(target, stream)
    body = raw.split(b"\r\n\r\n", 1)[1].decode()
    script = work / f"wrk-{target['name']}.lua"
    script.write_text(WRK_SCRIPT % (body, target["key"]))
    url = target["url"] + target["path"]
    argv = ["wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--timeout", "30s", "--latency", "-s", str(script), url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=seconds + 60)
    lines = out.splitlines()
    result: dict[str, Any] = {"tool": "wrk", "output": out.strip()}
    for line in lines:
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["requests_per_s"] = float(parts[1])
        elif "requests in" in line:
            result["requests"] = int(parts[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            result["errors"] = int(parts[-1])
        elif line.strip().startswith("Socket errors:"):
            result["socket_errors"] = line.strip()
        elif parts and parts[0] in ("50%", "99%"):
            result[f"p{parts[0][:-1]}_latency"] = parts[1]
    result.setdefault("errors", 0)
    if "requests_per_s" not in result:
        raise RuntimeError(f"wrk failed: {out} {err}")
    return result


def summarize_profile(collapsed: Path, top: int = 80) -> dict[str, list[tuple[str, float]]]:
    """Own and inclusive share of samples per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count

    def ranked(table: dict[str, int]) -> list[tuple[str, float]]:
        return [(f, round(100 * n / total, 1)) for f, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": [("total", float(total))], "own_pct": ranked(own), "inclusive_pct": ranked(inclusive)}


def throughput(
    work: Path, target: dict[str, Any], service: Service | None, spec: dict[str, Any], profile: Path | None = None
) -> dict[str, Any]:
    before = service.cpu() if service else 0.0
    spy = None
    if profile is not None and service is not None:
        profile.mkdir(parents=True, exist_ok=True)
        out = profile / f"{target['name']}-{'stream' if spec['stream'] else 'json'}"
        spy = subprocess.Popen(
            [str(VENV_BIN / "py-spy"), "record", "-p", str(service.proc.pid), "-r", "250", "--nonblocking"]
            + ["-d", str(int(spec["seconds"])), "-f", "raw", "-o", f"{out}.txt"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    if shutil.which("wrk") and not spec["python_loadgen"]:
        result = wrk_throughput(work, target, spec["seconds"], spec["clients"], spec["stream"])
    else:
        run = run_loadgen(
            work,
            {"kind": "closed", "target": target, "clients": spec["clients"], "seconds": spec["seconds"], **spec},
            spec["seconds"] + 120,
        )
        result = {"tool": "python", **run, "requests_per_s": round(run["requests"] / run["seconds"], 1)}
    if spy is not None:
        spy.wait(timeout=60)
        collapsed = Path(f"{out}.txt")
        if collapsed.exists():
            result["profile"] = str(collapsed)
            Path(f"{out}.summary.json").write_text(json.dumps(summarize_profile(collapsed), indent=1))
    if service:
        used = service.cpu() - before
        result["server_cpu_s"] = round(used, 2)
        if result.get("requests"):
            result["server_cpu_us_per_request"] = round(used / result["requests"] * 1e6, 1)
    return result


# -- orchestration ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import platform

    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument(
        "--rate", default="20,200", help="latency: offered requests/s per target (comma-separated: one run each)"
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="latency: measured seconds per target and mode")
    parser.add_argument("--slice", type=float, default=2.0, help="latency: seconds per round-robin slice")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--throughput-seconds", type=float, default=10.0)
    parser.add_argument("--upstream-latency-ms", type=float, default=0.0)
    parser.add_argument("--litellm", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--install-litellm", action="store_true", help="pip install litellm[proxy] first")
    parser.add_argument("--litellm-workers", type=int, default=1)
    parser.add_argument("--python-loadgen", action="store_true", help="throughput without wrk")
    parser.add_argument("--no-gateway", action="store_true", help="only the simulator (and LiteLLM)")
    parser.add_argument("--profile", type=Path, help="py-spy the gateway and LiteLLM during throughput into DIR")
    parser.add_argument("--only", choices=["latency", "throughput"], help="run one kind of phase")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, ledger)")
    args = parser.parse_args(argv)
    if args.loadgen:
        loadgen_main(args.loadgen)
        return 0

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the servers
    deadline = time.monotonic() + 1800
    work = Path(tempfile.mkdtemp(prefix="tl-bench-gateway-"))
    services: list[Service] = []
    report: dict[str, Any] = {"machine": machine(), "settings": vars(args) | {"loadgen": None}, "notes": []}
    try:
        simulator = start_simulator(work, args.upstream_latency_ms)
        services.append(simulator)
        targets = [{"name": "direct", "url": simulator.url, "path": "/v1/chat/completions", "key": UPSTREAM_KEY}]
        by_name: dict[str, Service | None] = {"direct": simulator}
        why_not = gateway_available() if not args.no_gateway else "skipped (--no-gateway)"
        if why_not is None:
            gateway, key = start_gateway(work, simulator)
            services.append(gateway)
            targets.append({"name": "gateway", "url": gateway.url, "path": "/v1/chat/completions", "key": key})
            by_name["gateway"] = gateway
        else:
            report["notes"].append(f"fleetledger gateway: {why_not}")
        if args.litellm:
            problem = ""
            if args.install_litellm and not (LITELLM_VENV / "bin" / "litellm").exists():
                problem = install_litellm()
            if not problem and not (LITELLM_VENV / "bin" / "litellm").exists():
                problem = f"not installed in {LITELLM_VENV} (run with --install-litellm)"
            if not problem:
                try:
                    litellm = start_litellm(work, simulator, args.litellm_workers)
                except RuntimeError as exc:
                    problem = f"LiteLLM proxy did not start: {exc}"
                else:
                    services.append(litellm)
                    targets.append(
                        {
                            "name": "litellm",
                            "url": litellm.url,
                            "path": "/v1/chat/completions",
                            "key": "sk-litellm-bench",
                        }
                    )
                    by_name["litellm"] = litellm
                    report["litellm_version"] = litellm_version()
            if problem:
                report["notes"].append(f"LiteLLM: {problem}")
        for t in targets:
            t["port"] = int(t["url"].rsplit(":", 1)[1])
        pids = {t["name"]: [by_name[t["name"]].proc.pid] for t in targets if by_name.get(t["name"])}
        rounds = max(1, round(args.seconds / args.slice))
        report["latency"] = {}
        for rate in [float(r) for r in str(args.rate).split(",")] if args.only != "throughput" else []:
            spec = {
                "kind": "latency",
                "targets": targets,
                "clients": args.clients,
                "rate": rate,
                "slice_s": args.slice,
                "rounds": rounds,
                "warmup_s": args.warmup,
                "grace_s": 10.0,
                "modes": [False, True],
                "pids": pids,
            }
            budget = deadline - time.monotonic()
            print(f"latency at {rate:g} req/s ({', '.join(t['name'] for t in targets)})...", file=sys.stderr)
            for mode, result in run_loadgen(work, spec, timeout=min(budget, 900)).items():
                direct = result.get("direct", {})
                for name in ("gateway", "litellm"):
                    if name in result and result[name].get("n") and direct.get("n"):
                        result[name]["added_p50_ms"] = round(result[name]["p50_ms"] - direct["p50_ms"], 3)
                        result[name]["added_p99_ms"] = round(result[name]["p99_ms"] - direct["p99_ms"], 3)
                report["latency"][f"{mode}@{rate:g}/s"] = result
        report["throughput"] = {}
        for stream in (False, True) if args.only != "latency" else ():
            mode = "stream" if stream else "json"
            report["throughput"][mode] = {}
            for t in targets:
                if time.monotonic() > deadline:
                    report["notes"].append("deadline reached: throughput phases cut short")
                    break
                tspec = {
                    "seconds": args.throughput_seconds,
                    "clients": args.clients,
                    "stream": stream,
                    "python_loadgen": args.python_loadgen,
                }
                print(f"throughput {mode} {t['name']}...", file=sys.stderr)
                profile = args.profile if t["name"] in ("gateway", "litellm") else None
                report["throughput"][mode][t["name"]] = throughput(work, t, by_name.get(t["name"]), tspec, profile)
                time.sleep(1)
        report["machine"]["load_average_at_end"] = os.getloadavg()
    finally:
        for service in reversed(services):
            service.stop()
        if args.keep:
            report["work_dir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    save(report)
    print_table(report)
    return 0


def save(report: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    results = HERE / "results"
    results.mkdir(exist_ok=True)
    data = {"benchmark": "gateway", "when": datetime.now(UTC).isoformat(), **report}
    (results / "gateway.json").write_text(json.dumps(data, indent=2, default=str))


def print_table(report: dict[str, Any]) -> None:
    print(f"machine: {report['machine']}")
    for note in report["notes"]:
        print(f"note: {note}")
    for mode, result in report.get("latency", {}).items():
        what = "time to first byte" if mode.startswith("stream") else "full response"
        print(f"\nlatency, {mode} ({what}); load generator CPU {result['loadgen_cpu_s']} s")
        header = f"{'target':<10}{'n':>7}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'+p50':>9}{'+p99':>9}"
        print(header + f"{'err':>6}{'cpu us/req':>12}")
        for name, r in result.items():
            if not isinstance(r, dict) or not r.get("n"):
                continue
            print(
                f"{name:<10}{r['n']:>7}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                f"{r.get('added_p50_ms', 0):>9.2f}{r.get('added_p99_ms', 0):>9.2f}{r['errors']:>6}"
                f"{r['server_cpu_us_per_request'] or 0:>12.0f}"
            )
    for mode, result in report.get("throughput", {}).items():
        print(f"\nthroughput, {mode}, {report['settings']['clients']} clients")
        for name, r in result.items():
            print(
                f"{name:<10}{r['requests_per_s']:>10.0f} req/s  errors {r.get('errors', 0)}  "
                f"server CPU {r.get('server_cpu_us_per_request', '-')} us/req  p50 {r.get('p50_latency', '-')} "
                f"p99 {r.get('p99_latency', '-')}"
            )


def markdown(report: dict[str, Any]) -> str:
    """The results as the Markdown tables of docs/performance.md."""
    out = []
    m = report["machine"]
    load = f"{m['load_average_at_start'][0]:.1f} at start, {m.get('load_average_at_end', ['?'])[0]:.1f} at end"
    out.append(f"{report['when'][:16]} UTC, {m['cpu']}, {m['nproc']} vCPUs, load average {load}.")
    if report.get("litellm_version"):
        out.append(f"LiteLLM {report['litellm_version']}.")
    out.extend(f"Note: {n}" for n in report["notes"])
    for key, result in report.get("latency", {}).items():
        mode, _, rate = key.partition("@")
        what = "time to first byte" if mode == "stream" else "complete response"
        out.append(f"\n{'Streaming' if mode == 'stream' else 'Non-streaming'}, {rate} offered, {what}:\n")
        out.append("| target | n | p50 | p90 | p99 | added p50 | added p99 | server CPU / request | errors, cut |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, r in result.items():
            if not isinstance(r, dict) or not r.get("n"):
                continue
            added = (
                f"**{r['added_p50_ms']:.2f} ms** | **{r['added_p99_ms']:.2f} ms**" if "added_p50_ms" in r else "- | -"
            )
            cpu = r.get("server_cpu_us_per_request")
            out.append(
                f"| {name} | {r['n']} | {r['p50_ms']:.2f} ms | {r['p90_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {added} | "
                f"{(cpu or 0) / 1000:.2f} ms | {r['errors']}, {r.get('cut_outstanding', 0)} |"
            )
    for mode, result in report.get("throughput", {}).items():
        out.append(f"\nThroughput, {'streaming' if mode == 'stream' else 'non-streaming'}, 100 connections (wrk):\n")
        out.append("| target | requests/s | p50 | p99 | server CPU / request | errors |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for name, r in result.items():
            cpu = r.get("server_cpu_us_per_request")
            cpu_text = f"{cpu / 1000:.2f} ms" if cpu else "-"
            out.append(
                f"| {name} | **{r['requests_per_s']:.0f}** | {r.get('p50_latency', '-')} | "
                f"{r.get('p99_latency', '-')} | {cpu_text} | {r.get('errors', 0)} |"
            )
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--markdown"]:
        print(
            markdown(
                json.loads(Path(sys.argv[2] if len(sys.argv) > 2 else HERE / "results" / "gateway.json").read_text())
            )
        )
        sys.exit(0)
    sys.exit(main())
