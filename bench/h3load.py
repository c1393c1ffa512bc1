"""A small HTTP/3 load generator for bench/run.py (aioquic, via tests/clients/h3.py's ``H3Client``).

    python bench/h3load.py https://127.0.0.1:PORT/v1/chat/completions --body FILE -c 4 -m 8 -D 8

Opens ``-c`` QUIC connections and keeps ``-m`` requests in flight on each for ``-D`` seconds (after
``--warm-up`` seconds that are not counted), then prints one JSON line: requests, errors, req/s, latency
percentiles and this process's own CPU seconds. There is no h2load for HTTP/3 on Debian, and aioquic is
pure Python: the client is often the bottleneck, which the CPU figure shows (about 1.0 = one full core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.clients.h3 import H3Client, H3Error


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def run(args: argparse.Namespace, body: bytes) -> dict[str, object]:
    headers = [("content-type", "application/json"), ("authorization", f"Bearer {args.api_key}")]
    path = "/" + args.url.split("/", 3)[3]
    latencies: list[float] = []
    errors: list[str] = []
    counted = 0
    start = time.perf_counter()
    measure_from = start + args.warm_up
    deadline = measure_from + args.duration

    async def worker(client: H3Client) -> None:
        nonlocal counted
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                response = await asyncio.wait_for(
                    client.request(path, method="POST", headers=headers, body=body), args.timeout
                )
                ok = response.status == 200 and b'"choices"' in response.body
                what = f"HTTP {response.status}"
            except (H3Error, TimeoutError, OSError) as exc:
                ok, what = False, f"{type(exc).__name__}: {exc}"
            t1 = time.perf_counter()
            if t0 < measure_from or t1 > deadline:
                continue
            if ok:
                counted += 1
                latencies.append((t1 - t0) * 1e3)
            else:
                errors.append(what)

    async def connection() -> None:
        async with H3Client(args.url, verify=False) as client:
            await asyncio.gather(*(worker(client) for _ in range(args.streams)))

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(connection() for _ in range(args.connections)))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    wall = time.perf_counter() - start
    return {
        "requests": counted,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "seconds": args.duration,
        "rps": counted / args.duration,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": sum(latencies) / len(latencies) if latencies else float("nan"),
        "client_cpu_s": cpu,
        "client_busy": cpu / wall if wall else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="https://127.0.0.1:PORT/path")
    p.add_argument("--body", type=Path, required=True, help="file with the POST body")
    p.add_argument("-c", "--connections", type=int, default=4)
    p.add_argument("-m", "--streams", type=int, default=8, help="requests in flight per connection")
    p.add_argument("-D", "--duration", type=float, default=8.0)
    p.add_argument("--warm-up", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=20.0, help="per request")
    p.add_argument("--api-key", default="bench")
    args = p.parse_args(argv)
    result = asyncio.run(run(args, args.body.read_bytes()))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
