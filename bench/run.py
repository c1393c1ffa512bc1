"""OMEN end-to-end benchmark, side by side with the gateways a user would pick instead: one command,
every figure measured in one run with the targets alternated.

    .venv/bin/python bench/run.py                      # full run with nginx, LiteLLM and Portkey (~10 min)
    .venv/bin/python bench/run.py --quick              # smoke run of the same (~4 min)
    .venv/bin/python bench/run.py --no-peers --quick   # OMEN-only smoke run (~40 s), as before the peers
    .venv/bin/python bench/run.py --peers nginx        # only some peers

Starts fake OpenAI upstreams (bench/fake_upstream.py: an instant one, a streaming one and a slower
streaming one for the capacity ramp), OMEN (`omen serve`, 1 and 2 workers, plus a TLS instance for
h2/h3), and the peers installed by bench/peers.py into ~/.cache/omen-bench/peers (nginx, LiteLLM proxy
with 1 and 2 workers, Portkey gateway), all on 127.0.0.1 and all pointed at the same fake upstream.
Then, round-robin over the targets (direct = the fake upstream itself):

1. non-streaming chat completions with wrk at 32 and 128 connections (req/s, p50/p99, errors, CPU per
   request of each gateway's whole process tree from /proc/<pid>/stat);
2. latency added at concurrency 1 (sequential keep-alive requests, interleaved request by request);
3. 50 concurrent SSE streams: time to first event and inter-chunk gaps vs direct;
4. a streaming capacity ramp (100 ... 2000 concurrent streams) per gateway, up to the first level where
   the added inter-chunk p99 exceeds 5 ms or a stream fails;
5. OMEN over h2c, h2/TLS and h1/TLS (h2load) and HTTP/3 (bench/h3load.py);
6. idle and peak RSS of every process tree; optionally the `_fast` micro-benchmarks.

Prints the tables and appends them to bench/RESULTS.md. See bench/README.md for what each figure means.
The machine has 2 cores shared by the load generator, the gateway and the upstream (and other people's
work): compare ratios measured in the same run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(ROOT))  # tests.server.certs, for the TLS OMEN

import peers  # noqa: E402
import probes  # noqa: E402
import streamgen  # noqa: E402
from probes import (  # noqa: E402
    H11Client,
    ProbeError,
    SeqTarget,
    StreamStats,
    percentile,
    sequential_latency,
    stream_probe,
)

CHAT_PATH = "/v1/chat/completions"
CLK_TCK = os.sysconf("SC_CLK_TCK")
T_START = time.perf_counter()
NAN = float("nan")


def log(msg: str) -> None:
    print(f"[bench {time.perf_counter() - T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports (also free for UDP: the TLS OMEN serves h3 on the same number)."""
    out: set[int] = set()
    while len(out) < n:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        out.add(port)
    return sorted(out)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Processes:
    """Every process the benchmark starts, each in its own session/process group, stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = self.workdir / f"{name.replace(' ', '-')}.log"
        with open(log_path, "wb") as out:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        self._stop([proc])
        self.procs.remove(proc)

    def stop_all(self) -> None:
        self._stop(list(self.procs))

    @staticmethod
    def _stop(procs: list[Proc]) -> None:
        for proc in reversed(procs):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in reversed(procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            # the group may hold children even after the leader exited
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read().decode()
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def tree_pids(root: int) -> list[int]:
    """root and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """utime + stime of a process tree, in seconds (children that already exited and were reaped are
    counted too, through cutime/cstime of their parent)."""
    total = 0
    for pid in tree_pids(root):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / CLK_TCK


def memory_kib(root: int) -> dict[str, int]:
    """VmRSS / VmHWM summed over the process tree, plus the process count."""
    out = {"VmRSS": 0, "VmHWM": 0, "procs": 0}
    for pid in tree_pids(root):
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        out["procs"] += 1
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] += int(value.split()[0])
    return out


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK  # minus idle and iowait


class OtherLoad:
    """How much CPU processes that are not ours used during measurements, in cores: the machine is
    shared, and this says how noisy each figure is."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.total = 0.0
        self.wall = 0.0

    def _ours(self) -> float:
        return self_cpu() + children_cpu() + sum(cpu_seconds(p.pid) for p in self.procs.procs)

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        busy, ours, t0 = machine_busy_seconds(), self._ours(), time.perf_counter()
        yield
        other = (machine_busy_seconds() - busy) - (self._ours() - ours)
        self.total += max(0.0, other)
        self.wall += time.perf_counter() - t0

    @property
    def cores(self) -> float:
        return self.total / self.wall if self.wall else 0.0


def run_tool(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a load generator in its own process group; the group is killed on timeout or Ctrl-C."""
    popen = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = popen.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.communicate()
        raise
    return subprocess.CompletedProcess(argv, popen.returncode, out, err)


# --------------------------------------------------------------------------------------------------
# targets


def chat_body(stream: bool, model: str) -> bytes:
    """A ~1 KB chat request, the same bytes for every target (but for the model name)."""
    body: dict[str, object] = {
        "model": model,
        "max_tokens": 64,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "You are a terse benchmark assistant. " * 11},
            {"role": "user", "content": "Summarise why a gateway should add little latency. " * 9},
        ],
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


@dataclass
class Route:
    port: int
    model: str
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Target:
    name: str
    proc: Proc | None  # the gateway's process tree; None for direct (the fake upstream itself)
    routes: dict[str, Route]
    command: str = ""
    notes: str = ""
    ready_path: str | None = "/health"
    idle: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)

    @property
    def is_direct(self) -> bool:
        return self.proc is None

    def body(self, route: str, stream: bool) -> bytes:
        return chat_body(stream, self.routes[route].model)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else 0.0


def omen_toml(port: int, upstreams: dict[str, int]) -> str:
    lines = [
        "# written by bench/run.py",
        "[server]",
        f'bind = "127.0.0.1:{port}"',
        "access_log = false",
        "",
    ]
    for route in peers.ROUTES:
        lines += [
            f"[providers.fake-{route}]",
            'type = "openai-compatible"',
            f'base_url = "http://127.0.0.1:{upstreams[route]}/v1"',
            'api_key = "x"',
            "max_connections = 4096  # default 100 per worker: the c=128 runs and the ramp would queue on it",
            "",
            f'[models."{peers.MODELS[route]}"]',
            f'provider = "fake-{route}"',
            'model = "bench-model"',
            "",
        ]
    return "\n".join(lines)


def clean_env(pure: bool = False) -> dict[str, str]:
    """The parent environment without anything OMEN would pick up as config."""
    drop = ("OPENAI_", "AZURE_OPENAI_", "XAI_", "OLLAMA_", "OMEN_", "OMEN__")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    if pure:
        env["OMEN_PURE_PYTHON"] = "1"
    return env


