"""Upstream transport benchmark: httpx's default transport (httpcore) vs OMEN's h11 transport,
measured side by side in one run against the fake upstream (bench/fake_upstream.py, a subprocess).

    .venv/bin/python bench/transport.py                      # client benchmark (~30 s)
    .venv/bin/python bench/transport.py --omen               # + OMEN with each transport under wrk
    .venv/bin/python bench/transport.py --omen --profile     # + py-spy profile of each OMEN

1. Client: this process sends the same ~1 KB chat request the way omen/transport/exchange.py does
   (build_request + send(stream=True) + aiter_raw + aclose), N sequential requests and then N requests
   from 32 concurrent tasks, with each transport, alternating transports between rounds. Reports
   client CPU per request (time.process_time: only this process; the fake upstream is another one)
   and req/s.
2. ``--omen``: two OMEN servers on the same fake, one with OMEN_UPSTREAM_TRANSPORT=httpcore and one
   with the default (h11); ``wrk -t1 -c32`` alternately against each, OMEN CPU ms/request from
   /proc/<pid>/stat and req/s.
3. ``--profile``: ``py-spy record -f raw`` of each OMEN under the same wrk load, summarised as the
   top inclusive frames (share of samples whose stack contains the frame).

The machine has 2 cores shared with other work: compare the ratios of one run, not absolute figures
across runs.
"""

from __future__ import annotations

import argparse
import collections
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
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import trio

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from omen.transport.h11_transport import H11Transport  # noqa: E402

TRANSPORTS = ("httpcore", "h11")
CHAT_PATH = "/v1/chat/completions"
MODEL = "bench-model"
CLK_TCK = os.sysconf("SC_CLK_TCK")
T_START = time.perf_counter()

# --------------------------------------------------------------------------------------------------
# small process helpers (self-contained: bench/run.py changes independently)


def log(msg: str) -> None:
    print(f"[transport {time.perf_counter() - T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


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


class Processes:
    """Every process started here, each in its own process group, stopped (by group id) on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as out:
            popen = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait(timeout=5)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (OMEN runs as a single process with workers = 1)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().decode().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> float:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def wait_ready(proc: Proc, port: int, path: str | None, timeout: float = 60.0) -> None:
    """Until the port accepts connections (path None) or GET path answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise SystemExit(f"{proc.name} exited with {proc.popen.returncode}: {proc.log_path.read_text()[-2000:]}")
        try:
            if path is None:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{proc.name} not ready after {timeout:g} s: {proc.log_path.read_text()[-2000:]}")


def chat_body() -> bytes:
    """A ~1 KB non-streamed chat request (the shape bench/run.py posts)."""
    return orjson.dumps({
        "model": MODEL, "max_tokens": 64, "temperature": 0,
        "messages": [
            {"role": "system", "content": "You are a terse benchmark assistant. " * 11},
            {"role": "user", "content": "Summarise why a gateway should add little latency. " * 9},
        ],
    })  # fmt: skip


def omen_toml(port: int, upstream_port: int) -> str:
    return f"""\
[server]
bind = "127.0.0.1:{port}"
access_log = false

[providers.fake]
type = "openai-compatible"
base_url = "http://127.0.0.1:{upstream_port}/v1"
api_key = "x"

[models."{MODEL}"]
provider = "fake"
model = "{MODEL}"
"""


def omen_env(transport: str) -> dict[str, str]:
    """The environment without anything OMEN would read as config, plus the transport switch."""
    drop = ("OPENAI_", "AZURE_OPENAI_", "XAI_", "OLLAMA_", "OMEN_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["OMEN_UPSTREAM_TRANSPORT"] = transport
    return env


@dataclass
class WrkRun:
    requests: int
    seconds: float
    p50_ms: float
    errors: int
    cpu_omen: float
    others: float  # CPU seconds used by processes other than OMEN, the fake and wrk (the machine is shared)


def run_wrk(port: int, duration: float, body_file: Path) -> dict[str, float]:
    argv = ["wrk", "-t1", "-c32", f"-d{duration:g}s", "--latency", "--timeout", "10s",
            "-s", str(BENCH / "wrk_chat.lua"), f"http://127.0.0.1:{port}{CHAT_PATH}"]  # fmt: skip
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file))
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 60)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON ") :])
    raise SystemExit(f"wrk gave no result (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")


