"""Run a fake upstream provider standalone, for benchmarks and manual poking.

    python bench/fake_upstream.py --kind openai --port 9100 [--chunks N --chunk-delay S] [--workers W] [--lean]

Fast mode (cached responses, one write per response when unpaced) is on unless ``--no-fast``, so a
benchmark measures the gateway rather than the fake. ``--lean`` also serves *paced* streams cheaply
(see ``LeanServer``): the same response bytes, without the fake's fault/recording machinery. Stops
cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import h11
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.common import KINDS, Plan
from tests.fakes.upstream import FakeUpstream


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=KINDS, default="openai")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--chunks", type=int, default=None, help="content chunks per streamed reply")
    p.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream chunks")
    p.add_argument("--api-key", default=None, help="require this key (Bearer; Azure: api-key header)")
    p.add_argument("--models", default=None, help="comma-separated model list")
    p.add_argument("--reply", default=None, help="fixed reply text instead of 'Echo: <prompt>'")
    p.add_argument("--no-fast", action="store_true", help="build every response afresh and record requests")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--lean", action="store_true", help="cheap paced streams (no faults, no recording)")
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


class LeanServer:
    """Serves a FakeUpstream's responses with as little CPU per event as trio allows.

    The fake paces a stream through its general path (h11 framing per event and a watcher task per
    stream for fault injection), about 150 us of CPU per event: at 1000 concurrent streams that alone
    is a core, so a streaming capacity ramp would measure the fake. This server asks the fake for the
    same cached response (``_cached_plan``: identical status, headers and SSE events), then writes the
    chunked framing itself, one ``send_all`` per event, sleeping ``chunk_delay`` between events like
    the fake does. Unpaced responses are the fake's fast path (``Plan.raw()``, one write).
    """

    def __init__(self, fake: FakeUpstream, chunk_delay: float) -> None:
        self.fake = fake
        self.delay = chunk_delay
        self.framed: dict[int, tuple[bytes, list[bytes]]] = {}
        self.request_count = 0

    def _framing(self, plan: Plan) -> tuple[bytes, list[bytes]]:
        cached = self.framed.get(id(plan))
        if cached is None:
            raw = plan.raw()
            head = raw[: raw.index(b"\r\n\r\n") + 4]  # status line, headers, transfer-encoding: chunked
            events = [b"%x\r\n%b\r\n" % (len(e), e) for e in plan.chunks if e]
            if events:
                events[-1] += b"0\r\n\r\n"
            else:
                head += b"0\r\n\r\n"
            cached = self.framed[id(plan)] = (head, events)
        return cached

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                incoming = await FakeUpstream._read_request(stream, conn)
                if incoming is None:
                    break
                request, body = incoming
                self.request_count += 1
                plan = self.fake._cached_plan(request, body, self.request_count)
                if plan.stream and self.delay > 0 and plan.chunks:
                    head, events = self._framing(plan)
                    await stream.send_all(head + events[0])
                    for event in events[1:]:
                        await trio.sleep(self.delay)
                        await stream.send_all(event)
                else:
                    await stream.send_all(plan.raw())
                if any(n == b"connection" and b"close" in v.lower() for n, v in request.headers):
                    break
                leftover, eof = conn.trailing_data
                conn = h11.Connection(h11.SERVER)
                if leftover:
                    conn.receive_data(leftover)
                if eof:
                    conn.receive_data(b"")
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def serve(self, host: str, port: int, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=4096)
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self.handle, listeners)


async def run(args: argparse.Namespace) -> None:
    options = {
        "api_key": args.api_key,
        "chunks": args.chunks,
        "chunk_delay": args.chunk_delay,
        "reply": args.reply,
        "fast": not args.no_fast,
        "record": False,
    }
    if args.models:
        options["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    up = FakeUpstream(args.kind, **options)
    lean = LeanServer(up, args.chunk_delay) if args.lean else None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            if lean is not None:
                if args.reuse_port:
                    raise SystemExit("--lean does not combine with --workers")
                port = await nursery.start(lean.serve, args.host, args.port)
                print(f"fake {args.kind} upstream (lean) listening on http://{args.host}:{port}", flush=True)
            else:
                await nursery.start(partial(up.serve, args.host, args.port, reuse_port=args.reuse_port))
                print(f"fake {args.kind} upstream listening on {up.base_url} (OpenAI base {up.openai_base})",
                      flush=True)  # fmt: skip
            async for signum in signals:
                served = lean.request_count if lean is not None else up.request_count
                print(f"got {signal.Signals(signum).name}; served {served} requests", flush=True)
                nursery.cancel_scope.cancel()
                break


def supervise(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``--workers`` copies of this script on one port; one Python process tops out at ~1 core."""
    if args.port == 0:
        raise SystemExit("--workers needs a fixed --port")
    # argparse keeps the last occurrence, so appending overrides --workers for the children.
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--workers", "1", "--reuse-port"]
    # Own sessions: a terminal Ctrl-C reaches only this supervisor, which forwards it exactly once.
    children = [subprocess.Popen(cmd, start_new_session=True) for _ in range(args.workers)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return max(child.wait() for child in children)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.workers > 1:
        raise SystemExit(supervise(args, argv))
    trio.run(run, args)


if __name__ == "__main__":
    main()