def wait_ready(proc: Proc, port: int, path: str | None, timeout: float, headers: list[tuple[str, str]]) -> None:
    """Wait until the process answers GET ``path`` with 200 (or, for None, accepts connections)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise ProbeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            if path is None:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            else:
                client = H11Client(port, timeout=2, headers=headers)
                try:
                    status, body = client.request("GET", path)
                finally:
                    client.close()
                if status == 200:
                    return
                last = f"HTTP {status}: {body[:200]!r}"
        except (OSError, ProbeError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise ProbeError(f"{proc.name} did not become ready in {timeout:.0f} s ({last}):\n{proc.log_tail()}")


def sanity(target: Target) -> None:
    """One request per route before measuring, so a broken setup fails loudly instead of benchmarking
    errors."""
    for route_name, stream in (("instant", False), ("stream", True), ("ramp", True)):
        route = target.routes[route_name]
        client = H11Client(route.port, timeout=30, headers=route.headers)
        try:
            status, data = client.request("POST", CHAT_PATH, target.body(route_name, stream))
        finally:
            client.close()
        what = f"{target.name} ({route_name} route, :{route.port})"
        if status != 200:
            raise ProbeError(f"sanity request to {what} failed: HTTP {status}: {data[:500]!r}")
        if stream:
            if b"data:" not in data or b"[DONE]" not in data:
                raise ProbeError(f"sanity stream from {what} is not SSE ending in [DONE]: {data[:500]!r}")
        elif not orjson.loads(data).get("choices"):
            raise ProbeError(f"sanity response from {what} has no choices: {data[:500]!r}")


def wait_for_file(path: Path, what: str, timeout: float) -> None:
    if path.exists():
        return
    log(f"waiting for {path.relative_to(ROOT)} ({what}) to appear, up to {timeout:.0f} s")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            time.sleep(1)  # let the writer finish
            return
        time.sleep(2)
    raise SystemExit(f"{path} does not exist")


def wait_for_import(module: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"cannot import {module}:\n{result.stderr[-2000:]}")
        if not announced:
            log(f"waiting for {module} to become importable, up to {timeout:.0f} s")
            announced = True
        time.sleep(5)


# --------------------------------------------------------------------------------------------------
# measurements


@dataclass
class WrkRun:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    error_detail: str
    cpu_gateway: float  # CPU seconds of the target's process tree during the run (0 for direct)
    cpu_upstream: float
    cpu_wrk: float


@dataclass
class ThroughputRow:
    target: Target
    load: OtherLoad
    runs: list[WrkRun] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else NAN

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    def mean(self, attr: str) -> float:
        return sum(getattr(r, attr) for r in self.runs) / len(self.runs) if self.runs else NAN

    def per_request_ms(self, attr: str) -> float:
        return 1e3 * sum(getattr(r, attr) for r in self.runs) / self.requests if self.requests else NAN


def wrk_argv(url: str, duration: float, connections: int) -> list[str]:
    return [
        "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "10s",
        "-s", str(BENCH / "wrk_chat.lua"), url,
    ]  # fmt: skip


def run_wrk(
    route: Route, duration: float, connections: int, body_file: Path, url: str | None = None
) -> dict[str, float]:
    env = dict(
        os.environ,
        BENCH_BODY_FILE=str(body_file),
        BENCH_API_KEY=probes.API_KEY,
        BENCH_HEADERS="\n".join(f"{k}: {v}" for k, v in route.headers),
    )
    url = url or f"http://127.0.0.1:{route.port}{CHAT_PATH}"
    result = run_tool(wrk_argv(url, duration, connections), duration + 60, env)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return dict(json.loads(line[len("BENCH_JSON ") :]))
    raise ProbeError(f"wrk gave no result (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")


def measure_throughput(
    row: ThroughputRow, upstream: Proc, duration: float, connections: int, body_file: Path
) -> WrkRun:
    target = row.target
    gw_before, up_before, wrk_before = target.cpu(), cpu_seconds(upstream.pid), children_cpu()
    with row.load.measure():
        data = run_wrk(target.routes["instant"], duration, connections, body_file)
    wrk_cpu = children_cpu() - wrk_before
    up_cpu = cpu_seconds(upstream.pid) - up_before
    gw_cpu = target.cpu() - gw_before
    seconds = data["duration_us"] / 1e6
    errs = {k[4:]: int(v) for k, v in data.items() if k.startswith("err_") and v}
    run = WrkRun(
        requests=int(data["requests"]),
        seconds=seconds,
        rps=data["requests"] / seconds if seconds else 0.0,
        p50_ms=data["p50_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3,
        errors=sum(errs.values()),
        error_detail=", ".join(f"{k} {v}" for k, v in errs.items()),
        cpu_gateway=gw_cpu,
        cpu_upstream=up_cpu,
        cpu_wrk=wrk_cpu,
    )
    row.runs.append(run)
    return run


@dataclass
class StreamRow:
    target: Target
    load: OtherLoad
    stats: StreamStats = field(default_factory=StreamStats)
    seconds: float = 0.0
    cpu: float = 0.0
    cpu_client: float = 0.0

    @property
    def name(self) -> str:
        return self.target.name

    def merge(self, other: StreamStats, seconds: float, cpu: float, cpu_client: float) -> None:
        s = self.stats
        s.streams += other.streams
        s.complete += other.complete
        s.errors += other.errors
        s.events += other.events
        s.ttfb_ms += other.ttfb_ms
        s.headers_ms += other.headers_ms
        s.gaps_ms += other.gaps_ms
        s.error_samples += other.error_samples[: max(0, 5 - len(s.error_samples))]
        self.seconds += seconds
        self.cpu += cpu
        self.cpu_client += cpu_client


def measure_streams(
    row: StreamRow, route_name: str, streams: int, duration: float, stagger: float, quiet: bool = False
) -> StreamStats:
    target = row.target
    route = target.routes[route_name]
    before, client_before = target.cpu(), self_cpu()
    t0 = time.perf_counter()
    with row.load.measure():
        if STREAMGEN.binary is not None:
            stats = streamgen.stream_probe(
                STREAMGEN.binary, STREAMGEN.workdir, route.port, CHAT_PATH, target.body(route_name, True),
                streams, duration, stagger, route.headers,
            )  # fmt: skip
        else:
            stats = stream_probe(
                route.port, CHAT_PATH, target.body(route_name, True), streams, duration, stagger, route.headers
            )
    row.merge(stats, time.perf_counter() - t0, target.cpu() - before, self_cpu() - client_before)
    if not quiet:
        t50, g50, g99 = percentile(stats.ttfb_ms, 50), percentile(stats.gaps_ms, 50), percentile(stats.gaps_ms, 99)
        log(f"         {stats.streams} streams, errors {stats.errors}, TTFB p50 {t50:.1f} ms, "
            f"gap p50/p99 {g50:.1f}/{g99:.1f} ms")  # fmt: skip
    return stats


@dataclass
class StreamHarness:
    """The compiled stream load generator and paced upstream (bench/streamgen.c), when a C compiler
    exists; otherwise the Python probe and fake are used and the report says so."""

    binary: Path | None = None
    workdir: Path = Path("/tmp")


STREAMGEN = StreamHarness()


@dataclass
class RampStep:
    level: int
    row: StreamRow
    base: StreamRow  # direct, measured just before at the same level
    attempt: int = 1
    added_gap_p99: float = NAN
    added_ttfb_p50: float = NAN
    passed: bool = True
    reason: str = ""


@dataclass
class ProtocolRun:
    name: str
    tool: str
    command: str
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    mean_ms: float = NAN
    p50_ms: float = NAN
    p99_ms: float = NAN
    max_ms: float = NAN
    cpu_omen: float = 0.0
    cpu_client: float = 0.0
    others: float = NAN  # others' load (cores) during the run
    note: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else NAN


_H2LOAD_TIME = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _h2load_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _H2LOAD_TIME[m.group(2)] if m else NAN


def h2load_argv(url: str, body_file: Path, duration: float, h1: bool, connections: int, streams: int) -> list[str]:
    argv = ["h2load", "-c", str(connections), "-m", str(streams), "-D", f"{duration:g}", "--warm-up-time", "1",
            "-d", str(body_file), "-H", "content-type: application/json",
            "-H", f"authorization: Bearer {probes.API_KEY}"]  # fmt: skip
    if h1:
        argv.append("--h1")
    return [*argv, url]


def run_h2load(run: ProtocolRun, argv: list[str], omen: Proc, duration: float) -> None:
    before, client_before = cpu_seconds(omen.pid), children_cpu()
    result = run_tool(argv, duration + 60)
    run.cpu_omen = cpu_seconds(omen.pid) - before
    run.cpu_client = children_cpu() - client_before
    out = result.stdout
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not m or not codes:
        run.note = f"h2load exit {result.returncode}: {(out + result.stderr)[-400:]!r}"
        return
    run.requests = int(m.group(4))
    run.errors = int(m.group(5)) + int(m.group(6)) + int(codes.group(3)) + int(codes.group(4))
    run.seconds = duration
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if lat:
        run.max_ms, run.mean_ms = _h2load_ms(lat.group(2)), _h2load_ms(lat.group(3))
    proto = re.search(r"Application protocol: (\S+)", out)
    if proto:
        run.note = f"negotiated {proto.group(1)}"


def run_wrk_protocol(run: ProtocolRun, url: str, omen: Target, duration: float, body_file: Path) -> None:
    assert omen.proc is not None
    before, client_before = cpu_seconds(omen.proc.pid), children_cpu()
    data = run_wrk(omen.routes["instant"], duration, 32, body_file, url)
    run.cpu_omen = cpu_seconds(omen.proc.pid) - before
    run.cpu_client = children_cpu() - client_before
    run.requests, run.seconds = int(data["requests"]), data["duration_us"] / 1e6
    run.errors = sum(int(v) for k, v in data.items() if k.startswith("err_"))
    run.p50_ms, run.p99_ms = data["p50_us"] / 1e3, data["p99_us"] / 1e3
    run.mean_ms, run.max_ms = data["lat_mean_us"] / 1e3, data["lat_max_us"] / 1e3


def run_h3load(run: ProtocolRun, argv: list[str], omen: Proc, duration: float) -> None:
    before = cpu_seconds(omen.pid)
    result = run_tool(argv, duration + 90)
    run.cpu_omen = cpu_seconds(omen.pid) - before
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON ") :])
            run.requests, run.errors, run.seconds = int(data["requests"]), int(data["errors"]), float(data["seconds"])
            run.p50_ms, run.p99_ms, run.mean_ms = data["p50_ms"], data["p99_ms"], data["mean_ms"]
            run.cpu_client = float(data["client_cpu_s"])
            if data["error_samples"]:
                run.note = "errors: " + "; ".join(data["error_samples"])
            return
    run.note = f"h3load exit {result.returncode}: {(result.stdout + result.stderr)[-400:]!r}"


# --------------------------------------------------------------------------------------------------
# configuration


@dataclass
class Config:
    quick: bool
    duration: float
    rounds: int
    connections: list[int]
    streams: int
    chunks: int
    chunk_delay: float
    seq_duration: float
    peers: list[str]
    omen_workers: list[int]
    pure_python: bool
    ramp_levels: list[int]
    ramp_chunks: int
    ramp_chunk_delay: float
    ramp_duration: float
    ramp_budget_ms: float
    ramp_ttfb_budget_ms: float
    ramp_harness_limit_ms: float
    protocols: bool
    protocol_duration: float
    fast_modules: bool
    peers_dir: Path


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: short measurements, 1 round, short ramp")
    p.add_argument("--peers", default=",".join(peers.KNOWN),
                   help=f"comma-separated peers to compare with (default: {','.join(peers.KNOWN)})")  # fmt: skip
    p.add_argument("--no-peers", action="store_true", help="OMEN only (direct vs OMEN), the mode before the peers")
    p.add_argument(
        "--peers-dir",
        type=Path,
        default=peers.DEFAULT_DIR,
        help=f"where the peers are installed (default {peers.DEFAULT_DIR}; env OMEN_BENCH_PEERS_DIR)",
    )
    p.add_argument("--omen-workers", help="OMEN configurations by worker count (default 1,2 with peers, 1 without)")
    p.add_argument(
        "--pure-python",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure OMEN with OMEN_PURE_PYTHON=1 (default: only without peers)",
    )
    p.add_argument(
        "--duration", type=float, help="seconds per wrk / stream measurement (default 6; 8 without peers; --quick 3)"
    )
    p.add_argument("--rounds", type=int, help="alternating rounds per target (default 2, --quick 1)")
    p.add_argument("--connections", default=None, help="wrk connection counts (default 32,128; 32 without peers)")
    p.add_argument("--streams", type=int, default=50, help="concurrent SSE streams (default 50)")
    p.add_argument("--chunks", type=int, default=20, help="chunks per upstream stream (default 20)")
    p.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between upstream chunks (default 0.02)")
    p.add_argument(
        "--ramp",
        default=None,
        help="streaming capacity ramp levels (default 100,250,500,1000,2000; --quick 100,500); "
        "'none' skips it (the default without peers)",
    )
    p.add_argument("--ramp-chunks", type=int, default=20, help="chunks per stream in the ramp (default 20)")
    p.add_argument("--ramp-chunk-delay", type=float, default=0.05, help="seconds between ramp chunks (default 0.05)")
    p.add_argument("--ramp-duration", type=float, default=None, help="seconds per ramp step (default 4, --quick 3)")
    p.add_argument(
        "--ramp-budget-ms",
        type=float,
        default=5.0,
        help="a ramp level fails when added inter-chunk p99 exceeds this (default 5 ms)",
    )
    p.add_argument(
        "--ramp-ttfb-budget-ms",
        type=float,
        default=100.0,
        help="a ramp level also fails when the added time to first event (p50) exceeds this, i.e. streams wait "
        "for the gateway before they start (default 100 ms; 0 disables)",
    )
    p.add_argument(
        "--ramp-harness-limit-ms",
        type=float,
        default=30.0,
        help="the ramp stops (harness limit) when direct alone misses the pacing by more than this at p99, "
        "twice in a row (default 30 ms)",
    )
    p.add_argument(
        "--protocols",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="OMEN over h2c, TLS (h2, h1) and HTTP/3 (default: on with peers)",
    )
    p.add_argument(
        "--fast-modules",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run bench/fast_modules.py (default: only without peers)",
    )
    p.add_argument("--skip-fast-modules", action="store_true", help="same as --no-fast-modules")
    p.add_argument("--results", type=Path, default=BENCH / "RESULTS.md", help="file the run is appended to")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to the results file")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with configs and server logs")
    p.add_argument("--wait", type=float, default=600, help="how long to wait for missing pieces (default 600 s)")
    args = p.parse_args(argv)

    chosen = [] if args.no_peers else [x.strip() for x in args.peers.split(",") if x.strip() and x.strip() != "none"]
    unknown = set(chosen) - set(peers.KNOWN)
    if unknown:
        p.error(f"unknown peers {sorted(unknown)}; known: {', '.join(peers.KNOWN)}")
    with_peers = bool(chosen)
    duration = args.duration or (3.0 if args.quick else 6.0 if with_peers else 8.0)
    if args.ramp is None:
        ramp = ("100,500" if args.quick else "100,250,500,1000,2000") if with_peers else "none"
    else:
        ramp = args.ramp
    fast = args.fast_modules if args.fast_modules is not None else not with_peers
    cfg = Config(
        quick=args.quick,
        duration=duration,
        rounds=args.rounds or (1 if args.quick else 2),
        connections=_int_list(args.connections or ("32,128" if with_peers else "32")),
        streams=args.streams,
        chunks=args.chunks,
        chunk_delay=args.chunk_delay,
        seq_duration=duration * (1 if args.quick else 2),
        peers=[name for name in peers.KNOWN if name in chosen],
        omen_workers=_int_list(args.omen_workers or ("1,2" if with_peers else "1")),
        pure_python=args.pure_python if args.pure_python is not None else not with_peers,
        ramp_levels=[] if ramp == "none" else _int_list(ramp),
        ramp_chunks=args.ramp_chunks,
        ramp_chunk_delay=args.ramp_chunk_delay,
        ramp_duration=args.ramp_duration or (3.0 if args.quick else 4.0),
        ramp_budget_ms=args.ramp_budget_ms,
        ramp_ttfb_budget_ms=args.ramp_ttfb_budget_ms,
        ramp_harness_limit_ms=args.ramp_harness_limit_ms,
        protocols=args.protocols if args.protocols is not None else with_peers,
        protocol_duration=duration,
        fast_modules=fast and not args.skip_fast_modules,
        peers_dir=args.peers_dir,
    )
    return cfg, args


def estimate_seconds(cfg: Config, n_targets: int) -> float:
    stream_len = cfg.chunks * cfg.chunk_delay
    ramp_len = cfg.ramp_chunks * cfg.ramp_chunk_delay
    t = n_targets * 2.2  # warm-up
    t += len(cfg.connections) * cfg.rounds * n_targets * (cfg.duration + 0.3)
    t += cfg.seq_duration + 3
    t += cfg.rounds * n_targets * (cfg.duration + 2 * stream_len + 0.3)
    t += len(cfg.ramp_levels) * n_targets * 0.5 * 2 * (cfg.ramp_duration + ramp_len + 1.5)  # most stop early
    t += 5 * (cfg.protocol_duration + 1.5) if cfg.protocols else 0
    return t + 20


# --------------------------------------------------------------------------------------------------
# environment description


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError:
        return "not installed"
    text = (result.stdout + result.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    omen_version = subprocess.run(
        [str(ROOT / ".venv/bin/omen"), "version"], cwd=ROOT, capture_output=True, text=True, env=clean_env()
    ).stdout.strip()
    return {
        "cpus": f"{os.cpu_count()} (nproc {len(os.sched_getaffinity(0))})",
        "cpu": cpu,
        "kernel": platform.release(),
        "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "python": platform.python_version(),
        "OMEN's stack": ", ".join(
            f"{d} {version_of(d)}"
            for d in ("trio", "hypercorn", "httpx", "httpcore", "h11", "h2", "aioquic", "msgspec", "orjson")
        ),
        "load generators": f"{_first_line(['wrk', '-v'])}; {_first_line(['h2load', '--version'])}; "
        f"bench/h3load.py on aioquic {version_of('aioquic')}; bench/probes.py (trio {version_of('trio')})",
        "git": (git[:12] or "?") + (" (+ uncommitted changes)" if dirty else ""),
        "omen version": omen_version.replace("\n", "; "),
    }


RESULTS_HEADER = """\
# OMEN benchmark results

