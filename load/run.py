"""OMEN load tests as quality gates: one command starts the fakes, OMEN and locust, then checks gates.

    .venv/bin/python load/run.py --short          # CI: 20 users for 45 s (< 2 minutes in all)
    .venv/bin/python load/run.py --soak 30        # 30 minutes at half capacity, OMEN RSS every 10 s

Starts four fake upstreams (bench/fake_upstream.py: openai, azure, xai, ollama) and ``omen serve`` on
free 127.0.0.1 ports, runs locust headless with load/locustfile.py, then evaluates gates that do not
depend on speed (so they cannot flake on a busy machine): zero failed requests, zero hung streams,
every completed stream well-formed, usage wherever it was asked for, one access-log record per
request with tokens for every completed chat completion and no 5xx, OMEN healthy after the run and
exiting 0 on SIGTERM. Prints a summary and exits 1 if a gate fails (2 if the setup itself failed).
See load/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

LOAD = Path(__file__).resolve().parent
ROOT = LOAD.parent
sys.path.insert(0, str(LOAD))

from load_shared import (  # noqa: E402
    DEFAULT_CHUNKS,
    ENV_CHUNKS,
    ENV_LEDGER,
    ENV_PHASE,
    ENV_SEED,
    ENV_STATS,
    ENV_THROUGHPUT,
    ENV_TIMEOUT,
    REQUEST_ID_PREFIX,
)

FAKE_KINDS = ("openai", "azure", "xai", "ollama")
CHAT_PATH = "/v1/chat/completions"
TOKEN_PATHS = (CHAT_PATH, "/v1/embeddings")
GRACEFUL_TIMEOUT = 10.0
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^[\s|+]*File \"|^[\s|+]*\w*(Error|Exception)\b")
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[load {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


class SetupError(Exception):
    """The harness could not start what it needs: not a gate failure (exit 2)."""


# --------------------------------------------------------------------------------------------------
# processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.out_path, self.err_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class Processes:
    """Every process started here, each in its own session (process group), all stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        out_path, err_path = self.workdir / f"{name}.out", self.workdir / f"{name}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        proc = Proc(name, popen, out_path, err_path)
        self.procs.append(proc)
        return proc

    @staticmethod
    def signal_group(proc: Proc, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                self.signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + GRACEFUL_TIMEOUT + 5
        for proc in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            self.signal_group(proc, signal.SIGKILL)  # the group may hold children after the leader left
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)


