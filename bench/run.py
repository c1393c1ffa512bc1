"""OMEN end-to-end benchmark: one command, every figure measured side by side in one run.

    .venv/bin/python bench/run.py            # ~8 s per measurement, 2 alternating rounds (~2 min)
    .venv/bin/python bench/run.py --quick    # ~3 s per measurement, 1 round (smoke run, ~35 s)

Starts two fake OpenAI upstreams (bench/fake_upstream.py: an instant one, and one streaming N chunks
with a delay), OMEN as a real server (`omen serve`) and a second OMEN with OMEN_PURE_PYTHON=1, then
measures direct-to-upstream vs through-OMEN, alternating targets:

1. non-streaming chat completions at 32 connections with wrk (req/s, p50/p99, errors, CPU per request
   of OMEN and of the upstream from /proc/<pid>/stat);
2. latency added at concurrency 1 (sequential keep-alive requests, interleaved request by request);
3. streaming: time to first event and inter-chunk gaps for concurrent SSE streams;
4. idle and peak RSS of OMEN;
5. compiled vs pure-Python `_fast` modules (bench/fast_modules.py --markdown).

Prints the tables and appends them to bench/RESULTS.md. See bench/README.md for what each figure means.
The machine has 2 cores shared by the load generator, OMEN and the upstream: compare ratios measured
in the same run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
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
MODEL = "bench-model"
STREAM_MODEL = "bench-model-stream"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
T_START = time.perf_counter()


def log(msg: str) -> None:
    print(f"[bench {time.perf_counter() - T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        log_path = self.workdir / f"{name}.log"
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

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in reversed(self.procs):
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
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
    """utime + stime of a process tree, in seconds."""
    total = 0
    for pid in tree_pids(root):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
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


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK  # minus idle and iowait


class OtherLoad:
    """How much CPU processes that are not ours used during a measurement, in cores: the machine is
    shared, and this says how noisy each figure is."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.total = 0.0
        self.wall = 0.0

    def _ours(self) -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        return me.ru_utime + me.ru_stime + children_cpu() + sum(cpu_seconds(p.pid) for p in self.procs.procs)

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


# --------------------------------------------------------------------------------------------------
# setup


def chat_body(stream: bool, model: str) -> bytes:
    """A ~1 KB chat request, the same bytes for every target."""
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


def omen_toml(port: int, upstream_port: int, stream_upstream_port: int) -> str:
    return f"""\
# written by bench/run.py
[server]
bind = "127.0.0.1:{port}"
access_log = false

[providers.fake]
type = "openai-compatible"
base_url = "http://127.0.0.1:{upstream_port}/v1"
api_key = "x"

[providers.fake-stream]
type = "openai-compatible"
base_url = "http://127.0.0.1:{stream_upstream_port}/v1"
api_key = "x"

[models."{MODEL}"]
provider = "fake"
model = "{MODEL}"

[models."{STREAM_MODEL}"]
provider = "fake-stream"
model = "{MODEL}"
"""


def clean_env(pure: bool = False) -> dict[str, str]:
    """The parent environment without anything OMEN would pick up as config."""
    drop = ("OPENAI_", "AZURE_OPENAI_", "XAI_", "OLLAMA_", "OMEN_", "OMEN__")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    if pure:
        env["OMEN_PURE_PYTHON"] = "1"
    return env