Each section below is one run of `bench/run.py` (appended by the script; newest last). See
[README.md](README.md) for what each figure means and how it is measured.

How to read it:

- **Ratios within one run are the signal.** The machine has 2 cores shared by the load generator
  (wrk / the Python probes), the gateway and the fake upstream, and other work may be running;
  absolute numbers move between runs. Targets are measured alternately in the same run.
- **direct** = the load generator talks to the fake upstream itself (the upstream's own ceiling on this
  machine). **omen** = the same requests through OMEN; **nginx**, **litellm Nw**, **portkey** = through
  those gateways (runs since the peers were added).
- CPU ms/req comes from `/proc/<pid>/stat` (utime+stime) of the process tree before/after each run;
  it does not depend on how busy the machine was, so it is the steadiest cost figure.
- "others' load (cores)" is the CPU used during a measurement by processes the benchmark did not
  start (other builds/tests on the machine); a row with ~1 core of others' load ran on about half
  the machine.
"""


# --------------------------------------------------------------------------------------------------
# main


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    for tool, package in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None and (tool == "wrk" or cfg.protocols):
            raise SystemExit(f"{tool} not found: apt-get install -y {package}")
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python then keeps it ignored
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="omen-bench-"))
    procs = Processes(workdir)
    try:
        return run(cfg, args, procs, workdir)
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        return 130
    finally:
        procs.stop_all()
        if args.keep_logs:
            log(f"logs and configs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Report:
    cfg: Config
    info: dict[str, str]
    started: dt.datetime
    command: str
    targets: list[Target]
    installed: dict[str, peers.Installed]
    unavailable: dict[str, str]
    throughput: dict[int, list[ThroughputRow]]
    seq: list[SeqTarget]
    seq_load: OtherLoad
    streams: list[StreamRow]
    ramp: dict[str, list[RampStep]]
    ramp_note: str
    protocols: list[ProtocolRun]
    fast_md: str
    problems: list[str]
    body_size: int
    upstream_commands: list[str]


def install_peers(cfg: Config) -> tuple[dict[str, peers.Installed], dict[str, str]]:
    installed: dict[str, peers.Installed] = {}
    unavailable: dict[str, str] = {}
    if not cfg.peers:
        return installed, unavailable
    cfg.peers_dir.mkdir(parents=True, exist_ok=True)
    for name in cfg.peers:
        try:
            inst = peers.INSTALLERS[name](cfg.peers_dir, log)
        except peers.PeerUnavailable as exc:
            log(f"{name} is not available: {str(exc).splitlines()[0]}")
            unavailable[name] = f"install failed: {exc}"
            continue
        installed[name] = inst
        log(f"phase 0: {name}: {inst.version} ({'reused' if inst.reused else 'installed'} in {cfg.peers_dir})")
    return installed, unavailable


def run(cfg: Config, args: argparse.Namespace, procs: Processes, workdir: Path) -> int:
    python = sys.executable
    fake = BENCH / "fake_upstream.py"
    wait_for_file(fake, "fake upstream", args.wait)
    wait_for_import("omen.server.serve", args.wait)
    probes.API_KEY = peers.MASTER_KEY
    command = " ".join(shlex.quote(a) for a in sys.orig_argv)
    started = dt.datetime.now().astimezone()

    # ---- phase 0: peers
    if cfg.peers:
        log(f"phase 0: peers {', '.join(cfg.peers)} (scratch dir {cfg.peers_dir})")
    installed, unavailable = install_peers(cfg)
    info = machine_info()

    # ---- phase 1: processes
    port_pool = iter(free_ports(32))  # all distinct; taken up front so no two servers race for one
    up_ports = {route: next(port_pool) for route in peers.ROUTES}
    upstream_argv = {
        "instant": [python, str(fake), "--kind", "openai", "--port", str(up_ports["instant"])],
        "stream": [python, str(fake), "--kind", "openai", "--port", str(up_ports["stream"]), "--lean",
                   "--chunks", str(cfg.chunks), "--chunk-delay", str(cfg.chunk_delay)],
        "ramp": [python, str(fake), "--kind", "openai", "--port", str(up_ports["ramp"]), "--lean",
                 "--chunks", str(cfg.ramp_chunks), "--chunk-delay", str(cfg.ramp_chunk_delay)],
    }  # fmt: skip
    STREAMGEN.binary = streamgen.build(cfg.peers_dir.parent / "streamgen")
    STREAMGEN.workdir = workdir
    if STREAMGEN.binary is not None:
        # paced streams from the compiled upstream, replaying the Python fake's exact bytes
        for route, chunks, delay in (
            ("stream", cfg.chunks, cfg.chunk_delay),
            ("ramp", cfg.ramp_chunks, cfg.ramp_chunk_delay),
        ):
            script = workdir / f"streamgen-{route}.script"
            streamgen.write_script(script, streamgen.upstream_body(), chunks)
            upstream_argv[route] = streamgen.server_command(STREAMGEN.binary, up_ports[route], script, delay)
        log(f"phase 1: streams measured with the compiled load generator and upstream ({STREAMGEN.binary})")
    else:
        log("phase 1: no C compiler: streams measured with the Python probe and fake (harness-limited)")
    upstreams = {route: procs.start(f"upstream-{route}", argv) for route, argv in upstream_argv.items()}
    upstream_commands = [
        f"{route}: `{' '.join(shlex.quote(a) for a in argv).replace(python, 'python').replace(str(ROOT) + '/', '')}`"
        for route, argv in upstream_argv.items()
    ]
    direct = Target(
        "direct", None, {r: Route(up_ports[r], peers.MODELS["instant"]) for r in peers.ROUTES},
        command="(the fake upstreams themselves)", ready_path=None,
    )  # fmt: skip

    pending: list[tuple[Target, str | None]] = []  # (target, peer name or None for OMEN)
    omen_exe = str(ROOT / ".venv/bin/omen")
    omen_configs: list[tuple[str, int, bool]] = [
        ("omen" if w == 1 else f"omen {w}w", w, False) for w in cfg.omen_workers
    ]
    if cfg.pure_python:
        omen_configs.append(("omen pure-python", 1, True))
    for name, workers, pure in omen_configs:
        port = next(port_pool)
        toml = workdir / f"{name.replace(' ', '-')}.toml"
        toml.write_text(omen_toml(port, up_ports))
        argv = [omen_exe, "serve", "--config", str(toml)] + (["--workers", str(workers)] if workers > 1 else [])
        proc = procs.start(name, argv, clean_env(pure))
        shown = ("OMEN_PURE_PYTHON=1 " if pure else "") + " ".join(argv).replace(str(workdir), "<tmp>").replace(
            str(ROOT) + "/", ""
        )
        target = Target(
            name, proc, {r: Route(port, peers.MODELS[r]) for r in peers.ROUTES}, shown,
            f"{workers} worker process(es)"
            + (", pure Python" if pure else ", compiled _fast modules when built")
            + ", access_log = false, providers' max_connections = 4096 (default 100)",
        )  # fmt: skip
        pending.append((target, None))
    tls_omen: Target | None = None
    if cfg.protocols:
        from tests.server.certs import make_self_signed

        certs = make_self_signed(workdir)
        port = next(port_pool)
        toml = workdir / "omen-tls.toml"
        toml.write_text(omen_toml(port, up_ports))
        argv = [omen_exe, "serve", "--config", str(toml), "--certfile", certs.certfile, "--keyfile", certs.keyfile]
        proc = procs.start("omen-tls", argv, clean_env())
        tls_omen = Target(
            "omen tls", proc, {r: Route(port, peers.MODELS[r]) for r in peers.ROUTES},
            " ".join(argv).replace(str(workdir), "<tmp>").replace(str(ROOT) + "/", ""),
            "TLS (h2 + h1 on TCP, h3 on UDP, same port)",
            ready_path=None,
        )  # fmt: skip

    launches: list[peers.Launch] = []
    for name, inst in installed.items():
        if name == "nginx":
            listen = {route: next(port_pool) for route in peers.ROUTES}
            launches.append(peers.nginx_launch(inst, workdir, listen, up_ports))
        elif name == "litellm":
            for workers in (1, 2):
                launches.append(peers.litellm_launch(inst, workdir, next(port_pool), workers, up_ports))
        elif name == "portkey":
            launches.append(peers.portkey_launch(inst, next(port_pool), up_ports))
    for launch in launches:
        proc = procs.start(launch.name, launch.argv, launch.env)
        routes = {r: Route(launch.ports[r], launch.models[r], launch.headers[r]) for r in peers.ROUTES}
        target = Target(launch.name, proc, routes, launch.command.replace(str(workdir), "<tmp>"), launch.notes,
                        launch.ready_path)  # fmt: skip
        pending.append((target, launch.name.split()[0]))

    log(f"phase 1: starting fake upstreams (:{up_ports['instant']} instant, :{up_ports['stream']} streaming, "
        f":{up_ports['ramp']} ramp) and {', '.join(t.name for t, _ in pending)}")  # fmt: skip
    for route, proc in upstreams.items():
        wait_ready(proc, up_ports[route], None, 30, [])
    targets: list[Target] = [direct]
    ready_list = [*pending, *([(tls_omen, None)] if tls_omen else [])]
    for target, peer in ready_list:
        assert target.proc is not None
        route = target.routes["instant"]
        try:
            wait_ready(target.proc, route.port, target.ready_path, 180, route.headers)
            if target is not tls_omen:
                sanity(target)
        except ProbeError as exc:
            if peer is None:
                raise SystemExit(str(exc)) from None
            log(f"{target.name} could not be started or answered wrongly; going on without it")
            unavailable[target.name] = f"start failed: `{target.command}`: {exc}"
            procs.stop(target.proc)
            continue
        log(f"         {target.name} ready")
        if target is not tls_omen:
            targets.append(target)
    sanity(direct)
    time.sleep(0.5)
    for target in targets[1:]:
        assert target.proc is not None
        target.idle = memory_kib(target.proc.pid)
    body = chat_body(False, peers.MODELS["instant"])
    body_file = workdir / "body.json"
    body_file.write_bytes(body)
    estimate = estimate_seconds(cfg, len(targets))
    log(f"all up: {', '.join(t.name for t in targets)}; request body {len(body)} B; sanity requests OK; "
        f"measurements take ~{estimate / 60:.0f} min")  # fmt: skip

    # ---- phase 2: non-streaming throughput, alternating targets
    for target in targets:
        log(f"phase 2: warm-up 2 s: {target.name}")
        run_wrk(target.routes["instant"], 2, max(cfg.connections), body_file)
    throughput: dict[int, list[ThroughputRow]] = {}
    total = len(cfg.connections) * cfg.rounds * len(targets)
    step = 0
    for conns in cfg.connections:
        rows = throughput[conns] = [ThroughputRow(t, OtherLoad(procs)) for t in targets]
        for rnd in range(cfg.rounds):
            for row in rows:
                step += 1
                log(f"phase 2: [{step}/{total}] non-streaming c={conns} round {rnd + 1}/{cfg.rounds}: {row.name} "
                    f"({cfg.duration:g} s)")  # fmt: skip
                r = measure_throughput(row, upstreams["instant"], cfg.duration, conns, body_file)
                log(f"         {r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, errors {r.errors}, "
                    f"CPU {1e3 * r.cpu_gateway / max(1, r.requests):.3f} ms/req")  # fmt: skip

    # ---- phase 3: concurrency 1
    log(f"phase 3: sequential c=1 latency, {len(targets)} targets interleaved request by request "
        f"({cfg.seq_duration:g} s)")  # fmt: skip
    seq = [
        SeqTarget(t.name, t.routes["instant"].port, CHAT_PATH, body, list(t.routes["instant"].headers)) for t in targets
    ]
    seq_load = OtherLoad(procs)
    with seq_load.measure():
        sequential_latency(seq, cfg.seq_duration)
    log("         p50 " + ", ".join(f"{t.name} {percentile(t.samples_ms, 50):.2f} ms" for t in seq))

    # ---- phase 4: streaming
    srows = [StreamRow(t, OtherLoad(procs)) for t in targets]
    stagger = cfg.chunks * cfg.chunk_delay
    total = cfg.rounds * len(srows)
    step = 0
    for rnd in range(cfg.rounds):
        for row in srows:
            step += 1
            log(f"phase 4: [{step}/{total}] {cfg.streams} concurrent SSE streams round {rnd + 1}/{cfg.rounds}: "
                f"{row.name} ({cfg.duration:g} s)")  # fmt: skip
            measure_streams(row, "stream", cfg.streams, cfg.duration, stagger)

    # ---- phase 5: streaming capacity ramp
    ramp: dict[str, list[RampStep]] = {t.name: [] for t in targets[1:]}
    ramp_note = run_ramp(cfg, targets, procs, ramp) if cfg.ramp_levels else ""

    # ---- phase 6: OMEN over other protocols
    protocol_runs: list[ProtocolRun] = []
    if cfg.protocols and tls_omen is not None:
        omen_target = next(t for t in targets if t.name == "omen")
        protocol_runs = run_protocols(cfg, procs, omen_target, tls_omen, body_file)

    # ---- memory
    for target in targets[1:]:
        assert target.proc is not None
        target.peak = memory_kib(target.proc.pid)

    # ---- fast modules
    fast_md = run_fast_modules(cfg, args.wait) if cfg.fast_modules else ""

    # ---- server health after the run
    problems = []
    failed = any(r.errors for rows in throughput.values() for row in rows for r in row.runs) or any(
        r.stats.errors for r in srows
    )
    for proc in procs.procs:
        if proc.popen.poll() is not None:
            problems.append(f"{proc.name} exited with {proc.popen.returncode} during the run")
        tail = proc.log_tail(40)
        if "Traceback" in tail or (failed and proc.name.startswith("omen") and tail.strip()):
            problems.append(f"{proc.name} output (last 40 lines):\n```\n{tail}\n```")

    report = Report(
        cfg, info, started, command, targets, installed, unavailable, throughput, seq, seq_load, srows, ramp,
        ramp_note, protocol_runs, fast_md, problems, len(body), upstream_commands,
    )  # fmt: skip
    text = render(report)
    print(text)
    if not args.no_append:
        results: Path = args.results
        if not results.exists():
            results.write_text(RESULTS_HEADER)
        with open(results, "a") as f:
            f.write("\n" + text)
        log(f"appended to {results}")
    return 0


class HarnessLimit(Exception):
    """The load generator and the fake upstream alone (direct) failed streams at this level."""


def run_ramp(cfg: Config, targets: list[Target], procs: Processes, ramp: dict[str, list[RampStep]]) -> str:
    """Raise the number of concurrent streams level by level, for every gateway that passed all lower
    levels. Each gateway measurement is paired with a direct measurement at the same level just before
    it, and compared with that one: on this shared 2-core machine the harness's own p99 moves by several
    ms within a minute. A gateway fails a level when a stream fails or its inter-chunk p99 exceeds its
    paired direct p99 by more than the budget; a failure on the gap alone is confirmed by one more pair
    (both are reported), so one burst of other people's load does not end a gateway's ramp."""
    stream_len = cfg.ramp_chunks * cfg.ramp_chunk_delay
    alive = [t for t in targets if not t.is_direct]
    direct = targets[0]

    pacing_ms = cfg.ramp_chunk_delay * 1e3

    def measure_direct(level: int) -> StreamRow:
        """A direct run at ``level``; raises HarnessLimit when the harness alone cannot hold the level (failed
        streams, or a gap p99 more than the harness limit over the pacing, twice in a row)."""
        for attempt in (1, 2):
            base = StreamRow(direct, OtherLoad(procs))
            measure_streams(base, "ramp", level, cfg.ramp_duration, stream_len, quiet=True)
            bs = base.stats
            if bs.errors or bs.complete < bs.streams:
                raise HarnessLimit(
                    f"The ramp stopped at {level} streams: the load generator and the fake upstream alone (direct) "
                    f"had {bs.errors} failed streams there ({bs.complete}/{bs.streams} complete; "
                    f"{'; '.join(bs.error_samples[:2])}), so higher levels measure the harness, not the gateways."
                )
            p99 = percentile(bs.gaps_ms, 99)
            if p99 <= pacing_ms + cfg.ramp_harness_limit_ms:
                return base
            log(f"         direct alone: gap p99 {p99:.1f} ms at {level} streams (pacing {pacing_ms:g} ms)"
                + ("; measuring it again" if attempt == 1 else ""))  # fmt: skip
            time.sleep(0.5)
        raise HarnessLimit(
            f"The ramp stopped at {level} streams: there the load generator and the fake upstream alone (direct) "
            f"delivered events with a gap p99 of {p99:.0f} ms for a {pacing_ms:g} ms pacing (limit +"
            f"{cfg.ramp_harness_limit_ms:g} ms) twice in a row, so at this level and above the figures measure the "
            f"harness (its load generator and upstream sharing 2 cores with the gateway), not "
            f"the gateways. Gateways still in the ramp are reported as >= the last level they passed."
        )

    def pair(target: Target, level: int, attempt: int) -> RampStep:
        base = measure_direct(level)
        bs = base.stats
        time.sleep(0.5)
        step = RampStep(level, StreamRow(target, OtherLoad(procs)), base, attempt)
        measure_streams(step.row, "ramp", level, cfg.ramp_duration, stream_len, quiet=True)
        s = step.row.stats
        base_p99 = percentile(bs.gaps_ms, 99)
        step.added_gap_p99 = percentile(s.gaps_ms, 99) - base_p99
        step.added_ttfb_p50 = percentile(s.ttfb_ms, 50) - percentile(bs.ttfb_ms, 50)
        if s.errors or s.complete < s.streams:
            step.passed, step.reason = False, f"{s.errors} failed streams ({s.complete}/{s.streams} complete)"
        elif not s.gaps_ms:
            step.passed, step.reason = False, "no inter-chunk gaps measured"
        elif step.added_gap_p99 > cfg.ramp_budget_ms:
            step.passed = False
            step.reason = f"added gap p99 {step.added_gap_p99:+.1f} ms > {cfg.ramp_budget_ms:g} ms"
        elif cfg.ramp_ttfb_budget_ms and step.added_ttfb_p50 > cfg.ramp_ttfb_budget_ms:
            step.passed = False
            step.reason = (
                f"added TTFB p50 {step.added_ttfb_p50:+.0f} ms > {cfg.ramp_ttfb_budget_ms:g} ms (streams wait)"
            )
        log(f"         {target.name}{' (confirmation)' if attempt > 1 else ''}: {s.streams} streams, errors "
            f"{s.errors}, TTFB p50 {percentile(s.ttfb_ms, 50):.1f} ms, gap p99 {percentile(s.gaps_ms, 99):.1f} ms vs "
            f"direct {base_p99:.1f} ms ({step.added_gap_p99:+.1f}): "
            f"{'pass' if step.passed else 'FAIL (' + step.reason + ')'}")  # fmt: skip
        time.sleep(0.5)
        return step

    try:
        for level in cfg.ramp_levels:
            if not alive:
                break
            log(f"phase 5: ramp {level} concurrent streams ({cfg.ramp_chunks} chunks {cfg.ramp_chunk_delay * 1e3:g} "
                f"ms apart, {cfg.ramp_duration:g} s per run, each paired with direct): "
                f"{', '.join(t.name for t in alive)}")  # fmt: skip
            for target in list(alive):
                step = pair(target, level, 1)
                ramp[target.name].append(step)
                if not step.passed and step.row.stats.complete == step.row.stats.streams and step.row.stats.gaps_ms:
                    try:
                        step = pair(target, level, 2)
                    except HarnessLimit:
                        step.reason += " (not confirmed: the harness reached its limit before the second pair)"
                        raise
                    ramp[target.name].append(step)
                if not step.passed:
                    alive.remove(target)
    except HarnessLimit as exc:
        log(str(exc))
        return str(exc)
    return ""


def run_protocols(cfg: Config, procs: Processes, omen: Target, tls: Target, body_file: Path) -> list[ProtocolRun]:
    """OMEN (1 worker) over each protocol, back to back. HTTP/1.1 is measured with wrk, not h2load: OMEN
    (hypercorn) answers "HTTP/1.1 200 " with an empty reason phrase, which h2load 1.52's HTTP/1.1 parser
    does not count as a response (every request "failed"); wrk and every HTTP client we use accept it."""
    assert omen.proc is not None and tls.proc is not None
    d = cfg.protocol_duration
    plain = f"http://127.0.0.1:{omen.routes['instant'].port}{CHAT_PATH}"
    secure = f"https://127.0.0.1:{tls.routes['instant'].port}{CHAT_PATH}"
    h3_argv = [sys.executable, str(BENCH / "h3load.py"), secure, "--body", str(body_file), "-c", "4", "-m", "8",
               "-D", f"{d:g}", "--api-key", probes.API_KEY]  # fmt: skip
    plans: list[tuple[str, str, list[str], Target, str]] = [
        ("h1 (wrk -c32)", "wrk", wrk_argv(plain, d, 32), omen, plain),
        ("h2c (prior knowledge, h2load -c4 -m8)", "h2load", h2load_argv(plain, body_file, d, False, 4, 8), omen, plain),
        ("h1 over TLS (wrk -c32)", "wrk", wrk_argv(secure, d, 32), tls, secure),
        ("h2 over TLS (ALPN, h2load -c4 -m8)", "h2load", h2load_argv(secure, body_file, d, False, 4, 8), tls, secure),
        ("h3 (QUIC, h3load -c4 -m8)", "h3load", h3_argv, tls, secure),
    ]
    runs = []
    for i, (name, tool, argv, target, url) in enumerate(plans, 1):
        shown = " ".join(shlex.quote(a) for a in argv).replace(sys.executable, "python").replace(str(ROOT) + "/", "")
        shown = shown.replace(str(body_file), "body.json")
        if tool == "wrk":
            shown = f"BENCH_BODY_FILE=body.json {shown}"
        run = ProtocolRun(name, tool, shown)
        log(f"phase 6: [{i}/{len(plans)}] OMEN {name} ({d:g} s)")
        assert target.proc is not None
        load = OtherLoad(procs)
        with load.measure():
            if tool == "wrk":
                run_wrk_protocol(run, url, target, d, body_file)
            elif tool == "h2load":
                run_h2load(run, argv, target.proc, d)
            else:
                run_h3load(run, argv, target.proc, d)
        run.others = load.cores
        log(f"         {run.rps:,.0f} req/s, errors {run.errors}" + (f" ({run.note})" if run.note else ""))
        runs.append(run)
    return runs


def run_fast_modules(cfg: Config, wait: float) -> str:
    script = BENCH / "fast_modules.py"
    wait_for_file(script, "compiled vs pure-Python micro-benchmarks", wait)
    log("phase 7: bench/fast_modules.py --markdown (compiled vs pure-Python _fast modules)")
    help_text = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True)
    argv = [sys.executable, str(script), "--markdown"]
    if cfg.quick and "--quick" in help_text.stdout:
        argv.append("--quick")
    result = run_tool(argv, 900, clean_env())
    if result.returncode != 0:
        return f"`{' '.join(argv[1:])}` failed (exit {result.returncode}):\n\n```\n{result.stderr[-3000:]}\n```\n"
    return result.stdout.strip() + "\n"


# --------------------------------------------------------------------------------------------------
# report


def fmt(value: float, digits: int = 2) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:,.{digits}f}"


def ratio(value: float, base: float) -> str:
    if not base or value != value or base != base:
        return "-"
    return f"{value / base:.2f}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def throughput_table(rows: list[ThroughputRow]) -> str:
    base = rows[0]
    nginx = next((r for r in rows if r.name == "nginx"), None)
    out = []
    for row in rows:
        details = "; ".join(r.error_detail for r in row.runs if r.error_detail)
        upstream_busy = sum(r.cpu_upstream for r in row.runs) / row.seconds if row.seconds else 0.0
        out.append(
            [
                row.name,
                fmt(row.rps, 0),
                " / ".join(fmt(r.rps, 0) for r in row.runs),
                ratio(row.rps, base.rps),
                ratio(row.rps, nginx.rps) if nginx else "-",
                fmt(row.mean("p50_ms")),
                fmt(row.mean("p99_ms")),
                f"{row.errors}" + (f" ({details})" if details else ""),
                fmt(row.per_request_ms("cpu_gateway"), 3) if row is not base else "-",
                fmt(row.per_request_ms("cpu_upstream"), 3),
                f"{upstream_busy:.0%}",
                fmt(row.per_request_ms("cpu_wrk"), 3),
                fmt(row.load.cores),
            ]
        )
    header = [
        "target", "req/s", "per round", "vs direct", "vs nginx", "p50 ms", "p99 ms", "errors",
        "gateway CPU ms/req", "upstream CPU ms/req", "upstream busy", "wrk CPU ms/req", "others' load (cores)",
    ]  # fmt: skip
    return table(header, out)


def seq_table(targets: list[SeqTarget]) -> str:
    base = targets[0]
    b50, b99 = percentile(base.samples_ms, 50), percentile(base.samples_ms, 99)
    out = []
    for t in targets:
        p50, p90, p99 = (percentile(t.samples_ms, p) for p in (50, 90, 99))
        mean = sum(t.samples_ms) / len(t.samples_ms) if t.samples_ms else NAN
        added = t is not base
        out.append(
            [
                t.name, str(len(t.samples_ms)), str(t.errors), fmt(p50, 3), fmt(p90, 3), fmt(p99, 3), fmt(mean, 3),
                fmt(p50 - b50, 3) if added else "-", fmt(p99 - b99, 3) if added else "-",
            ]
        )  # fmt: skip
    header = ["target", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "mean ms", "added p50 ms", "added p99 ms"]
    return table(header, out)


def stream_table(rows: list[StreamRow]) -> str:
    base = rows[0].stats
    bt50, bt99 = percentile(base.ttfb_ms, 50), percentile(base.ttfb_ms, 99)
    bg50, bg99 = percentile(base.gaps_ms, 50), percentile(base.gaps_ms, 99)
    out = []
    for row in rows:
        s = row.stats
        t50, t99 = percentile(s.ttfb_ms, 50), percentile(s.ttfb_ms, 99)
        g50, g99 = percentile(s.gaps_ms, 50), percentile(s.gaps_ms, 99)
        is_base = row is rows[0]
        chunks_per_s = s.events / row.seconds if row.seconds else 0.0
        out.append(
            [
                row.name,
                str(s.streams),
                f"{s.complete}/{s.streams}",
                str(s.errors),
                fmt(s.events / max(1, len(s.ttfb_ms)), 1),
                fmt(chunks_per_s, 0),
                fmt(t50), fmt(t99), fmt(g50), fmt(g99),
                "-" if is_base else f"{t50 - bt50:+.2f} / {t99 - bt99:+.2f}",
                "-" if is_base else f"{g50 - bg50:+.2f} / {g99 - bg99:+.2f}",
                "-" if is_base else fmt(1e3 * row.cpu / max(1, s.streams), 2),
                fmt(row.cpu_client / row.seconds if row.seconds else NAN),
                fmt(row.load.cores),
            ]
        )  # fmt: skip
    header = [
        "target", "streams", "complete", "errors", "chunks/stream", "chunks/s", "TTFB p50 ms", "TTFB p99 ms",
        "gap p50 ms", "gap p99 ms", "added TTFB p50/p99", "added gap p50/p99", "gateway CPU ms/stream",
        "client busy (cores)", "others' load (cores)",
    ]  # fmt: skip
    return table(header, out)


def ramp_capacity(steps: list[RampStep], levels: list[int], note: str) -> tuple[str, str, float]:
    """(short text, long text, numeric value for ratios) of the highest level a gateway passed; a level's
    verdict is its last attempt's."""
    final: dict[int, RampStep] = {}
    for step in steps:
        final[step.level] = step
    passed = [lvl for lvl, s in final.items() if s.passed]
    failed = next((s for s in final.values() if not s.passed), None)
    best = max(passed) if passed else 0
    if failed is None:
        if not final:
            return "-", "not measured" + (" (ramp stopped: harness limit)" if note else ""), NAN
        if max(final) == levels[-1]:
            return f">= {best}", f">= {best} (passed every level)", float(best)
        return f">= {best}", f">= {best} (the ramp stopped above it: harness limit)", float(best)
    if not passed:
        return f"< {failed.level}", f"< {failed.level} (failed the first level: {failed.reason})", 0.0
    return str(best), f"{best} (failed {failed.level}: {failed.reason})", float(best)