try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)  # loaded here: no imports after fork
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """Linux: SIGTERM the child if run.py dies without cleaning up (SIGKILL, a crashed CI job)."""
    if _LIBC is not None:
        with contextlib.suppress(Exception):
            _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def clean_env() -> dict[str, str]:
    """The parent environment without anything OMEN would read as config."""
    drop = ("OPENAI_", "AZURE_OPENAI_", "XAI_", "OLLAMA_", "OMEN_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def wait_for_line(proc: Proc, pattern: str, timeout: float, stream: str = "out") -> re.Match[str]:
    path = proc.out_path if stream == "out" else proc.err_path
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            match = regex.search(path.read_text(errors="replace"))
            if match:
                return match
        if proc.popen.poll() is not None:
            raise SetupError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        time.sleep(0.05)
    raise SetupError(f"{proc.name} did not report /{pattern}/ within {timeout:.0f} s:\n{proc.tail()}")


def http(
    port: int, method: str, path: str, body: dict[str, Any] | None = None, rid: str | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if rid:
        req.add_header("X-Request-ID", rid)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def omen_toml(ports: dict[str, int]) -> str:
    return f"""\
# written by load/run.py
[server]
bind = "127.0.0.1:0"
graceful_timeout = {GRACEFUL_TIMEOUT}
access_log = true

[providers.fake-openai]
type = "openai"
base_url = "http://127.0.0.1:{ports["openai"]}/v1"
api_key = "sk-load-openai"

[providers.fake-azure]
type = "azure"
endpoint = "http://127.0.0.1:{ports["azure"]}"
api_key = "load-azure-key"
api_version = "2024-10-21"

[providers.fake-xai]
type = "xai"
base_url = "http://127.0.0.1:{ports["xai"]}/v1"
api_key = "xai-load-key"

[providers.ollama]
type = "ollama"
endpoints = ["http://127.0.0.1:{ports["ollama"]}"]

[models."gpt-4o-mini"]
provider = "fake-openai"
model = "gpt-4o-mini"

[models."text-embedding-3-small"]
provider = "fake-openai"
model = "text-embedding-3-small"

[models."azure-gpt"]
provider = "fake-azure"
model = "gpt4o-deployment"

[models."azure-embed"]
provider = "fake-azure"
model = "embedding-deployment"

[models."grok"]
provider = "fake-xai"
model = "grok-3-mini"
"""


# --------------------------------------------------------------------------------------------------
# memory sampling


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_kib(root: int) -> int:
    total = 0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


class RssSampler:
    """OMEN's RSS (process tree) every ``interval`` seconds in a thread, tagged with the phase."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.phase = "idle"
        self.samples: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> None:
        self.samples.append((time.monotonic() - T0, self.phase, rss_kib(self.pid)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------------------
# locust


@dataclass
class Phase:
    tag: str
    users: int
    spawn_rate: float
    seconds: int
    throughput: float = 0.0  # tasks/s per user (0 = unthrottled, short random waits)
    ledger: Path = Path()
    stats: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    output: str = ""
    wall: float = 0.0

    @property
    def requests(self) -> int:
        return sum(int(s["num_requests"]) for s in self.stats)

    @property
    def failures(self) -> int:
        return sum(int(s["num_failures"]) for s in self.stats)

    @property
    def rps(self) -> float:
        if not self.stats:
            return 0.0
        start = min(float(s["start_time"]) for s in self.stats)
        end = max(float(s["last_request_timestamp"] or start) for s in self.stats)
        return self.requests / (end - start) if end > start else 0.0


def run_locust(procs: Processes, phase: Phase, port: int, args: argparse.Namespace) -> None:
    workdir = procs.workdir
    phase.ledger = workdir / f"ledger-{phase.tag}.jsonl"
    stats_file = workdir / f"stats-{phase.tag}.json"
    env = clean_env()
    env.update(
        {
            ENV_LEDGER: str(phase.ledger),
            ENV_PHASE: phase.tag,
            ENV_CHUNKS: str(args.chunks),
            ENV_TIMEOUT: str(args.timeout),
            ENV_THROUGHPUT: str(phase.throughput),
            ENV_SEED: str(args.seed),
            ENV_STATS: str(stats_file),
            "PYTHONUNBUFFERED": "1",
        }
    )
    argv = [
        sys.executable, "-m", "locust",
        "-f", str(LOAD / "locustfile.py"),
        "--headless", "--only-summary",
        "-u", str(phase.users), "-r", str(phase.spawn_rate), "-t", f"{phase.seconds}s",
        "--host", f"http://127.0.0.1:{port}",
        # users finish the request in hand (each bounded by --timeout) instead of being killed
        "--stop-timeout", str(int(args.timeout + 10)),
        "--exit-code-on-error", "1",
    ]  # fmt: skip
    log(
        f"locust phase {phase.tag!r}: {phase.users} users, {phase.seconds} s"
        + (f", {phase.throughput:.2f} tasks/s per user" if phase.throughput else ", unthrottled")
    )
    started = time.monotonic()
    proc = procs.start(f"locust-{phase.tag}", argv, env)
    limit = phase.seconds + args.timeout + 90
    try:
        phase.exit_code = proc.popen.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        procs.signal_group(proc, signal.SIGKILL)
        proc.popen.wait(timeout=10)
        raise SetupError(f"locust did not finish within {limit:.0f} s:\n{proc.tail()}") from None
    phase.wall = time.monotonic() - started
    lines = proc.tail(200).splitlines()
    summary_at = next((i for i, line in enumerate(lines) if line.startswith("Type ")), 0)
    phase.output = "\n".join(lines[summary_at:])  # locust's own summary tables
    if not stats_file.exists():
        raise SetupError(f"locust wrote no stats (exit {phase.exit_code}):\n{proc.tail()}")
    doc = json.loads(stats_file.read_text())
    phase.stats, phase.errors = doc["entries"], doc["errors"]


# --------------------------------------------------------------------------------------------------
# gates


@dataclass
class Gate:
    name: str
    ok: bool
    detail: str


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    records, other = [], []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                other.append(line)
                continue
            (records if isinstance(obj, dict) else other).append(obj if isinstance(obj, dict) else line)
    return records, other


def examples(items: list[str], n: int = 5) -> str:
    shown = "\n      ".join(items[:n])
    more = f"\n      ... {len(items) - n} more" if len(items) > n else ""
    return f"\n      {shown}{more}" if items else ""


def evaluate(
    phases: list[Phase],
    omen_err: Path,
    post: dict[str, str],
    exit_code: int | None,
    rss_gate: tuple[float, float] | None,
) -> tuple[list[Gate], dict[str, Any]]:
    gates: list[Gate] = []
    info: dict[str, Any] = {}
    starts: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    for phase in phases:
        records, _ = read_jsonl(phase.ledger)
        for r in records:
            (starts if r.get("ev") == "start" else ends)[r["id"]] = r
    all_ends = list(ends.values())
    info["ledger"] = all_ends

    # 1. zero failed requests (locust's count and the ledger's, which also holds the reasons)
    requests = sum(p.requests for p in phases)
    failures = sum(p.failures for p in phases)
    failed = [e for e in all_ends if e["outcome"] in ("failed", "timeout", "killed")]
    failed_desc = [f"{e['name']} {e['model'] or ''} [{e['id']}]: {'; '.join(e['problems'])[:400]}" for e in failed]
    exits = [p.exit_code for p in phases]
    gates.append(
        Gate(
            "zero failed requests",
            requests > 0 and failures == 0 and not failed and all(code == 0 for code in exits),
            f"{requests} requests, {failures} failures, locust exit code(s) {exits} (non-zero also on an "
            f"exception in a task){examples(failed_desc)}",
        )
    )

    # 2. zero hung streams: every request that started also ended, within the per-request timeout
    unended = [rid for rid in starts if rid not in ends]
    timeouts = [e for e in all_ends if e["outcome"] in ("timeout", "killed")]
    counted = len([e for e in all_ends if e["outcome"] != "killed"])
    ok = not unended and not timeouts and counted == requests
    gates.append(
        Gate(
            "zero hung requests or streams",
            ok,
            f"{len(starts)} started, {len(ends)} ended, {len(timeouts)} timed out/cut off, "
            f"{len(unended)} never ended; ledger {counted} vs locust {requests}{examples(unended)}",
        )
    )

    # 3. every completed stream well-formed; disconnects were deliberate
    streams = [e for e in all_ends if e["stream"] and e["expect"] == "complete"]
    bad_streams = [e for e in streams if e["outcome"] != "ok" or e["problems"]]
    aborts = [e for e in all_ends if e["expect"] == "abort"]
    aborted = sum(1 for e in aborts if e["outcome"] == "aborted")
    raced = sum(1 for e in aborts if e["outcome"] == "raced")
    gates.append(
        Gate(
            "every completed stream well-formed",
            bool(streams) and not bad_streams and all(e["outcome"] in ("aborted", "raced") for e in aborts),
            f"{len(streams) - len(bad_streams)}/{len(streams)} streams well-formed ([DONE]-terminated, JSON "
            f"events, expected content); {aborted} deliberate disconnects"
            + (f" ({raced} streams finished before the hang-up)" if raced else ""),
        )
    )

    # 4. usage wherever it was asked for, and none where it was not
    chat_ok = [e for e in all_ends if e["path"] == CHAT_PATH and e["expect"] == "complete" and e["outcome"] == "ok"]
    want_usage = [e for e in chat_ok if not e["stream"] or e["include_usage"]]
    no_usage = [e for e in chat_ok if e["stream"] and not e["include_usage"]]
    missing = [e["id"] for e in want_usage if not e["usage"]]
    leaked = [e["id"] for e in no_usage if e["usage"]]
    gates.append(
        Gate(
            "usage reported for every non-stream and include_usage stream (and only there)",
            not missing and not leaked and bool(want_usage),
            f"{len(want_usage) - len(missing)}/{len(want_usage)} with usage; "
            f"{len(no_usage) - len(leaked)}/{len(no_usage)} plain streams without a usage chunk"
            + examples(missing + leaked),
        )
    )

    # 5-7. OMEN's access log: one record per request, tokens, no 5xx
    records, other_lines = read_jsonl(omen_err)
    access = [r for r in records if r.get("event") == "request"]
    info["access"] = access
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in access:
        by_id.setdefault(str(r.get("request_id")), []).append(r)
    problems: list[str] = []
    for e in all_ends:
        recs = by_id.get(e["id"], [])
        if len(recs) != 1:
            problems.append(f"{e['id']}: {len(recs)} access-log records")
            continue
        rec = recs[0]
        if e["outcome"] == "ok" and rec.get("status") != e["status"]:
            problems.append(f"{e['id']}: client saw HTTP {e['status']}, log says {rec.get('status')}: {rec}")
    ours = {e["id"] for e in all_ends}
    phantom = [rid for rid in by_id if rid.startswith(REQUEST_ID_PREFIX) and rid not in ours]
    gates.append(
        Gate(
            "access log: exactly one record per request",
            not problems and not phantom,
            f"{len(access)} records for {len(all_ends)} load requests"
            + (f", {len(phantom)} unknown load ids" if phantom else "")
            + examples(problems + phantom),
        )
    )
    token_problems: list[str] = []
    checked = 0
    for e in all_ends:
        if e["path"] not in TOKEN_PATHS or e["outcome"] != "ok" or e["status"] != 200:
            continue
        recs = by_id.get(e["id"], [])
        if len(recs) != 1:
            continue  # reported above
        rec = recs[0]
        checked += 1
        pt, ct = rec.get("prompt_tokens"), rec.get("completion_tokens")
        if not isinstance(pt, int) or not isinstance(ct, int) or pt <= 0:
            token_problems.append(f"{e['name']} {e['model']} [{e['id']}]: no tokens in {json.dumps(rec)}")
        elif e["path"] == CHAT_PATH and ct <= 0:
            token_problems.append(f"{e['name']} {e['model']} [{e['id']}]: completion_tokens {ct}")
        elif e["usage"] and [pt, ct] != e["usage"]:
            token_problems.append(
                f"{e['name']} {e['model']} [{e['id']}]: log says {pt}+{ct} tokens, the client got {e['usage']}"
            )
    gates.append(
        Gate(
            "access log: tokens for every completed chat completion and embedding (= client usage)",
            checked > 0 and not token_problems,
            f"{checked - len(token_problems)}/{checked} records with tokens" + examples(token_problems),
        )
    )
    five = [r for r in access if isinstance(r.get("status"), int) and r["status"] >= 500]
    status_counts = Counter(str(r.get("status")) for r in access)
    gates.append(
        Gate(
            "access log: no 5xx",
            not five,
            "statuses "
            + ", ".join(f"{k}: {v}" for k, v in sorted(status_counts.items()))
            + examples([json.dumps(r) for r in five]),
        )
    )
    errors = [json.dumps(r) for r in records if r.get("level") in ("error", "critical")]
    # a traceback on stderr is always a bug; other plain lines (a warning, say) are only shown
    tracebacks = [line for line in other_lines if TRACEBACK.search(line)]
    info["stderr_other"] = [line for line in other_lines if line not in tracebacks]
    gates.append(
        Gate(
            "OMEN logged no errors (no level=error records, no tracebacks on stderr)",
            not errors and not tracebacks,
            f"{len(errors)} error records, {len(tracebacks)} traceback lines, {len(other_lines)} non-JSON lines"
            + examples(errors + tracebacks),
        )
    )

    # 8-9. after the run
    gates.append(Gate("OMEN healthy after the run", not post, "/health, a chat completion and a stream answered"
                      if not post else "; ".join(f"{k}: {v}" for k, v in post.items())))  # fmt: skip
    gates.append(
        Gate(
            "OMEN exits 0 on SIGTERM",
            exit_code == 0,
            "exit code 0" if exit_code == 0 else f"exit code {exit_code}",
        )
    )
    if rss_gate is not None:
        limit, drift = rss_gate
        gates.append(Gate(f"RSS drift <= {limit:.0f} MiB", drift <= limit, f"drift {drift:+.1f} MiB"))

    disconnect_recs = [
        by_id[e["id"]][0] for e in aborts if e["outcome"] == "aborted" and len(by_id.get(e["id"], [])) == 1
    ]
    info["disconnect_logged"] = Counter(f"{r.get('status')} {r.get('error', 'completed')}" for r in disconnect_recs)
    return gates, info


# --------------------------------------------------------------------------------------------------
# main


def post_run_checks(port: int) -> dict[str, str]:
    """OMEN must still serve after the load: /health, a chat completion, a streamed one."""
    problems: dict[str, str] = {}
    status, body = http(port, "GET", "/health", rid="run-post-health")
    if status != 200 or json.loads(body or b"{}") != {"status": "ok"}:
        problems["/health"] = f"HTTP {status}: {body[:200]!r}"
    msgs = [{"role": "user", "content": "still there?"}]
    status, body = http(port, "POST", CHAT_PATH, {"model": "gpt-4o-mini", "messages": msgs}, rid="run-post-chat")
    if status != 200 or not json.loads(body).get("choices"):
        problems["chat"] = f"HTTP {status}: {body[:200]!r}"
    req = {"model": "azure-gpt", "messages": msgs, "stream": True}
    status, body = http(port, "POST", CHAT_PATH, req, rid="run-post-stream")
    if status != 200 or not body.rstrip().endswith(b"data: [DONE]"):
        problems["stream"] = f"HTTP {status}: {body[-200:]!r}"
    return problems


def start_fakes(procs: Processes, args: argparse.Namespace) -> dict[str, int]:
    ports: dict[str, int] = {}
    for kind in FAKE_KINDS:
        argv = [
            sys.executable, str(ROOT / "bench" / "fake_upstream.py"),
            "--kind", kind, "--port", "0",
            "--chunks", str(args.chunks), "--chunk-delay", str(args.chunk_delay),
        ]  # fmt: skip
        proc = procs.start(f"fake-{kind}", argv, clean_env())
        ports[kind] = int(wait_for_line(proc, r"listening on http://127\.0\.0\.1:(\d+)", 30).group(1))
    return ports


def start_omen(procs: Processes, ports: dict[str, int]) -> tuple[Proc, int]:
    config = procs.workdir / "omen.toml"
    config.write_text(omen_toml(ports))
    proc = procs.start("omen", [sys.executable, "-m", "omen", "serve", "--config", str(config)], clean_env())
    match = wait_for_line(proc, r'"event":"listening".*?"port":(\d+)', 60, stream="err")
    port = int(match.group(1))
    deadline = time.monotonic() + 30
    while True:
        try:
            status, body = http(port, "GET", "/ready", rid="run-ready", timeout=5)
            if status == 200:
                break
        except OSError as exc:
            status, body = 0, str(exc).encode()
        if time.monotonic() > deadline:
            raise SetupError(f"OMEN not ready: HTTP {status}: {body[:300]!r}\n{proc.tail()}")
        time.sleep(0.1)
    # fail fast on a broken setup rather than measuring errors
    msgs = [{"role": "user", "content": "warm up"}]
    for model in ("gpt-4o-mini", "azure-gpt", "grok", "ollama/llama3.2"):
        status, body = http(port, "POST", CHAT_PATH, {"model": model, "messages": msgs}, rid=f"run-warmup-{model[:6]}")
        if status != 200:
            raise SetupError(f"warm-up chat completion with {model} failed: HTTP {status}: {body[:300]!r}")
    return proc, port


def sigterm_omen(procs: Processes, proc: Proc) -> int | None:
    procs.signal_group(proc, signal.SIGTERM)  # omen serve with one worker: the group is that process
    try:
        return proc.popen.wait(timeout=GRACEFUL_TIMEOUT + 20)
    except subprocess.TimeoutExpired:
        return None


def rss_report(sampler: RssSampler, phase: str) -> dict[str, float]:
    points = [(t, kib / 1024) for t, p, kib in sampler.samples if p == phase]
    if not points:
        return {}
    values = [v for _, v in points]
    # least-squares slope of RSS over time (MiB/s), 0 with fewer than two samples
    mt, mv = sum(t for t, _ in points) / len(points), sum(values) / len(values)
    var = sum((t - mt) ** 2 for t, _ in points)
    slope = sum((t - mt) * (v - mv) for t, v in points) / var if var else 0.0
    head, tail = values[: max(1, min(3, len(values) // 4))], values[-max(1, min(3, len(values) // 4)) :]
    return {
        "samples": len(values),
        "min": min(values),
        "max": max(values),
        "first": values[0],
        "last": values[-1],
        "drift": sum(tail) / len(tail) - sum(head) / len(head),
        "slope_per_hour": slope * 3600,
    }


def print_summary(
    phases: list[Phase], gates: list[Gate], info: dict[str, Any], rss: dict[str, dict[str, float]]
) -> None:
    out = sys.stdout
    print("\n" + "=" * 100, file=out)
    print("OMEN load test", file=out)
    for phase in phases:
        print(
            f"\nphase {phase.tag}: {phase.users} users, {phase.seconds} s"
            + (f", {phase.throughput * phase.users:.1f} tasks/s target" if phase.throughput else ", unthrottled")
            + f" -> {phase.requests} requests, {phase.failures} failures, {phase.rps:.1f} req/s "
            f"(locust exit {phase.exit_code})",
            file=out,
        )
    chats = [e["req_bytes"] for e in info.get("ledger", []) if e["path"] == CHAT_PATH]
    if chats:
        print(f"\nchat request bodies: {min(chats)}-{max(chats)} bytes (mean {sum(chats) / len(chats):.0f})", file=out)
    plain = [e for e in info.get("ledger", []) if e["stream"] and e["include_usage"] is False and e["outcome"] == "ok"]
    nulls = Counter(e["model"] for e in plain if e.get("usage_null_chunks"))
    if nulls:
        print(
            'observation (not a gate): streams without include_usage whose chunks carry "usage": null '
            "(the upstream sends no usage member then; OMEN asked it for usage): "
            + ", ".join(f"{m}: {n}/{sum(1 for e in plain if e['model'] == m)}" for m, n in sorted(nulls.items())),
            file=out,
        )
    other = info.get("stderr_other")
    if other:
        print(f"OMEN stderr had {len(other)} non-JSON lines (not tracebacks):{examples(other, 3)}", file=out)
    logged = info.get("disconnect_logged")
    if logged:
        print("client disconnects as OMEN logged them: " + ", ".join(f"{k}: {v}" for k, v in logged.items()), file=out)
    for phase, r in rss.items():
        if r:
            print(
                f"OMEN RSS during {phase}: {r['samples']:.0f} samples, min {r['min']:.1f} MiB, max {r['max']:.1f} MiB, "
                f"first {r['first']:.1f}, last {r['last']:.1f}, drift {r['drift']:+.1f} MiB (mean of the last "
                f"vs the first samples)"
                + (f"; linear trend {r['slope_per_hour']:+.1f} MiB/h" if phase == "soak" else ""),
                file=out,
            )
    print("\ngates:", file=out)
    for gate in gates:
        print(f"  [{'PASS' if gate.ok else 'FAIL'}] {gate.name}: {gate.detail}", file=out)
    failed = [g for g in gates if not g.ok]
    print(f"\n{'ALL GATES PASSED' if not failed else f'{len(failed)} GATE(S) FAILED'}", file=out)
    print("=" * 100, file=out, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--short", action="store_true", help="CI mode (default): 20 users for 45 s")
    mode.add_argument("--soak", type=float, metavar="MINUTES", help="long run at half capacity, RSS every 10 s")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--spawn-rate", type=float, default=10.0)
    p.add_argument("--duration", type=int, default=None, help="seconds of load (short mode; default 45)")
    p.add_argument("--calibrate", type=int, default=30, help="soak: seconds of unthrottled load to find capacity")
    p.add_argument("--calibrate-users", type=int, default=None, help="soak: users while calibrating (default --users)")
    p.add_argument("--rps", type=float, default=None, help="soak: target tasks/s instead of half the capacity")
    p.add_argument("--rss-interval", type=float, default=None, help="seconds between RSS samples (soak: 10)")
    p.add_argument("--max-rss-drift-mb", type=float, default=None, help="soak: also gate on RSS drift")
    p.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS, help="content chunks per upstream stream")
    p.add_argument("--chunk-delay", type=float, default=0.01, help="seconds between upstream stream chunks")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (a timeout is a failure)")
    p.add_argument("--seed", type=int, default=0, help="payload seed (0: random)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, ledger) even on success")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soak = args.soak is not None
    workdir = Path(tempfile.mkdtemp(prefix="omen-load-"))
    procs = Processes(workdir)
    phases: list[Phase] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):  # let the cleanup below run uninterrupted
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sampler: RssSampler | None = None
    ok = False
    try:
        log(f"work directory {workdir}")
        ports = start_fakes(procs, args)
        omen, port = start_omen(procs, ports)
        log(f"fakes on {ports}, OMEN on 127.0.0.1:{port} (pid {omen.pid})")
        sampler = RssSampler(omen.pid, args.rss_interval or (10.0 if soak else 5.0))
        sampler.sample()
        sampler.start()
        if soak:
            cal = Phase("cal", args.calibrate_users or args.users, args.spawn_rate, args.calibrate)
            sampler.phase = "calibration"
            run_locust(procs, cal, port, args)
            phases.append(cal)
            target = args.rps or cal.rps / 2
            # tasks/s, not requests/s: the disconnect task makes two requests; close enough for a target
            per_user = max(0.05, target / args.users)
            log(f"capacity {cal.rps:.1f} req/s with {cal.users} users -> soak at {target:.1f} tasks/s")
            main_phase = Phase("soak", args.users, args.spawn_rate, int(args.soak * 60), throughput=per_user)
            sampler.phase = "soak"
        else:
            main_phase = Phase("short", args.users, args.spawn_rate, args.duration or 45)
            sampler.phase = "short"
        run_locust(procs, main_phase, port, args)
        phases.append(main_phase)
        sampler.phase = "after"
        sampler.sample()
        time.sleep(0.5)  # the access-log line of a request is written just after its response
        post = post_run_checks(port)
        sampler.stop()
        exit_code = sigterm_omen(procs, omen)
        log(f"OMEN exited with {exit_code}")
        rss = {p: rss_report(sampler, p) for p in ("calibration", "soak", "short")}
        rss_gate = None
        if args.max_rss_drift_mb is not None and rss.get("soak"):
            rss_gate = (args.max_rss_drift_mb, rss["soak"]["drift"])
        gates, info = evaluate(phases, omen.err_path, post, exit_code, rss_gate)
        for phase in phases:
            print(f"\n--- locust summary ({phase.tag}) ---\n{phase.output}", file=sys.stdout)
        print_summary(phases, gates, info, rss)
        ok = all(g.ok for g in gates)
        return 0 if ok else 1
    except SetupError as exc:
        print(f"load/run.py: setup failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"load/run.py: interrupted ({exc or 'SIGINT'}); stopping everything", file=sys.stderr)
        return 130
    finally:
        if sampler is not None:
            sampler.stop()
        procs.stop_all()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs, ledgers and stats kept in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