def wait_for(proc: Proc, check: str, port: int, timeout: float = 60.0, wait_file: Path | None = None) -> None:
    """Wait until the process answers: 'health' = GET /health 200, 'tcp' = accepts connections."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise SystemExit(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            if check == "tcp":
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            else:
                client = H11Client(port, timeout=2)
                try:
                    status, body = client.request("GET", "/health")
                finally:
                    client.close()
                if status == 200:
                    return
                last = f"HTTP {status}: {body[:200]!r}"
        except (OSError, ProbeError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise SystemExit(f"{proc.name} did not become ready in {timeout:.0f} s ({last}):\n{proc.log_tail()}")


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
    python = sys.executable
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        result = subprocess.run([python, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"cannot import {module}:\n{result.stderr[-2000:]}")
        if not announced:
            log(f"waiting for {module} to become importable, up to {timeout:.0f} s")
            announced = True
        time.sleep(5)


def sanity(port: int, body: bytes, stream: bool, what: str) -> None:
    """One request before measuring, so a broken setup fails loudly instead of benchmarking errors."""
    client = H11Client(port, timeout=30)
    try:
        status, data = client.request("POST", CHAT_PATH, body)
    finally:
        client.close()
    if status != 200:
        raise SystemExit(f"sanity request to {what} failed: HTTP {status}: {data[:500]!r}")
    if stream:
        if b"data:" not in data or b"[DONE]" not in data:
            raise SystemExit(f"sanity stream from {what} is not SSE ending in [DONE]: {data[:500]!r}")
    else:
        doc = orjson.loads(data)
        if not doc.get("choices"):
            raise SystemExit(f"sanity response from {what} has no choices: {data[:500]!r}")


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
    cpu_omen: float  # CPU seconds of the measured OMEN process tree during the run (0 for direct)
    cpu_upstream: float
    cpu_wrk: float


@dataclass
class ThroughputRow:
    name: str
    load: OtherLoad
    runs: list[WrkRun] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def mean(self, attr: str) -> float:
        return sum(getattr(r, attr) for r in self.runs) / len(self.runs)

    def per_request_ms(self, attr: str) -> float:
        return 1e3 * sum(getattr(r, attr) for r in self.runs) / max(1, self.requests)


def run_wrk(port: int, duration: float, connections: int, body_file: Path) -> dict[str, float]:
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "10s",
        "-s", str(BENCH / "wrk_chat.lua"), f"http://127.0.0.1:{port}{CHAT_PATH}",
    ]  # fmt: skip
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file))
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 60)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON ") :])
    raise SystemExit(f"wrk gave no result (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")


def measure_throughput(
    row: ThroughputRow, port: int, omen: Proc | None, upstream: Proc, duration: float, connections: int, body: Path
) -> WrkRun:
    omen_before = cpu_seconds(omen.pid) if omen else 0.0
    up_before = cpu_seconds(upstream.pid)
    wrk_before = children_cpu()
    with row.load.measure():
        data = run_wrk(port, duration, connections, body)
    wrk_cpu = children_cpu() - wrk_before
    up_cpu = cpu_seconds(upstream.pid) - up_before
    omen_cpu = cpu_seconds(omen.pid) - omen_before if omen else 0.0
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
        cpu_omen=omen_cpu,
        cpu_upstream=up_cpu,
        cpu_wrk=wrk_cpu,
    )
    row.runs.append(run)
    return run


@dataclass
class Config:
    duration: float
    rounds: int
    connections: int
    streams: int
    chunks: int
    chunk_delay: float
    seq_duration: float
    quick: bool


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


def throughput_table(rows: list[ThroughputRow]) -> str:
    base = rows[0]
    out = []
    for row in rows:
        errors = sum(r.errors for r in row.runs)
        details = "; ".join(r.error_detail for r in row.runs if r.error_detail)
        upstream_busy = sum(r.cpu_upstream for r in row.runs) / row.seconds if row.seconds else 0.0
        out.append(
            [
                row.name,
                fmt(row.rps, 0),
                " / ".join(fmt(r.rps, 0) for r in row.runs),
                ratio(row.rps, base.rps),
                fmt(row.mean("p50_ms")),
                fmt(row.mean("p99_ms")),
                f"{errors}" + (f" ({details})" if details else ""),
                fmt(row.per_request_ms("cpu_omen"), 3) if row is not base else "-",
                fmt(row.per_request_ms("cpu_upstream"), 3),
                f"{upstream_busy:.0%}",
                fmt(row.per_request_ms("cpu_wrk"), 3),
                fmt(row.load.cores),
            ]
        )
    header = [
        "target", "req/s", "per round", "vs direct", "p50 ms", "p99 ms", "errors",
        "OMEN CPU ms/req", "upstream CPU ms/req", "upstream busy", "wrk CPU ms/req", "others' load (cores)",
    ]  # fmt: skip
    return table(header, out)


def seq_table(targets: list[SeqTarget]) -> str:
    base = targets[0]
    b50, b99 = percentile(base.samples_ms, 50), percentile(base.samples_ms, 99)
    out = []
    for t in targets:
        p50, p90, p99 = (percentile(t.samples_ms, p) for p in (50, 90, 99))
        mean = sum(t.samples_ms) / len(t.samples_ms) if t.samples_ms else float("nan")
        added = t is not base
        out.append(
            [
                t.name, str(len(t.samples_ms)), str(t.errors), fmt(p50, 3), fmt(p90, 3), fmt(p99, 3), fmt(mean, 3),
                fmt(p50 - b50, 3) if added else "-", fmt(p99 - b99, 3) if added else "-",
            ]
        )  # fmt: skip
    header = ["target", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "mean ms", "added p50 ms", "added p99 ms"]
    return table(header, out)


@dataclass
class StreamRow:
    name: str
    load: OtherLoad
    stats: StreamStats = field(default_factory=StreamStats)
    seconds: float = 0.0
    cpu_omen: float = 0.0

    def merge(self, other: StreamStats, seconds: float, cpu: float) -> None:
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
        self.cpu_omen += cpu


def stream_table(rows: list[StreamRow], cfg: Config) -> str:
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
                "-" if is_base else fmt(1e3 * row.cpu_omen / max(1, s.streams), 2),
                fmt(row.load.cores),
            ]
        )  # fmt: skip
    header = [
        "target", "streams", "complete", "errors", "chunks/stream", "chunks/s", "TTFB p50 ms", "TTFB p99 ms",
        "gap p50 ms", "gap p99 ms", "added TTFB p50/p99", "added gap p50/p99", "OMEN CPU ms/stream",
        "others' load (cores)",
    ]  # fmt: skip
    return table(header, out)


# --------------------------------------------------------------------------------------------------
# environment description


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    omen_version = subprocess.run(
        [str(ROOT / ".venv/bin/omen"), "version"], cwd=ROOT, capture_output=True, text=True, env=clean_env()
    ).stdout.strip()
    return {
        "cpus": f"{os.cpu_count()} (nproc {len(os.sched_getaffinity(0))})",
        "cpu": cpu,
        "kernel": platform.release(),
        "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "python": platform.python_version(),
        "versions": ", ".join(
            f"{d} {version_of(d)}" for d in ("trio", "hypercorn", "httpx", "httpcore", "h11", "h2", "msgspec", "orjson")
        ),
        "wrk": (wrk.stdout + wrk.stderr).splitlines()[0] if (wrk.stdout + wrk.stderr) else "?",
        "git": (git[:12] or "?") + (" (+ uncommitted changes)" if dirty else ""),
        "omen version": omen_version.replace("\n", "; "),
    }


RESULTS_HEADER = """\
# OMEN benchmark results