def ramp_table(report: Report) -> str:
    out = []
    for level in report.cfg.ramp_levels:
        for name, steps in report.ramp.items():
            for s in steps:
                if s.level != level:
                    continue
                st, bs = s.row.stats, s.base.stats
                out.append(
                    [
                        str(level), name + (" (confirmation)" if s.attempt > 1 else ""), f"{st.complete}/{st.streams}",
                        str(st.errors), fmt(percentile(st.ttfb_ms, 50), 1), fmt(percentile(st.ttfb_ms, 99), 1),
                        fmt(percentile(st.gaps_ms, 50), 1), fmt(percentile(st.gaps_ms, 99), 1),
                        fmt(percentile(bs.gaps_ms, 99), 1), f"{s.added_gap_p99:+.1f}", f"{s.added_ttfb_p50:+.1f}",
                        fmt(1e3 * s.row.cpu / max(1, st.streams), 2),
                        fmt(s.row.cpu_client / s.row.seconds if s.row.seconds else NAN),
                        fmt(s.row.load.cores), "pass" if s.passed else f"FAIL: {s.reason}",
                    ]
                )  # fmt: skip
    header = [
        "streams", "target", "complete", "errors", "TTFB p50 ms", "TTFB p99 ms", "gap p50 ms", "gap p99 ms",
        "paired direct gap p99 ms", "added gap p99 ms", "added TTFB p50 ms", "gateway CPU ms/stream",
        "client busy (cores)",
        "others' load (cores)", "verdict",
    ]  # fmt: skip
    return table(header, out)


