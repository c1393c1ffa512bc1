"""A/B benchmark of omen.server.hypercorn_fastpath: the same server with the fast path on and off.

    .venv/bin/python bench/hypercorn_ab.py [--rounds 3] [--duration 8] [--targets min,health,chat,sse,h2c]
        [--a 1] [--b 0]   # OMEN_HYPERCORN_FASTPATH of the two servers (e.g. --b all-but-one for leave-one-out)
    .venv/bin/python bench/hypercorn_ab.py serve-min --port P    # the minimal app alone (for py-spy)
    .venv/bin/python bench/hypercorn_ab.py profile-summary FILE  # top frames of a py-spy raw file
    .venv/bin/python bench/hypercorn_ab.py micro-send            # CPU per small send, per variant

Starts two server processes per target, identical except for ``OMEN_HYPERCORN_FASTPATH`` (``1`` = A,
``0`` = B), and measures them alternately (A, B, A, B, ...) so that other load on the machine hits
both alike. Targets:

- ``min``: a minimal ASGI app (``GET /`` -> 459 B JSON) served by ``omen.server.serve.serve``;
- ``health`` / ``chat``: ``omen serve`` with no config (demo model) in an empty temp dir,
  ``GET /health`` and non-streaming ``POST /v1/chat/completions`` (``bench/wrk_chat.lua`` body);
- ``h2c``: the minimal app over h2c (prior knowledge), ``h2load -c4 -m8 -n(1500 x duration)``;
- ``sse``: the minimal app's ``GET /sse?n=2000`` (no sleep between chunks), 32 concurrent HTTP/1.1
  streams read by a raw-socket client; figure = chunks/s over the wall time of all streams.

Throughput figures come from ``wrk -t1 -c32 -dNs`` after a 2 s warm-up. Never used by tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
OMEN = str(ROOT / ".venv" / "bin" / "omen")
WRK_CHAT = str(ROOT / "bench" / "wrk_chat.lua")

_BODY = json.dumps(
    {
        "id": "bench",
        "object": "thing",
        "items": [{"index": i, "name": f"item-{i}", "ok": True} for i in range(8)],
        "note": "a small JSON response of about three hundred bytes",
    }
).encode()


# ---------------------------------------------------------------------------------------------------
# the minimal app server


async def min_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/sse":
        count = int(scope["query_string"].decode().partition("=")[2] or "2000")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for index in range(count):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % index, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _BODY})


def serve_min(port: int) -> None:
    import trio

    from omen.config.schema import ServerConfig
    from omen.server.serve import serve_with_signals

    settings = ServerConfig(bind=f"127.0.0.1:{port}", access_log=False, log_level="warning")
    trio.run(lambda: serve_with_signals(min_app, settings))


# ---------------------------------------------------------------------------------------------------
# driver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


class Server:
    def __init__(self, kind: str, switch: str, label: str, tmp: Path) -> None:
        self.kind = kind
        self.label = label
        self.port = free_port()
        env = {**os.environ, "OMEN_HYPERCORN_FASTPATH": switch}
        if kind == "min":
            command = [PYTHON, __file__, "serve-min", "--port", str(self.port)]
            cwd = str(ROOT)
        else:
            cwd_path = tmp / f"omen-{self.port}"
            cwd_path.mkdir()
            (cwd_path / "omen.toml").write_text(
                f'[server]\nbind = "127.0.0.1:{self.port}"\naccess_log = false\nlog_level = "warning"\n'
            )
            command = [OMEN, "serve", "--config", str(cwd_path / "omen.toml")]
            cwd = str(cwd_path)
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def wrk(port: int, path: str, duration: float, script: str | None = None) -> tuple[float, int]:
    env = {**os.environ, "BENCH_BODY_FILE": _chat_body_file()} if script else None
    command = ["wrk", "-t1", "-c32", f"-d{duration:g}s", "--timeout", "10s"]
    if script:
        command += ["-s", script]
    command.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    total = re.search(r"(\d+) requests in", out)
    if match is None or total is None:
        raise RuntimeError(out)
    if errors:
        print(f"  wrk reported errors: {errors.group(0)}", file=sys.stderr)
    return float(match.group(1)), int(total.group(1))


def _chat_body_file() -> str:
    path = Path(tempfile.gettempdir()) / "omen-hypercorn-ab-chat.json"
    if not path.exists():
        body = {
            "model": "omen-demo",
            "max_tokens": 64,
            "messages": [
                {"role": "system", "content": "You are a terse benchmark assistant. " * 12},
                {"role": "user", "content": "Say something short about load testing. " * 12},
            ],
        }
        path.write_text(json.dumps(body))
    return str(path)


def sse_run(port: int, streams: int = 32, chunks: int = 2000) -> tuple[float, int]:
    """chunks/s for ``streams`` concurrent raw HTTP/1.1 GET /sse?n=chunks, read to the final chunk."""
    import selectors

    request = f"GET /sse?n={chunks} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode()
    selector = selectors.DefaultSelector()
    socks = []
    start = time.perf_counter()
    for _ in range(streams):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, bytearray())
        socks.append(sock)
    open_count = streams
    while open_count:
        for key, _ in selector.select(timeout=30):
            data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
            if data:
                key.data.extend(data[-64:])
                del key.data[:-64]
            if not data or key.data.endswith(b"0\r\n\r\n"):
                selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
                open_count -= 1
    elapsed = time.perf_counter() - start
    return streams * (chunks + 1) / elapsed, streams * (chunks + 1)


def h2load(port: int, requests: int) -> tuple[float, int]:
    """h2c prior knowledge, 4 connections x 8 streams (-n, not -D: see research section 1)."""
    command = ["h2load", "-c4", "-m8", f"-n{requests}", f"http://127.0.0.1:{port}/"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if match is None or done is None or done.group(1) != done.group(2):
        raise RuntimeError(out)
    return float(match.group(1)), int(done.group(1))


def process_cpu(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server: Server, target: str, duration: float) -> tuple[float, int]:
    """(rate, units done): requests, or chunks for ``sse``."""
    if target == "h2c":
        return h2load(server.port, int(1500 * duration))
    if target == "min":
        return wrk(server.port, "/", duration)
    if target == "health":
        return wrk(server.port, "/health", duration)
    if target == "chat":
        return wrk(server.port, "/v1/chat/completions", duration, WRK_CHAT)
    if target == "sse":
        return sse_run(server.port)
    raise ValueError(target)


def warm(server: Server, target: str) -> None:
    if target == "h2c":
        h2load(server.port, 2000)
    elif target == "sse":
        sse_run(server.port, streams=4, chunks=500)
    else:
        measure(server, target, 2)


def check_chat(port: int) -> None:
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            "content-type: application/json",
            "-d",
            '{"model":"omen-demo","messages":[{"role":"user","content":"hi"}]}',
            f"http://127.0.0.1:{port}/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if '"choices"' not in out:
        raise RuntimeError(f"chat sanity request failed: {out[:300]}")


def drive(args: argparse.Namespace) -> None:
    targets = args.targets.split(",")
    rates: dict[str, dict[str, list[float]]] = {}
    cpus: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            kind = "min" if target in ("min", "sse", "h2c") else "omen"
            servers = [Server(kind, args.a, "fastpath", Path(tmp)), Server(kind, args.b, "upstream", Path(tmp))]
            try:
                if target == "chat":
                    for server in servers:
                        check_chat(server.port)
                for server in servers:
                    warm(server, target)
                rates[target] = {"fastpath": [], "upstream": []}
                cpus[target] = {"fastpath": [], "upstream": []}
                for round_index in range(args.rounds):
                    order = servers if round_index % 2 == 0 else servers[::-1]
                    for server in order:
                        cpu_before = process_cpu(server.process.pid)
                        rate, units = measure(server, target, args.duration)
                        cpu_us = (process_cpu(server.process.pid) - cpu_before) * 1e6 / units
                        rates[target][server.label].append(rate)
                        cpus[target][server.label].append(cpu_us)
                        line = f"{target} round {round_index + 1} {server.label}: {rate:,.0f}/s, {cpu_us:,.1f} us"
                        print(line, file=sys.stderr)
            finally:
                for server in servers:
                    server.stop()
    unit = {"sse": "chunks"}
    print("Throughput (server and load generator share the machine):")
    print()
    print("| target | upstream (per round) | fastpath (per round) | fastpath / upstream |")
    print("|---|---|---|---|")
    for target, figures in rates.items():
        print(_row(f"{target} ({unit.get(target, 'req')}/s)", figures["upstream"], figures["fastpath"], "{:,.0f}"))
    print()
    print("Server CPU time per request (per chunk for sse), from /proc/PID/stat; lower is better:")
    print()
    print("| target | upstream us (per round) | fastpath us (per round) | upstream / fastpath |")
    print("|---|---|---|---|")
    for target, figures in cpus.items():
        print(_row(target, figures["fastpath"], figures["upstream"], "{:,.1f}", swap=True))


def _row(name: str, base: list[float], new: list[float], fmt: str, swap: bool = False) -> str:
    """``| name | base (rounds) | new (rounds) | new/base |``; with ``swap`` the columns show new
    first (upstream CPU) and the ratio is still new/base, i.e. upstream CPU / fastpath CPU."""
    ratios = [n / b for b, n in zip(base, new, strict=True)]
    first, second = (new, base) if swap else (base, new)
    first_text = ", ".join(fmt.format(v) for v in first)
    second_text = ", ".join(fmt.format(v) for v in second)
    return (
        f"| {name} | {fmt.format(statistics.mean(first))} ({first_text}) "
        f"| {fmt.format(statistics.mean(second))} ({second_text}) "
        f"| {statistics.mean(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)}) |"
    )


def micro_send(count: int = 20000) -> None:
    """Process CPU per small send, for the send-path variants (the drain task's CPU included)."""
    import trio

    data = b"data: 12345\n\n"

    async def drain(sock: trio.socket.SocketType) -> None:
        while await sock.recv(1 << 20):
            pass

    async def run(kind: str) -> None:
        left, right = trio.socket.socketpair()
        stream, lock = trio.SocketStream(left), trio.Lock()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, right)
            start = time.process_time()
            for _ in range(count):
                if kind == "upstream: lock + shield + send_all":
                    async with lock:
                        with trio.CancelScope(shield=True):
                            await stream.send_all(data)
                elif kind == "acquire_nowait + shield + send_all":
                    await trio.lowlevel.checkpoint_if_cancelled()
                    lock.acquire_nowait()
                    try:
                        with trio.CancelScope(shield=True):
                            await stream.send_all(data)
                    finally:
                        lock.release()
                elif kind == "bare send_all (no shield)":
                    await stream.send_all(data)
                elif kind == "trio socket.send (cancellable wait)":
                    await left.send(data)
                elif kind == "acquire_nowait + os.write + shielded checkpoint":
                    await trio.lowlevel.checkpoint_if_cancelled()
                    lock.acquire_nowait()
                    try:
                        os.write(left.fileno(), data)
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    finally:
                        lock.release()
                else:
                    await trio.lowlevel.cancel_shielded_checkpoint()
            elapsed = time.process_time() - start
            left.close()
        print(f"{elapsed / count * 1e6:6.1f} us  {kind}")

    for kind in (
        "upstream: lock + shield + send_all",
        "acquire_nowait + shield + send_all",
        "bare send_all (no shield)",
        "trio socket.send (cancellable wait)",
        "acquire_nowait + os.write + shielded checkpoint",
        "cancel_shielded_checkpoint alone",
    ):
        trio.run(run, kind)