def measure(port: int, omen: Proc, upstream: Proc, duration: float, body_file: Path) -> WrkRun:
    def ours() -> float:
        usage = os.times()
        return cpu_seconds(omen.pid) + cpu_seconds(upstream.pid) + usage.children_user + usage.children_system

    omen0, ours0, busy0 = cpu_seconds(omen.pid), ours(), machine_busy()
    data = run_wrk(port, duration, body_file)
    omen_cpu = cpu_seconds(omen.pid) - omen0
    others = max(0.0, (machine_busy() - busy0) - (ours() - ours0))
    errors = sum(int(v) for k, v in data.items() if k.startswith("err_"))
    return WrkRun(int(data["requests"]), data["duration_us"] / 1e6, data["p50_us"] / 1e3, errors, omen_cpu, others)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def make_client(kind: str) -> httpx.AsyncClient:
    """The clients omen/transport/pool.py builds for an HTTP/1.1 upstream."""
    timeout = httpx.Timeout(None, connect=10.0, pool=10.0)
    if kind == "h11":
        return httpx.AsyncClient(transport=H11Transport(max_connections=100), timeout=timeout, trust_env=False)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=30.0)
    return httpx.AsyncClient(http1=True, http2=False, limits=limits, timeout=timeout, trust_env=False)


@dataclass
class Tally:
    requests: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    errors: int = 0

    def add(self, requests: int, cpu: float, wall: float, errors: int) -> None:
        self.requests += requests
        self.cpu += cpu
        self.wall += wall
        self.errors += errors

    @property
    def us_per_request(self) -> float:
        return 1e6 * self.cpu / max(1, self.requests)

    @property
    def rps(self) -> float:
        return self.requests / self.wall if self.wall else 0.0


async def one_request(client: httpx.AsyncClient, url: str, body: bytes) -> int:
    request = client.build_request("POST", url, content=body, headers={"content-type": "application/json"})
    response = await client.send(request, stream=True)
    try:
        async for _ in response.aiter_raw():
            pass
    finally:
        await response.aclose()
    return response.status_code