Each section below is one run of `bench/run.py` (appended by the script; newest last). See
[README.md](README.md) for what each figure means and how it is measured.

How to read it:

- **Ratios within one run are the signal.** The machine has 2 cores shared by the load generator
  (wrk / the Python probes), OMEN and the fake upstream, and other work may be running; absolute
  numbers move between runs. "vs direct" compares OMEN with the fake upstream measured in the same run,
  alternating targets.
- **direct** = the load generator talks to the fake upstream itself (the upstream's own ceiling on this
  machine). **omen** = the same requests through OMEN (compiled `_fast` modules when built).
  **omen pure-python** = OMEN started with `OMEN_PURE_PYTHON=1`.
- CPU ms/req comes from `/proc/<pid>/stat` (utime+stime) of the process tree before/after each run;
  it does not depend on how busy the machine was, so it is the steadiest cost figure.
- "others' load (cores)" is the CPU used during a measurement by processes the benchmark did not
  start (other builds/tests on the machine); a row with ~1 core of others' load ran on about half
  the machine.
"""


# --------------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: ~3 s per measurement, 1 round")
    p.add_argument("--duration", type=float, help="seconds per measurement (default 8, --quick 3)")
    p.add_argument("--rounds", type=int, help="alternating rounds per target (default 2, --quick 1)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--streams", type=int, default=50, help="concurrent SSE streams (default 50)")
    p.add_argument("--chunks", type=int, default=20, help="chunks per upstream stream (default 20)")
    p.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between upstream chunks (default 0.02)")
    p.add_argument("--results", type=Path, default=BENCH / "RESULTS.md", help="file the run is appended to")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to the results file")
    p.add_argument("--skip-fast-modules", action="store_true", help="do not run bench/fast_modules.py")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with configs and server logs")
    p.add_argument("--wait", type=float, default=600, help="how long to wait for missing pieces (default 600 s)")
    args = p.parse_args(argv)
    duration = args.duration or (3.0 if args.quick else 8.0)
    cfg = Config(
        duration=duration,
        rounds=args.rounds or (1 if args.quick else 2),
        connections=args.connections,
        streams=args.streams,
        chunks=args.chunks,
        chunk_delay=args.chunk_delay,
        seq_duration=duration * (1 if args.quick else 2),
        quick=args.quick,
    )
    return cfg, args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install -y wrk")
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


def run(cfg: Config, args: argparse.Namespace, procs: Processes, workdir: Path) -> int:
    python = sys.executable
    fake = BENCH / "fake_upstream.py"
    wait_for_file(fake, "fake upstream", args.wait)
    wait_for_import("omen.server.serve", args.wait)
    command = " ".join(shlex.quote(a) for a in sys.orig_argv)
    info = machine_info()
    started = dt.datetime.now().astimezone()

    # ---- processes
    up_port, up_stream_port, omen_port, pure_port = (free_port() for _ in range(4))
    upstream = procs.start("upstream", [python, str(fake), "--kind", "openai", "--port", str(up_port)])
    up_stream = procs.start(
        "upstream-stream",
        [python, str(fake), "--kind", "openai", "--port", str(up_stream_port),
         "--chunks", str(cfg.chunks), "--chunk-delay", str(cfg.chunk_delay)],
    )  # fmt: skip
    configs = {}
    for name, port in (("omen", omen_port), ("omen-pure", pure_port)):
        path = workdir / f"{name}.toml"
        path.write_text(omen_toml(port, up_port, up_stream_port))
        configs[name] = path
    omen = procs.start("omen", [str(ROOT / ".venv/bin/omen"), "serve", "--config", str(configs["omen"])], clean_env())
    pure = procs.start(
        "omen-pure", [str(ROOT / ".venv/bin/omen"), "serve", "--config", str(configs["omen-pure"])], clean_env(True)
    )
    log(f"phase 1: starting fake upstreams (:{up_port}, :{up_stream_port} streaming) and OMEN (:{omen_port}, "
        f"pure-python :{pure_port})")  # fmt: skip
    wait_for(upstream, "tcp", up_port)
    wait_for(up_stream, "tcp", up_stream_port)
    wait_for(omen, "health", omen_port)
    wait_for(pure, "health", pure_port)
    time.sleep(0.5)
    idle = {"omen": memory_kib(omen.pid), "omen-pure": memory_kib(pure.pid)}

    body = chat_body(False, MODEL)
    stream_body_direct = chat_body(True, MODEL)
    stream_body_omen = chat_body(True, STREAM_MODEL)
    body_file = workdir / "body.json"
    body_file.write_bytes(body)
    sanity(up_port, body, False, "the fake upstream")
    sanity(omen_port, body, False, "OMEN")
    sanity(pure_port, body, False, "OMEN (pure-python)")
    sanity(up_stream_port, stream_body_direct, True, "the streaming fake upstream")
    sanity(omen_port, stream_body_omen, True, "OMEN (streaming)")
    log(f"all up; request body {len(body)} B; sanity requests OK")

    # ---- non-streaming throughput, alternating targets
    rows = [ThroughputRow(name, OtherLoad(procs)) for name in ("direct (fake upstream)", "omen", "omen pure-python")]
    targets = [(rows[0], up_port, None), (rows[1], omen_port, omen), (rows[2], pure_port, pure)]
    for row, port, _proc in targets:
        log(f"phase 2: warm-up 2 s: {row.name}")
        run_wrk(port, 2, cfg.connections, body_file)
    for rnd in range(cfg.rounds):
        for row, port, proc in targets:
            log(f"phase 2: non-streaming c={cfg.connections} round {rnd + 1}/{cfg.rounds}: {row.name} "
                f"({cfg.duration:g} s)")  # fmt: skip
            r = measure_throughput(row, port, proc, upstream, cfg.duration, cfg.connections, body_file)
            log(f"         {r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, errors {r.errors}")

    # ---- concurrency 1
    log(f"phase 3: sequential c=1 latency, targets interleaved request by request ({cfg.seq_duration:g} s)")
    seq = [
        SeqTarget("direct (fake upstream)", up_port, CHAT_PATH, body),
        SeqTarget("omen", omen_port, CHAT_PATH, body),
        SeqTarget("omen pure-python", pure_port, CHAT_PATH, body),
    ]
    seq_load = OtherLoad(procs)
    with seq_load.measure():
        sequential_latency(seq, cfg.seq_duration)
    log("         p50 " + ", ".join(f"{t.name} {percentile(t.samples_ms, 50):.3f} ms" for t in seq))

    # ---- streaming
    srows = [StreamRow(name, OtherLoad(procs)) for name in ("direct (fake upstream)", "omen")]
    stargets = [(srows[0], up_stream_port, stream_body_direct, None), (srows[1], omen_port, stream_body_omen, omen)]
    stagger = cfg.chunks * cfg.chunk_delay
    for rnd in range(cfg.rounds):
        for row, port, sbody, proc in stargets:
            log(f"phase 4: streaming {cfg.streams} concurrent SSE streams round {rnd + 1}/{cfg.rounds}: {row.name} "
                f"({cfg.duration:g} s)")  # fmt: skip
            before = cpu_seconds(proc.pid) if proc else 0.0
            t0 = time.perf_counter()
            with row.load.measure():
                stats = stream_probe(port, CHAT_PATH, sbody, cfg.streams, cfg.duration, stagger)
            seconds = time.perf_counter() - t0
            row.merge(stats, seconds, cpu_seconds(proc.pid) - before if proc else 0.0)
            log(f"         {stats.streams} streams, errors {stats.errors}, TTFB p50 "
                f"{percentile(stats.ttfb_ms, 50):.2f} ms, gap p99 {percentile(stats.gaps_ms, 99):.2f} ms")  # fmt: skip

    # ---- memory
    peak = {"omen": memory_kib(omen.pid), "omen-pure": memory_kib(pure.pid)}

    # ---- fast modules
    fast_md = ""
    if not args.skip_fast_modules:
        fast_md = run_fast_modules(cfg, args.wait)

    # ---- server health after the run
    problems = []
    for proc in (upstream, up_stream, omen, pure):
        if proc.popen.poll() is not None:
            problems.append(f"{proc.name} exited with {proc.popen.returncode} during the run")
        tail = proc.log_tail(60)
        failed = any(r.errors for row in rows for r in row.runs) or any(r.stats.errors for r in srows)
        if "Traceback" in tail or (failed and proc.name.startswith("omen") and tail.strip()):
            problems.append(f"{proc.name} output (last 60 lines):\n```\n{tail}\n```")

    # ---- report
    report = render(cfg, info, started, command, rows, seq, seq_load, srows, idle, peak, fast_md, problems, body)
    print(report)
    if not args.no_append:
        results: Path = args.results
        if not results.exists():
            results.write_text(RESULTS_HEADER)
        with open(results, "a") as f:
            f.write("\n" + report)
        log(f"appended to {results}")
    return 0


def run_fast_modules(cfg: Config, wait: float) -> str:
    script = BENCH / "fast_modules.py"
    wait_for_file(script, "compiled vs pure-Python micro-benchmarks", wait)
    log("phase 5: bench/fast_modules.py --markdown (compiled vs pure-Python _fast modules)")
    help_text = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True)
    argv = [sys.executable, str(script), "--markdown"]
    if cfg.quick and "--quick" in help_text.stdout:
        argv.append("--quick")
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900, env=clean_env())
    if result.returncode != 0:
        return f"`{' '.join(argv[1:])}` failed (exit {result.returncode}):\n\n```\n{result.stderr[-3000:]}\n```\n"
    return result.stdout.strip() + "\n"


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def render(
    cfg: Config,
    info: dict[str, str],
    started: dt.datetime,
    command: str,
    rows: list[ThroughputRow],
    seq: list[SeqTarget],
    seq_load: OtherLoad,
    srows: list[StreamRow],
    idle: dict[str, dict[str, int]],
    peak: dict[str, dict[str, int]],
    fast_md: str,
    problems: list[str],
    body: bytes,
) -> str:
    mode = "quick" if cfg.quick else "full"
    lines = [
        f"## {started:%Y-%m-%d %H:%M %Z} — {mode} run",
        "",
        f"- command: `{command}`",
        *(f"- {k}: {v}" for k, v in info.items()),
        f"- durations: {cfg.duration:g} s per measurement x {cfg.rounds} round(s), targets alternated; "
        f"c=1 probe {cfg.seq_duration:g} s; total wall time {time.perf_counter() - T_START:.0f} s",
        "",
        f"### Non-streaming chat completions, wrk -t1 -c{cfg.connections}, {len(body)} B body",
        "",
        throughput_table(rows),
        "",
        "### Added latency at concurrency 1 (sequential keep-alive requests, targets interleaved)",
        "",
        seq_table(seq),
        "",
        f"Others' load during this probe: {seq_load.cores:.2f} cores.",
        "",
        f"### Streaming: {cfg.streams} concurrent SSE streams, upstream sends {cfg.chunks} chunks "
        f"{cfg.chunk_delay * 1e3:g} ms apart (stream starts spread over {cfg.chunks * cfg.chunk_delay:g} s)",
        "",
        stream_table(srows, cfg),
        "",
        "### Memory of the OMEN process (after startup / peak over the whole run)",
        "",
        table(
            ["process", "idle RSS MiB", "peak RSS (VmHWM) MiB", "RSS after run MiB", "processes"],
            [
                [
                    name,
                    _mib(idle[name]["VmRSS"]),
                    _mib(peak[name]["VmHWM"]),
                    _mib(peak[name]["VmRSS"]),
                    str(peak[name]["procs"]),
                ]
                for name in ("omen", "omen-pure")
            ],
        ),
        "",
    ]
    if fast_md:
        if not fast_md.lstrip().startswith("#"):
            lines += ["### `_fast` modules: compiled vs pure Python (bench/fast_modules.py --markdown)", ""]
        lines += [fast_md]
    errors = [s for r in srows for s in r.stats.error_samples]
    if errors:
        lines += ["### Stream errors (samples)", "", *(f"- {e}" for e in errors), ""]
    if problems:
        lines += ["### Problems seen", "", *problems, ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