def protocols_table(runs: list[ProtocolRun], h1_wrk: float) -> str:
    base = runs[0].rps if runs else NAN
    out = [
        [
            r.name, fmt(r.rps, 0), ratio(r.rps, base), ratio(r.rps, h1_wrk), str(r.errors), fmt(r.mean_ms),
            fmt(r.p50_ms), fmt(r.p99_ms), fmt(r.max_ms), fmt(1e3 * r.cpu_omen / r.requests if r.requests else NAN, 3),
            fmt(r.cpu_client / r.seconds if r.seconds else NAN), fmt(r.others), r.note or "",
        ]
        for r in runs
    ]  # fmt: skip
    header = [
        "protocol", "req/s", "vs h1", "vs h1 (phase 2)", "errors", "mean ms", "p50 ms", "p99 ms", "max ms",
        "OMEN CPU ms/req", "client busy (cores)", "others' load (cores)", "note",
    ]  # fmt: skip
    return table(header, out)


@dataclass
class Summary:
    """One target's headline figures."""

    rps: dict[int, float]
    p99: dict[int, float]
    cpu_ms: float
    added_p50: float
    added_p99: float
    added_ttfb: float
    added_gap99: float
    cpu_stream: float
    peak_mib: float
    ramp_text: str
    ramp_long: str
    ramp_value: float
    errors: int