async def client_round(kind: str, url: str, body: bytes, requests: int, tasks: int) -> tuple[int, float, float, int]:
    errors = 0
    async with make_client(kind) as client:
        await one_request(client, url, body)  # connect outside the measurement

        async def worker(n: int) -> None:
            nonlocal errors
            for _ in range(n):
                if await one_request(client, url, body) != 200:
                    errors += 1

        cpu0, t0 = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(tasks):
                nursery.start_soon(worker, requests // tasks + (1 if i < requests % tasks else 0))
        return requests, time.process_time() - cpu0, time.perf_counter() - t0, errors


async def client_bench(url: str, body: bytes, requests: int, rounds: int) -> dict[tuple[str, int], Tally]:
    results = {(kind, tasks): Tally() for tasks in (1, 32) for kind in TRANSPORTS}
    for warm in TRANSPORTS:
        await client_round(warm, url, body, 300, 8)
    for rnd in range(rounds):
        for tasks in (1, 32):
            for kind in TRANSPORTS if rnd % 2 == 0 else TRANSPORTS[::-1]:
                tally = results[(kind, tasks)]
                tally.add(*await client_round(kind, url, body, requests, tasks))
                log(f"client {kind:8} tasks={tasks:2} round {rnd + 1}: {tally.us_per_request:6.0f} us CPU/req")
    return results


def client_table(results: dict[tuple[str, int], Tally]) -> str:
    rows = []
    for tasks in (1, 32):
        base = results[("httpcore", tasks)]
        for kind in TRANSPORTS:
            t = results[(kind, tasks)]
            rows.append([
                f"{'sequential' if tasks == 1 else f'{tasks} concurrent tasks'}", kind, str(t.requests), str(t.errors),
                f"{t.us_per_request:,.0f}", f"{base.us_per_request / t.us_per_request:.2f}x" if t is not base else "-",
                f"{t.rps:,.0f}", f"{t.rps / base.rps:.2f}x" if t is not base else "-",
            ])  # fmt: skip
    header = ["load", "transport", "requests", "errors", "client CPU us/req", "CPU saving", "req/s", "req/s ratio"]
    return table(header, rows)


# --------------------------------------------------------------------------------------------------
# OMEN under wrk, one server per transport


@dataclass
class OmenRow:
    name: str
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

    @property
    def cpu_ms(self) -> float:
        return 1e3 * sum(r.cpu_omen for r in self.runs) / max(1, self.requests)

    @property
    def others_cores(self) -> float:
        return sum(r.others for r in self.runs) / self.seconds if self.seconds else 0.0


def start_omens(procs: Processes, workdir: Path, up_port: int) -> dict[str, tuple[Proc, int]]:
    omens = {}
    for kind in TRANSPORTS:
        port = free_port()
        config = workdir / f"omen-{kind}.toml"
        config.write_text(omen_toml(port, up_port))
        argv = [str(ROOT / ".venv/bin/omen"), "serve", "--config", str(config)]
        omens[kind] = (procs.start(f"omen-{kind}", argv, omen_env(kind)), port)
    for kind, (proc, port) in omens.items():
        wait_ready(proc, port, "/health")
        sanity = httpx.post(f"http://127.0.0.1:{port}{CHAT_PATH}", content=chat_body(), timeout=30)
        if sanity.status_code != 200 or not sanity.json().get("choices"):
            raise SystemExit(f"sanity request through OMEN ({kind}) failed: {sanity.status_code} {sanity.text[:500]}")
    return omens


def omen_bench(
    omens: dict[str, tuple[Proc, int]], upstream: Proc, body_file: Path, duration: float, rounds: int
) -> list[OmenRow]:
    rows = {kind: OmenRow(f"omen ({kind})") for kind in TRANSPORTS}
    for _, port in omens.values():
        run_wrk(port, 2, body_file)  # warm-up
    for rnd in range(rounds):
        for kind in TRANSPORTS if rnd % 2 == 0 else TRANSPORTS[::-1]:
            proc, port = omens[kind]
            r = measure(port, proc, upstream, duration, body_file)
            rows[kind].runs.append(r)
            cpu_ms = 1e3 * r.cpu_omen / max(1, r.requests)
            log(f"omen {kind:8} #{rnd + 1}: {r.requests / r.seconds:,.0f} req/s, {cpu_ms:.3f} ms CPU/req, "
                f"errors {r.errors}")  # fmt: skip
    return list(rows.values())


def omen_table(rows: list[OmenRow]) -> str:
    base = rows[0]
    out = []
    for row in rows:
        out.append([
            row.name, f"{row.rps:,.0f}", " / ".join(f"{r.requests / r.seconds:,.0f}" for r in row.runs),
            f"{row.rps / base.rps:.2f}x" if row is not base else "-",
            f"{row.cpu_ms:.3f}", f"{base.cpu_ms / row.cpu_ms:.2f}x" if row is not base else "-",
            f"{sum(r.p50_ms for r in row.runs) / len(row.runs):.2f}", str(sum(r.errors for r in row.runs)),
            f"{row.others_cores:.2f}",
        ])  # fmt: skip
    header = ["target", "req/s", "per round", "req/s ratio", "OMEN CPU ms/req", "CPU saving", "p50 ms", "errors",
              "others' load (cores)"]  # fmt: skip
    return table(header, out)


# --------------------------------------------------------------------------------------------------
# py-spy


def profile(kind: str, proc: Proc, port: int, body_file: Path, workdir: Path, seconds: float) -> Path:
    out = workdir / f"pyspy-{kind}.txt"
    spy = subprocess.Popen(
        [str(ROOT / ".venv/bin/py-spy"), "record", "-p", str(proc.pid), "-d", str(int(seconds)), "-f", "raw",
         "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_wrk(port, seconds + 4, body_file)
    _, err = spy.communicate(timeout=60)
    if spy.returncode != 0 or not out.exists():
        raise SystemExit(f"py-spy failed (exit {spy.returncode}): {err[-2000:]}")
    return out


def read_raw(raw: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) format: 'frame;frame;... count' per line, outermost frame first."""
    stacks = []
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            stacks.append((stack.split(";"), int(n)))
    return stacks


def top_frames(stacks: list[tuple[list[str], int]], limit: int) -> list[tuple[str, int]]:
    """Inclusive sample counts per frame (a frame counts once per stack, however deep it recurses)."""
    counts: collections.Counter[str] = collections.Counter()
    for frames, samples in stacks:
        for frame in {f"{frame.split(' (')[0]} ({_short(frame)})" for frame in frames}:
            counts[frame] += samples
    return counts.most_common(limit)


# Stack -> the package it belongs to, for the per-package view (first match wins, most specific first).
PACKAGES = [
    ("omen/transport/h11_transport.py", "omen/transport/h11_transport.py"),
    ("omen/transport/exchange.py", "omen/transport/exchange.py"),
    ("httpx", "httpx/"),
    ("httpcore", "httpcore/"),
    ("h11", "h11/"),
    ("hypercorn", "hypercorn/"),
]


def package_shares(stacks: list[tuple[list[str], int]]) -> list[tuple[str, int]]:
    """Samples whose stack holds any frame of the package (inclusive: what it calls is counted too)."""
    counts: collections.Counter[str] = collections.Counter()
    for frames, samples in stacks:
        paths = [_short(frame) for frame in frames]
        for name, marker in PACKAGES:
            if any(path.startswith(marker) for path in paths):
                counts[name] += samples
    return [(name, counts[name]) for name, _ in PACKAGES]


def _short(frame: str) -> str:
    """'fn (/long/path/site-packages/pkg/mod.py:12)' -> 'pkg/mod.py'."""
    where = frame.rpartition(" (")[2].rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", str(ROOT) + "/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path


def profile_table(profiles: dict[str, Path], limit: int) -> str:
    parts = [
        "py-spy samples OMEN's main thread at 100 Hz and leaves idle samples out, so a frame's share is its "
        "inclusive share of OMEN's busy time (OMEN is CPU-bound under this load). Per package: the samples whose "
        "stack holds any frame of the package (what it calls included; hypercorn's h11 server counts under h11).",
    ]
    all_stacks = {kind: read_raw(raw) for kind, raw in profiles.items()}
    totals = {kind: sum(n for _, n in stacks) for kind, stacks in all_stacks.items()}
    header = ["package (inclusive)", *(f"omen ({kind}) % of samples" for kind in all_stacks)]
    shares = {kind: dict(package_shares(stacks)) for kind, stacks in all_stacks.items()}
    rows = [
        [name, *(f"{100 * shares[kind][name] / max(1, totals[kind]):.1f}" for kind in all_stacks)]
        for name, _ in PACKAGES
    ]
    rows.append(["(samples)", *(str(totals[kind]) for kind in all_stacks)])
    parts.append(table(header, rows))
    for kind, stacks in all_stacks.items():
        total = totals[kind]
        lines = [f"#### omen ({kind}): top {limit} inclusive frames", "", "| % of samples | frame |", "|---|---|"]
        # Frames on every sample (the trunk: main -> serve -> trio's run loop) say nothing; leave them out.
        frames = [(frame, n) for frame, n in top_frames(stacks, limit + 8) if n < total][:limit]
        lines += [f"| {100 * n / max(1, total):.1f} | `{frame}` |" for frame, n in frames]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=3000, help="requests per client round (default 3000)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    p.add_argument("--omen", action="store_true", help="also benchmark OMEN with each transport under wrk")
    p.add_argument("--duration", type=float, default=6.0, help="seconds per wrk run (default 6)")
    p.add_argument("--profile", action="store_true", help="py-spy each OMEN under wrk (implies --omen)")
    p.add_argument("--profile-seconds", type=float, default=8.0)
    p.add_argument("--top", type=int, default=25, help="frames per profile table")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs, raw profiles)")
    args = p.parse_args(argv)
    if (args.omen or args.profile) and shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    workdir = Path(tempfile.mkdtemp(prefix="omen-transport-bench-"))
    procs = Processes(workdir)
    try:
        up_port = free_port()
        upstream = procs.start(
            "upstream", [sys.executable, str(BENCH / "fake_upstream.py"), "--kind", "openai", "--port", str(up_port)]
        )
        wait_ready(upstream, up_port, None)
        body = chat_body()
        url = f"http://127.0.0.1:{up_port}{CHAT_PATH}"
        sections = [f"## Upstream transports, {time.strftime('%Y-%m-%d %H:%M %Z')}", "",
                    f"- command: `{' '.join(sys.orig_argv)}`", f"- load average at start: "
                    f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}", ""]  # fmt: skip

        busy0, mine0, up0, t0 = machine_busy(), time.process_time(), cpu_seconds(upstream.pid), time.perf_counter()
        results = trio.run(client_bench, url, body, args.requests, args.rounds)
        ours = time.process_time() - mine0 + cpu_seconds(upstream.pid) - up0
        others = max(0.0, machine_busy() - busy0 - ours) / (time.perf_counter() - t0)
        title = f"### Client: {args.requests} requests per round x {args.rounds} rounds, {len(body)} B body"
        sections += [f"{title} (others' load {others:.2f} cores)", "", client_table(results), ""]

        if args.omen or args.profile:
            body_file = workdir / "body.json"
            body_file.write_bytes(body)
            omens = start_omens(procs, workdir, up_port)
            rows = omen_bench(omens, upstream, body_file, args.duration, args.rounds)
            sections += [f"### OMEN under wrk -t1 -c32, {args.duration:g} s x {args.rounds} rounds", "",
                         omen_table(rows), ""]  # fmt: skip
            if args.profile:
                profiles = {}
                for kind, (proc, port) in omens.items():
                    log(f"py-spy: omen ({kind}) for {args.profile_seconds:g} s")
                    profiles[kind] = profile(kind, proc, port, body_file, workdir, args.profile_seconds)
                sections += [
                    "### py-spy (wrk -t1 -c32)",
                    "",
                    profile_table(profiles, args.top),
                    "",
                ]
        print("\n".join(sections))
        return 0
    finally:
        procs.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
