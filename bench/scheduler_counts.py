"""Scheduler work per proxied request, counted rather than timed: trio run-loop passes (one epoll_wait
each), tasks spawned and task steps per non-streaming chat completion through OMEN at concurrency 1.

These counts do not move with other load on the machine (unlike CPU time on a shared 2-core box), so
they show what a change to the request path saves in scheduling. The fake upstream runs in its own
process so only OMEN's scheduler is counted.

    .venv/bin/python bench/scheduler_counts.py [--requests 2000]
    OMEN_HYPERCORN_FASTPATH=0 .venv/bin/python bench/scheduler_counts.py   # the same without the fast path
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from omen.config.loader import load_config  # noqa: E402
from omen.pipeline.gateway import Gateway  # noqa: E402
from omen.server.access_log import AccessLog  # noqa: E402
from omen.server.app import OmenApp  # noqa: E402
from omen.server.serve import serve  # noqa: E402

BODY = b'{"model":"bench-model","max_tokens":64,"messages":[{"role":"user","content":"hello there"}]}'


class Counts(trio.abc.Instrument):
    def __init__(self) -> None:
        self.passes = self.spawned = self.steps = 0

    def before_io_wait(self, timeout: float) -> None:
        self.passes += 1

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += 1

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


def drive_streams(port: int, counts: Counts, requests: int) -> tuple[float, float, float]:
    """Sequential streamed requests; returns the counts per relayed SSE event."""
    body = BODY[:-1] + b',"stream":true}'
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: omen\r\ncontent-type: application/json\r\n"
    request = head + b"content-length: %d\r\n\r\n%s" % (len(body), body)
    events = 0

    def one() -> int:
        sock.sendall(request)
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            data += sock.recv(65536)
        return data.count(b"data: ")

    for _ in range(20):
        one()
    start = (counts.passes, counts.spawned, counts.steps)
    for _ in range(requests):
        events += one()
    sock.close()
    end = (counts.passes, counts.spawned, counts.steps)
    return tuple((now - before) / events for now, before in zip(end, start, strict=True))  # type: ignore[return-value]


def drive(port: int, counts: Counts, requests: int) -> tuple[float, float, float]:
    """Blocking client in a thread: warm up, then count over ``requests`` sequential requests."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: omen\r\ncontent-type: application/json\r\n"
    request = head + b"content-length: %d\r\n\r\n%s" % (len(BODY), BODY)

    def one() -> None:
        sock.sendall(request)
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += sock.recv(65536)
        if not data.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"unexpected answer: {data[:200]!r}")
        length = int(data.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        while len(data) < end + 4 + length:
            data += sock.recv(65536)

    for _ in range(200):
        one()
    start = (counts.passes, counts.spawned, counts.steps)
    for _ in range(requests):
        one()
    sock.close()
    end = (counts.passes, counts.spawned, counts.steps)
    return tuple((now - before) / requests for now, before in zip(end, start, strict=True))  # type: ignore[return-value]


async def main(requests: int, upstream_port: int, stream: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="omen-sched-"))
    config = work / "omen.toml"
    config.write_text(
        '[server]\nbind = "127.0.0.1:0"\naccess_log = false\n'
        f'[providers.openai]\napi_key = "sk-bench"\nbase_url = "http://127.0.0.1:{upstream_port}/v1"\n'
        '[models.bench-model]\nprovider = "openai"\nmodel = "gpt-4o-mini"\n'
    )
    loaded = load_config(str(config), env={})
    app = OmenApp(Gateway.from_config(loaded.config, access_log=AccessLog(False)))
    counts = Counts()
    trio.lowlevel.add_instrument(counts)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(partial(serve, app, loaded.config.server, shutdown_trigger=stop.wait))
        if stream:
            passes, spawned, steps = await trio.to_thread.run_sync(drive_streams, listening.port, counts, requests)
            print(f"per relayed SSE event ({requests} sequential streams, events 1 ms apart): scheduler passes "
                  f"{passes:.2f}, tasks spawned {spawned:.3f}, task steps {steps:.2f}")  # fmt: skip
        else:
            passes, spawned, steps = await trio.to_thread.run_sync(drive, listening.port, counts, requests)
            print(f"per request ({requests} sequential): scheduler passes {passes:.2f}, tasks spawned {spawned:.2f}, "
                  f"task steps {steps:.2f}")  # fmt: skip
        stop.set()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--stream", action="store_true", help="count per relayed SSE event (compiled paced upstream)")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if args.stream:
        import streamgen

        binary = streamgen.build(Path.home() / ".cache/omen-bench/streamgen")
        if binary is None:
            raise SystemExit("--stream needs a C compiler (bench/streamgen.c)")
        script = Path(tempfile.mkdtemp(prefix="omen-sched-")) / "stream.script"
        streamgen.write_script(script, streamgen.upstream_body(), 20)
        command = streamgen.server_command(binary, port, script, 0.001)
        args.requests = min(args.requests, 300)
    else:
        command = [sys.executable, str(ROOT / "bench/fake_upstream.py"), "--kind", "openai", "--port", str(port)]
    fake = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        trio.run(main, args.requests, port, args.stream)
    finally:
        fake.terminate()
        fake.wait()
