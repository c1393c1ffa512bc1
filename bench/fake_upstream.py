"""Run a fake upstream provider standalone, for benchmarks and manual poking.

    python bench/fake_upstream.py --kind openai --port 9100 [--chunks N --chunk-delay S] [--workers W]

Fast mode (cached responses, one write per response when unpaced) is on unless ``--no-fast``, so a
benchmark measures the gateway rather than the fake. Stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.common import KINDS
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
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


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
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(up.serve, args.host, args.port, reuse_port=args.reuse_port))
            print(f"fake {args.kind} upstream listening on {up.base_url} (OpenAI base {up.openai_base})", flush=True)
            async for signum in signals:
                print(f"got {signal.Signals(signum).name}; served {up.request_count} requests", flush=True)
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