def summarise(report: Report) -> dict[str, Summary]:
    out: dict[str, Summary] = {}
    seq = {t.name: t for t in report.seq}
    sdirect = report.streams[0].stats
    b_seq = report.seq[0]
    for i, target in enumerate(report.targets):
        rows = {c: rows[i] for c, rows in report.throughput.items()}
        cpu = sum(r.cpu_gateway for row in rows.values() for r in row.runs)
        requests = sum(row.requests for row in rows.values())
        t = seq[target.name]
        s = report.streams[i]
        ramp_text, ramp_long, ramp_value = (
            ramp_capacity(report.ramp.get(target.name, []), report.cfg.ramp_levels, report.ramp_note)
            if report.cfg.ramp_levels and not target.is_direct
            else ("-", "-", NAN)
        )
        out[target.name] = Summary(
            rps={c: row.rps for c, row in rows.items()},
            p99={c: row.mean("p99_ms") for c, row in rows.items()},
            cpu_ms=1e3 * cpu / requests if requests and not target.is_direct else NAN,
            added_p50=percentile(t.samples_ms, 50) - percentile(b_seq.samples_ms, 50),
            added_p99=percentile(t.samples_ms, 99) - percentile(b_seq.samples_ms, 99),
            added_ttfb=percentile(s.stats.ttfb_ms, 50) - percentile(sdirect.ttfb_ms, 50),
            added_gap99=percentile(s.stats.gaps_ms, 99) - percentile(sdirect.gaps_ms, 99),
            cpu_stream=1e3 * s.cpu / s.stats.streams if s.stats.streams and not target.is_direct else NAN,
            peak_mib=target.peak.get("VmHWM", 0) / 1024 if target.peak else NAN,
            ramp_text=ramp_text,
            ramp_long=ramp_long,
            ramp_value=ramp_value,
            errors=sum(row.errors for row in rows.values()) + s.stats.errors + t.errors,
        )
    return out


