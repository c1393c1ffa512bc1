"""Python side of ``bench/streamgen.c``: build it, write its script and request files, run it.

The compiled pair replaces the Python stream probe and the Python paced fake upstream in the
streaming capacity ramp: both are one epoll loop in C, so at thousands of concurrent streams the
gateway, not the harness, is what runs out. The upstream replays exactly the bytes the Python fake
would send (the script is rendered from it), paced by the same delay.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import h11
import orjson
from probes import StreamStats, request_bytes

SOURCE = Path(__file__).with_name("streamgen.c")
REPO = SOURCE.parent.parent


def build(cache_dir: Path) -> Path | None:
    """Compile streamgen.c into ``cache_dir`` (once per source version); None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    binary = cache_dir / f"streamgen-{digest}"
    if not binary.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([cc, "-O2", "-o", str(binary), str(SOURCE)], check=True)
    return binary


def write_script(path: Path, body: bytes, chunks: int) -> int:
    """Render the fake OpenAI upstream's streamed answer to ``body`` into streamgen's script format
    (u32 count, then u32 length + bytes per piece: the head, then one chunked-encoded event each).
    Returns the number of events."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.fakes.upstream import FakeUpstream

    fake = FakeUpstream("openai", chunks=chunks, fast=True, record=False)
    request = h11.Request(
        method="POST",
        target="/v1/chat/completions",
        headers=[("host", "upstream"), ("content-type", "application/json"), ("content-length", str(len(body)))],
    )
    plan = fake._cached_plan(request, body, 1)
    if not plan.stream:
        raise ValueError("the script body must ask for a stream")
    raw = plan.raw()
    head = raw[: raw.index(b"\r\n\r\n") + 4]
    events = [b"%x\r\n%b\r\n" % (len(e), e) for e in plan.chunks if e]
    events[-1] += b"0\r\n\r\n"
    pieces = [head, *events]
    path.write_bytes(struct.pack("<I", len(pieces)) + b"".join(struct.pack("<I", len(p)) + p for p in pieces))
    return len(events)


def upstream_body(model: str = "gpt-4o-mini") -> bytes:
    """What a gateway sends upstream for the ramp's request: streamed, with the usage chunk asked for."""
    return orjson.dumps(
        {
            "model": model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "stream please"}],
        }
    )


def server_command(binary: Path, port: int, script: Path, delay: float) -> list[str]:
    return [str(binary), "server", str(port), str(script), f"{delay * 1e3:g}"]


def stream_probe(
    binary: Path,
    work: Path,
    port: int,
    path: str,
    body: bytes,
    concurrency: int,
    duration: float,
    stagger: float = 0.0,
    headers: list[tuple[str, str]] | None = None,
) -> StreamStats:
    """The compiled twin of probes.stream_probe (same request bytes, same StreamStats)."""
    request_file = work / f"streamgen-request-{port}.http"
    request_file.write_bytes(request_bytes(port, path, body, headers))
    out = subprocess.run(
        [str(binary), "client", str(port), str(request_file), str(concurrency), f"{duration:g}", f"{stagger:g}"],
        check=True,
        capture_output=True,
        timeout=duration + 120,
    ).stdout
    data = orjson.loads(out)
    stats = StreamStats(
        streams=data["streams"], complete=data["complete"], errors=data["errors"], events=data["events"]
    )
    stats.ttfb_ms, stats.headers_ms, stats.gaps_ms = data["ttfb_ms"], data["headers_ms"], data["gaps_ms"]
    stats.error_samples = data["error_samples"]
    return stats
