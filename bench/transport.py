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
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import run as benchrun  # noqa: E402  (bench/run.py: process helpers, wrk, the request body)

from omen.transport.h11_transport import H11Transport  # noqa: E402

TRANSPORTS = ("httpcore", "h11")


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
                benchrun.log(f"client {kind:8} tasks={tasks:2} round {rnd + 1}: {tally.us_per_request:6.0f} us CPU/req")
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
    return benchrun.table(header, rows)


# --------------------------------------------------------------------------------------------------
# OMEN under wrk, one server per transport


@dataclass
class OmenRow:
    name: str
    runs: list[benchrun.WrkRun] = field(default_factory=list)
    load: benchrun.OtherLoad | None = None

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def rps(self) -> float:
        seconds = sum(r.seconds for r in self.runs)
        return self.requests / seconds if seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1e3 * sum(r.cpu_omen for r in self.runs) / max(1, self.requests)


def start_omens(procs: benchrun.Processes, workdir: Path, up_port: int) -> dict[str, tuple[benchrun.Proc, int]]:
    omens = {}
    for kind in TRANSPORTS:
        port = benchrun.free_port()
        config = workdir / f"omen-{kind}.toml"
        config.write_text(benchrun.omen_toml(port, up_port, up_port))
        env = benchrun.clean_env()
        env["OMEN_UPSTREAM_TRANSPORT"] = kind
        proc = procs.start(f"omen-{kind}", [str(ROOT / ".venv/bin/omen"), "serve", "--config", str(config)], env)
        omens[kind] = (proc, port)
    for kind, (proc, port) in omens.items():
        benchrun.wait_for(proc, "health", port)
        benchrun.sanity(port, benchrun.chat_body(False, benchrun.MODEL), False, f"OMEN ({kind})")
    return omens


def omen_bench(
    procs: benchrun.Processes, omens: dict[str, tuple[benchrun.Proc, int]], upstream: benchrun.Proc,
    body_file: Path, duration: float, rounds: int,
) -> list[OmenRow]:  # fmt: skip
    rows = {kind: OmenRow(f"omen ({kind})", load=benchrun.OtherLoad(procs)) for kind in TRANSPORTS}
    for _, port in omens.values():
        benchrun.run_wrk(port, 2, 32, body_file)  # warm-up
    for rnd in range(rounds):
        for kind in TRANSPORTS if rnd % 2 == 0 else TRANSPORTS[::-1]:
            proc, port = omens[kind]
            row = rows[kind]
            r = benchrun.measure_throughput(row, port, proc, upstream, duration, 32, body_file)  # type: ignore[arg-type]
            cpu_ms = 1e3 * r.cpu_omen / max(1, r.requests)
            benchrun.log(f"omen {kind:8} #{rnd + 1}: {r.rps:,.0f} req/s, {cpu_ms:.3f} ms CPU/req, errors {r.errors}")
    return list(rows.values())


def omen_table(rows: list[OmenRow]) -> str:
    base = rows[0]
    out = []
    for row in rows:
        assert row.load is not None
        out.append([
            row.name, f"{row.rps:,.0f}", " / ".join(f"{r.rps:,.0f}" for r in row.runs),
            f"{row.rps / base.rps:.2f}x" if row is not base else "-",
            f"{row.cpu_ms:.3f}", f"{base.cpu_ms / row.cpu_ms:.2f}x" if row is not base else "-",
            f"{sum(r.p50_ms for r in row.runs) / len(row.runs):.2f}", str(sum(r.errors for r in row.runs)),
            f"{row.load.cores:.2f}",
        ])  # fmt: skip
    header = ["target", "req/s", "per round", "req/s ratio", "OMEN CPU ms/req", "CPU saving", "p50 ms", "errors",
              "others' load (cores)"]  # fmt: skip
    return benchrun.table(header, out)


# --------------------------------------------------------------------------------------------------
# py-spy


def profile(kind: str, proc: benchrun.Proc, port: int, body_file: Path, workdir: Path, seconds: float) -> Path:
    out = workdir / f"pyspy-{kind}.txt"
    spy = subprocess.Popen(
        [str(ROOT / ".venv/bin/py-spy"), "record", "-p", str(proc.pid), "-d", str(int(seconds)), "-f", "raw",
         "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    benchrun.run_wrk(port, seconds + 4, 32, body_file)
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
        "py-spy sees trio tasks as separate stacks (frames are not linked across C calls such as "
        "`Context.run` or async-generator steps), so a frame's share counts only the samples under it within "
        "its own fragment; the per-package view counts any stack that holds a frame of the package.",
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
    parts.append(benchrun.table(header, rows))
    for kind, stacks in all_stacks.items():
        total = totals[kind]
        lines = [f"#### omen ({kind}): top {limit} inclusive frames", "", "| % of samples | frame |", "|---|---|"]
        lines += [f"| {100 * n / max(1, total):.1f} | `{frame}` |" for frame, n in top_frames(stacks, limit)]
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
    procs = benchrun.Processes(workdir)
    try:
        up_port = benchrun.free_port()
        upstream = procs.start(
            "upstream", [sys.executable, str(BENCH / "fake_upstream.py"), "--kind", "openai", "--port", str(up_port)]
        )
        benchrun.wait_for(upstream, "tcp", up_port)
        body = benchrun.chat_body(False, benchrun.MODEL)
        url = f"http://127.0.0.1:{up_port}{benchrun.CHAT_PATH}"
        sections = [f"## Upstream transports, {time.strftime('%Y-%m-%d %H:%M %Z')}", "",
                    f"- command: `{' '.join(sys.orig_argv)}`", f"- load average at start: "
                    f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}", ""]  # fmt: skip

        load = benchrun.OtherLoad(procs)
        with load.measure():
            results = trio.run(client_bench, url, body, args.requests, args.rounds)
        title = f"### Client: {args.requests} requests per round x {args.rounds} rounds, {len(body)} B body"
        sections += [f"{title} (others' load {load.cores:.2f} cores)", "", client_table(results), ""]

        if args.omen or args.profile:
            body_file = workdir / "body.json"
            body_file.write_bytes(body)
            omens = start_omens(procs, workdir, up_port)
            rows = omen_bench(procs, omens, upstream, body_file, args.duration, args.rounds)
            sections += [f"### OMEN under wrk -t1 -c32, {args.duration:g} s x {args.rounds} rounds", "",
                         omen_table(rows), ""]  # fmt: skip
            if args.profile:
                profiles = {}
                for kind, (proc, port) in omens.items():
                    benchrun.log(f"py-spy: omen ({kind}) for {args.profile_seconds:g} s")
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
            benchrun.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