def headline_table(report: Report, summary: dict[str, Summary]) -> str:
    conns = report.cfg.connections
    names = [t.name for t in report.targets]
    rows: list[list[str]] = []
    for c in conns:
        rows.append([f"req/s, wrk c={c}"] + [fmt(summary[n].rps[c], 0) for n in names])
        rows.append([f"p99 ms, wrk c={c}"] + [fmt(summary[n].p99[c], 1) for n in names])
    rows += [
        ["gateway CPU ms/req (all wrk runs)"] + [fmt(summary[n].cpu_ms, 3) for n in names],
        ["added latency p50 ms, c=1"] + ["-" if i == 0 else fmt(summary[n].added_p50, 3) for i, n in enumerate(names)],
        ["added latency p99 ms, c=1"] + ["-" if i == 0 else fmt(summary[n].added_p99, 3) for i, n in enumerate(names)],
        [f"added TTFB p50 ms, {report.cfg.streams} streams"]
        + ["-" if i == 0 else f"{summary[n].added_ttfb:+.2f}" for i, n in enumerate(names)],
        [f"added gap p99 ms, {report.cfg.streams} streams"]
        + ["-" if i == 0 else f"{summary[n].added_gap99:+.2f}" for i, n in enumerate(names)],
        ["gateway CPU ms/stream"] + [fmt(summary[n].cpu_stream, 2) for n in names],
        ["peak RSS MiB (process tree)"] + [fmt(summary[n].peak_mib, 1) for n in names],
        ["errors (all phases)"] + [str(summary[n].errors) for n in names],
    ]
    if report.cfg.ramp_levels:
        rows.append(["streaming capacity (streams)"] + [summary[n].ramp_text for n in names])
    return table(["figure", *names], rows)


