"""What routing costs per request: OMEN's CPU time per non-streaming chat completion with a fixed
single-deployment route vs the full routing pipeline, side by side in one run, plus the router's
decision alone.

Two OMEN servers run in this process on the same trio loop, against one fake OpenAI upstream in its own
process (fast mode, so the fake costs little and is not counted):

- ``fixed``: ``[models.bench-model] provider/model``, no ``[routing]`` section (the fast path: a plan
  built at startup);
- ``full``: ``model = "auto"`` -> intent classification -> ``[routing.auto]`` -> a 3-deployment group
  with the ``score`` strategy, behind 2 policy rules (a deny that does not match and a rewrite that
  caps ``max_tokens``, so the body is re-encoded for the upstream).

A blocking client in a worker thread sends sequential keep-alive requests; CPU is the trio thread's
own (``time.thread_time``), so the client's work is not counted. Blocks of each configuration
alternate, and the median block is reported, so load from elsewhere on the machine moves both alike.

    .venv/bin/python bench/routing_overhead.py [--requests 1000 --rounds 7]
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from omen._fast import backend  # noqa: E402
from omen.api.chat import ChatCompletionRequest  # noqa: E402
from omen.config.loader import load_config  # noqa: E402
from omen.pipeline.gateway import Gateway  # noqa: E402
from omen.routing.router import Router  # noqa: E402
from omen.server.access_log import AccessLog  # noqa: E402
from omen.server.app import OmenApp  # noqa: E402
from omen.server.serve import serve  # noqa: E402

FIXED_BODY = b'{"model":"bench-model","max_tokens":64,"messages":[{"role":"user","content":"hello there"}]}'
FULL_BODY = (
    b'{"model":"auto","max_tokens":4096,"messages":[{"role":"user","content":'
    b'"Write a Python function that parses an ISO date and returns the weekday."}]}'
)


def configs(upstream_port: int) -> dict[str, str]:
    base = f"http://127.0.0.1:{upstream_port}/v1"
    server = '[server]\nbind = "127.0.0.1:0"\naccess_log = false\n'
    fixed = server + (
        f'[providers.openai]\napi_key = "sk-bench"\nbase_url = "{base}"\n'
        '[models.bench-model]\nprovider = "openai"\nmodel = "gpt-4o-mini"\n'
    )
    provider = f'\ntype = "openai"\napi_key = "sk-bench"\nbase_url = "{base}"\n'
    providers = "".join(f"[providers.p{i}]{provider}" for i in range(3))
    full = (
        server
        + providers
        + "[models.smart]\n"
        + 'strategy = "score"\n'
        + "deployments = ["
        + ", ".join(f'{{ provider = "p{i}", model = "gpt-4o-mini" }}' for i in range(3))
        + "]\n"
        + '[routing.auto]\ncode = "smart"\ndefault = "smart"\n'
        + '[[routing.policies]]\nname = "no-interns"\nteams = ["interns"]\naction = "deny"\n'
        + '[[routing.policies]]\nname = "cap"\nmodels = ["auto"]\naction = "rewrite"\ncap = { max_tokens = 1024 }\n'
    )
    return {"fixed": fixed, "full": full}


def drive(port: int, body: bytes, requests: int, warmup: int = 0) -> None:
    """Blocking keep-alive client (runs in a worker thread, so its CPU is not OMEN's)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: omen\r\ncontent-type: application/json\r\n"
    request = head + b"content-length: %d\r\n\r\n%s" % (len(body), body)
    for _ in range(warmup + requests):
        sock.sendall(request)
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += sock.recv(65536)
        if not data.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"unexpected answer: {data[:300]!r}")
        length = int(data.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        while len(data) < end + 4 + length:
            data += sock.recv(65536)
    sock.close()


def decisions(router: Router, model: str, body: bytes, count: int) -> float:
    """Microseconds per ``Router.plan`` on an already decoded request (each call gets its own: a policy
    rewrite changes the struct)."""
    requests = [msgspec.json.decode(body, type=ChatCompletionRequest) for _ in range(count)]
    started = time.perf_counter()
    for request in requests:
        router.plan(model, request, [], None)
    return (time.perf_counter() - started) / count * 1e6


async def main(requests: int, rounds: int, upstream_port: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="omen-routing-"))
    apps: dict[str, tuple[OmenApp, Any]] = {}
    for name, text in configs(upstream_port).items():
        path = work / f"{name}.toml"
        path.write_text(text)
        loaded = load_config(str(path), env={})
        apps[name] = (OmenApp(Gateway.from_config(loaded.config, access_log=AccessLog(False))), loaded.config)
    bodies = {"fixed": FIXED_BODY, "full": FULL_BODY}
    samples: dict[str, list[float]] = {"fixed": [], "full": []}
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ports = {}
        for name, (app, config) in apps.items():
            listening = await nursery.start(partial(serve, app, config.server, shutdown_trigger=stop.wait))
            ports[name] = listening.port
        for name in apps:
            await trio.to_thread.run_sync(drive, ports[name], bodies[name], 0, 300)
        for r in range(rounds):
            order = ["fixed", "full"] if r % 2 == 0 else ["full", "fixed"]
            for name in order:
                cpu = time.thread_time()
                await trio.to_thread.run_sync(drive, ports[name], bodies[name], requests)
                samples[name].append((time.thread_time() - cpu) / requests * 1e6)
        stop.set()
    routers = {
        name: Router(app.gateway.config, app.gateway.table, app.gateway.deployments, app.gateway.providers,
                     rng=random.Random(1))
        for name, (app, _) in apps.items()
    }  # fmt: skip
    plan_us = {
        "fixed": decisions(routers["fixed"], "bench-model", FIXED_BODY, 20_000),
        "full": decisions(routers["full"], "auto", FULL_BODY, 5_000),
    }
    return {"samples": samples, "plan_us": plan_us}


def report(result: dict[str, Any], requests: int, rounds: int) -> str:
    samples = result["samples"]
    fixed = statistics.median(samples["fixed"])
    full = statistics.median(samples["full"])
    lines = [
        f"CPU per request (OMEN's trio thread, median of {rounds} blocks of {requests} sequential requests; "
        f"scoring: {backend('scoring')}, intent: {backend('intent')}):",
        f"  fixed route (single deployment): {fixed:8.1f} us   blocks: "
        + " ".join(f"{v:.0f}" for v in samples["fixed"]),
        f"  full routing pipeline:           {full:8.1f} us   blocks: " + " ".join(f"{v:.0f}" for v in samples["full"]),
        f"  overhead of the full pipeline:   {full - fixed:+8.1f} us ({(full / fixed - 1) * 100:+.1f} %)",
        "Router.plan alone (request already decoded):",
        f"  fixed route: {result['plan_us']['fixed']:.2f} us/decision ({1e6 / result['plan_us']['fixed']:,.0f}/s)",
        f"  full:        {result['plan_us']['full']:.2f} us/decision ({1e6 / result['plan_us']['full']:,.0f}/s)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = subprocess.Popen(
        [sys.executable, str(ROOT / "bench/fake_upstream.py"), "--kind", "openai", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.5)
        result = trio.run(main, args.requests, args.rounds, port)
        print(report(result, args.requests, args.rounds))
    finally:
        fake.terminate()
        fake.wait()