def summarize(path: str, top: int) -> None:
    """Top inclusive frames (function, file) of a ``py-spy record -f raw`` file, % of all samples."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        seen = {re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")}
        for frame in seen:
            inclusive[frame] = inclusive.get(frame, 0) + count
    print(f"{total} samples")
    for frame, count in sorted(inclusive.items(), key=lambda item: -item[1])[:top]:
        print(f"{100 * count / total:5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    serve_parser = sub.add_parser("serve-min")
    serve_parser.add_argument("--port", type=int, required=True)
    sub.add_parser("micro-send")
    summary_parser = sub.add_parser("profile-summary")
    summary_parser.add_argument("file")
    summary_parser.add_argument("--top", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--targets", default="min,health,chat,sse,h2c")
    parser.add_argument("--a", default="1", help="OMEN_HYPERCORN_FASTPATH of the 'fastpath' server (default 1)")
    parser.add_argument("--b", default="0", help="OMEN_HYPERCORN_FASTPATH of the 'upstream' server (default 0)")
    args = parser.parse_args()
    if args.command == "serve-min":
        serve_min(args.port)
    elif args.command == "micro-send":
        micro_send()
    elif args.command == "profile-summary":
        summarize(args.file, args.top)
    else:
        drive(args)


if __name__ == "__main__":
    main()