def ratio_table(report: Report, summary: dict[str, Summary]) -> str:
    """Each OMEN configuration divided by each other target, per headline figure."""
    omens = [t.name for t in report.targets if t.name.startswith("omen")]
    others = [t.name for t in report.targets if not t.name.startswith("omen")]
    conns = report.cfg.connections
    header = ["OMEN ÷ target"] + [f"req/s c={c} (higher = OMEN faster)" for c in conns] + [
        "CPU ms/req (lower = OMEN cheaper)", "added p50 c=1 (lower = OMEN adds less)",
        "peak RSS (lower = OMEN smaller)",
    ]  # fmt: skip
    if report.cfg.ramp_levels:
        header.append("streaming capacity, streams (OMEN vs target)")
    rows = []
    for o in omens:
        so = summary[o]
        for x in others:
            sx = summary[x]
            row = [f"{o} ÷ {x}"] + [ratio(so.rps[c], sx.rps[c]) for c in conns]
            if x == "direct":
                row += ["-", "-", "-"]
            else:
                added = ratio(so.added_p50, sx.added_p50) if so.added_p50 > 0 and sx.added_p50 > 0 else "-"
                row += [ratio(so.cpu_ms, sx.cpu_ms), added, ratio(so.peak_mib, sx.peak_mib)]
            if report.cfg.ramp_levels:
                # levels, not a ratio: "< 100" and ">= 250" (harness limit) have no meaningful quotient
                row.append("-" if x == "direct" else f"{so.ramp_text} vs {sx.ramp_text}")
            rows.append(row)
    return table(header, rows)


def render(report: Report) -> str:
    cfg = report.cfg
    mode = ("quick" if cfg.quick else "full") + (" run with peers" if cfg.peers else " run, OMEN only")
    names = ", ".join(t.name for t in report.targets)
    lines = [
        f"## {report.started:%Y-%m-%d %H:%M %Z} — {mode}",
        "",
        f"- command: `{report.command}`",
        *(f"- {k}: {v}" for k, v in report.info.items()),
        *(f"- peer {name}: {inst.version}" for name, inst in report.installed.items()),
        f"- targets, alternated round-robin in every phase: {names}",
        f"- durations: {cfg.duration:g} s per measurement x {cfg.rounds} round(s); c=1 probe {cfg.seq_duration:g} s; "
        f"total wall time {time.perf_counter() - T_START:.0f} s",
        "",
    ]
    summary = summarise(report)
    if len(report.targets) > 2 or cfg.ramp_levels:
        lines += [
            "### Summary (absolute figures)",
            "",
            headline_table(report, summary),
            "",
            "### Ratios: each OMEN configuration ÷ each other target (same run)",
            "",
            ratio_table(report, summary),
            "",
        ]
    for conns, rows in report.throughput.items():
        lines += [
            f"### Non-streaming chat completions, wrk -t1 -c{conns}, {report.body_size} B body",
            "",
            throughput_table(rows),
            "",
        ]
    lines += [
        "### Added latency at concurrency 1 (sequential keep-alive requests, targets interleaved)",
        "",
        seq_table(report.seq),
        "",
        f"Others' load during this probe: {report.seq_load.cores:.2f} cores.",
        "",
        f"### Streaming: {cfg.streams} concurrent SSE streams, upstream sends {cfg.chunks} chunks "
        f"{cfg.chunk_delay * 1e3:g} ms apart (stream starts spread over {cfg.chunks * cfg.chunk_delay:g} s)",
        "",
        stream_table(report.streams),
        "",
    ]
    if cfg.ramp_levels:
        lines += [
            "### Streaming capacity ramp",
            "",
            f"Upstream: {cfg.ramp_chunks} chunks {cfg.ramp_chunk_delay * 1e3:g} ms apart; "
            f"{cfg.ramp_duration:g} s per run; a gateway fails a level when a stream fails or its inter-chunk p99 "
            f"exceeds that of a direct run at the same level just before it by more than {cfg.ramp_budget_ms:g} ms"
            + (
                f", or its time to first event (p50) by more than {cfg.ramp_ttfb_budget_ms:g} ms"
                if cfg.ramp_ttfb_budget_ms
                else ""
            )
            + " (a failure without failed streams is confirmed by a second pair)",
            "",
            table(
                ["target", "highest level passed"],
                [[t.name, summary[t.name].ramp_long] for t in report.targets[1:]],
            ),
            "",
            ramp_table(report),
            "",
        ]
        if report.ramp_note:
            lines += [report.ramp_note, ""]
    if report.protocols:
        omen_rows = report.throughput[cfg.connections[0]]
        h1_wrk = next((r.rps for r in omen_rows if r.name == "omen"), NAN)
        lines += [
            f"### OMEN over other protocols (1 worker; h2load -D {cfg.protocol_duration:g} --warm-up-time 1; "
            f"h3: bench/h3load.py)",
            "",
            protocols_table(report.protocols, h1_wrk),
            "",
            f"vs h1 = ÷ the first row (measured back to back with the others); vs h1 (phase 2) = ÷ the `omen` "
            f"row of the c={cfg.connections[0]} wrk table above ({fmt(h1_wrk, 0)} req/s). h2load gives no "
            "percentiles (mean and max only). h3load is pure Python (aioquic): when its client busy is near 1.0 "
            "the client, not OMEN, is the limit. HTTP/1.1 is measured with wrk because h2load 1.52's HTTP/1.1 "
            "parser rejects OMEN's status line `HTTP/1.1 200 ` (empty reason phrase, valid HTTP).",
            "",
        ]
    lines += [
        "### Memory of each process tree (after startup / peak over the whole run)",
        "",
        table(
            ["target", "idle RSS MiB", "peak RSS (sum of VmHWM) MiB", "RSS after run MiB", "processes"],
            [
                [t.name, _mib(t.idle["VmRSS"]), _mib(t.peak["VmHWM"]), _mib(t.peak["VmRSS"]), str(t.peak["procs"])]
                for t in report.targets[1:]
                if t.idle and t.peak
            ],
        ),
        "",
    ]
    if report.fast_md:
        if not report.fast_md.lstrip().startswith("#"):
            lines += ["### `_fast` modules: compiled vs pure Python (bench/fast_modules.py --markdown)", ""]
        lines += [report.fast_md]
    lines += ["### How each target was started", "", *(f"- fake upstream {c}" for c in report.upstream_commands)]
    lines += [f"- **{t.name}**: `{t.command}`" + (f" — {t.notes}" if t.notes else "") for t in report.targets[1:]]
    lines += [""]
    if report.installed:
        lines += ["### How the peers were installed (scratch dir outside the repo)", ""]
        for name, inst in report.installed.items():
            state = "reused from an earlier run" if inst.reused else "installed by this run"
            cmds = "; ".join(f"`{c}`" for c in inst.commands)
            lines.append(f"- {name} ({state}, {report.cfg.peers_dir / name}): {cmds}")
        lines += [""]
    lines += [
        "### Load-generator commands",
        "",
        "- throughput: `BENCH_BODY_FILE=body.json BENCH_API_KEY=... BENCH_HEADERS=<route headers> "
        f"wrk -t1 -c<N> -d{cfg.duration:g}s --latency --timeout 10s -s bench/wrk_chat.lua "
        "http://127.0.0.1:<port>/v1/chat/completions` (after a 2 s warm-up per target)",
        "- concurrency 1: `bench/probes.py` (sequential_latency), in-process",
        "- streams: "
        + (
            f"`{STREAMGEN.binary.name} client PORT REQUEST STREAMS DURATION STAGGER` (bench/streamgen.c, compiled "
            "epoll load generator; paced upstream `streamgen server PORT SCRIPT DELAY_MS` replaying the fake's bytes)"
            if STREAMGEN.binary is not None
            else "`bench/probes.py` stream_probe, in-process (no C compiler found)"
        ),
        *(f"- {r.name}: `{r.command}`" for r in report.protocols),
        "",
    ]
    errors = [f"{r.name}: {e}" for r in report.streams for e in r.stats.error_samples]
    if errors:
        lines += ["### Stream errors (samples)", "", *(f"- {e}" for e in errors), ""]
    if report.unavailable:
        lines += ["### Peers not measured", ""]
        lines += [f"- **{name}**: {why.splitlines()[0]}" for name, why in report.unavailable.items()]
        details = [(n, w) for n, w in report.unavailable.items() if "\n" in w]
        for name, why in details:
            lines += ["", f"{name}:", "```", why[-3000:], "```"]
        lines += [""]
    if report.problems:
        lines += ["### Problems seen", "", *report.problems, ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
