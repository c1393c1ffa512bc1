"""Client-side probes for bench/run.py, built on raw sockets + h11 so the client adds as little as
possible (and the same amount) to every target:

- ``H11Client``: one blocking keep-alive HTTP/1.1 connection (health checks, sanity requests and the
  sequential concurrency-1 latency probe, which interleaves targets request by request).
- ``stream_probe``: N concurrent SSE streams under trio, each worker reusing one keep-alive
  connection and recording when every ``data:`` event arrives (time to first event, gaps).
"""

from __future__ import annotations

import itertools
import socket
import time
from dataclasses import dataclass, field

import h11
import trio

HOST = "127.0.0.1"


class ProbeError(Exception):
    pass


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _request_headers(port: int, body: bytes | None, extra: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    headers = [("Host", f"{HOST}:{port}"), ("Authorization", "Bearer bench")]
    if body is not None:
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    return headers + (extra or [])


class H11Client:
    """A blocking keep-alive HTTP/1.1 client on one socket; reconnects when the server closes."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.conn = h11.Connection(h11.CLIENT)
        self.reconnects = 0

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.conn = h11.Connection(h11.CLIENT)
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, method: str, target: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send one request and read the whole response. Retries once on a connection the server had
        already closed (keep-alive limit / idle timeout)."""
        for attempt in (0, 1):
            fresh = self.sock is None
            sock = self.sock or self._connect()
            try:
                return self._exchange(sock, method, target, body)
            except (OSError, h11.ProtocolError, ProbeError):
                self.close()
                self.reconnects += 1
                if fresh or attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def _exchange(self, sock: socket.socket, method: str, target: str, body: bytes | None) -> tuple[int, bytes]:
        conn = self.conn
        out = conn.send(h11.Request(method=method, target=target, headers=_request_headers(self.port, body, None)))
        if body:
            out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        sock.sendall(out)
        status = 0
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                if not data:
                    raise ProbeError("server closed the connection mid-response")
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ProbeError("server closed the connection")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:  # "Connection: close" from the server
            self.close()
        return status, b"".join(chunks)


@dataclass
class SeqTarget:
    name: str
    port: int
    path: str
    body: bytes
    samples_ms: list[float] = field(default_factory=list)
    errors: int = 0
    client: H11Client | None = None


def sequential_latency(targets: list[SeqTarget], duration: float, warmup: int = 50) -> None:
    """Concurrency 1: one request at a time, rotating over the targets request by request so that
    every target sees the same background noise. Fills ``samples_ms`` and ``errors``."""
    for target in targets:
        target.client = H11Client(target.port)
        for _ in range(warmup):
            target.client.request("POST", target.path, target.body)
    deadline = time.perf_counter() + duration
    try:
        while time.perf_counter() < deadline:
            for target in targets:
                assert target.client is not None
                t0 = time.perf_counter_ns()
                try:
                    status, _ = target.client.request("POST", target.path, target.body)
                except (OSError, h11.ProtocolError, ProbeError):
                    target.errors += 1
                    continue
                elapsed = (time.perf_counter_ns() - t0) / 1e6
                if status == 200:
                    target.samples_ms.append(elapsed)
                else:
                    target.errors += 1
    finally:
        for target in targets:
            if target.client is not None:
                target.client.close()


@dataclass
class StreamStats:
    streams: int = 0
    complete: int = 0  # ended with data: [DONE] and a 200
    errors: int = 0  # non-200, connection failures, protocol errors
    events: int = 0
    ttfb_ms: list[float] = field(default_factory=list)  # request sent -> first data: event
    headers_ms: list[float] = field(default_factory=list)  # request sent -> response head
    gaps_ms: list[float] = field(default_factory=list)  # between consecutive data: events ([DONE] excluded)
    error_samples: list[str] = field(default_factory=list)

    def note_error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)


async def _one_stream(
    stream: trio.SocketStream, conn: h11.Connection, port: int, path: str, body: bytes, stats: StreamStats
) -> bool:
    """Run one SSE exchange on an open connection; returns whether the connection can be reused."""
    request = conn.send(
        h11.Request(method="POST", target=path, headers=_request_headers(port, body, [("Accept", "text/event-stream")]))
    )
    t0 = time.perf_counter()
    await stream.send_all(request + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
    status = 0
    buf = b""
    times: list[float] = []
    done = False
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data:
                raise ProbeError("server closed the connection mid-stream")
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            stats.headers_ms.append((time.perf_counter() - t0) * 1e3)
        elif isinstance(event, h11.Data):
            now = time.perf_counter()
            buf += bytes(event.data)
            if b"\r" in buf:
                buf = buf.replace(b"\r\n", b"\n")
            while b"\n\n" in buf:
                raw, buf = buf.split(b"\n\n", 1)
                payload = [line[5:].strip() for line in raw.split(b"\n") if line.startswith(b"data:")]
                if not payload:
                    continue
                if payload[-1] == b"[DONE]":
                    done = True
                    continue
                times.append(now)
        elif isinstance(event, h11.EndOfMessage):
            break
        elif isinstance(event, h11.ConnectionClosed):
            raise ProbeError("server closed the connection")
    stats.streams += 1
    if status != 200:
        stats.note_error(f"HTTP {status}")
    elif times:
        stats.events += len(times)
        stats.ttfb_ms.append((times[0] - t0) * 1e3)
        stats.gaps_ms.extend((b - a) * 1e3 for a, b in itertools.pairwise(times))
        if done:
            stats.complete += 1
    else:
        stats.note_error("stream without data events")
    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
        conn.start_next_cycle()
        return True
    return False


async def _stream_worker(
    port: int, path: str, body: bytes, deadline: float, stats: StreamStats, start_delay: float
) -> None:
    stream: trio.SocketStream | None = None
    conn = h11.Connection(h11.CLIENT)
    await trio.sleep(start_delay)
    try:
        while time.perf_counter() < deadline:
            if stream is None:
                try:
                    stream = await trio.open_tcp_stream(HOST, port)
                except OSError as exc:
                    stats.note_error(f"connect: {exc}")
                    await trio.sleep(0.05)
                    continue
                conn = h11.Connection(h11.CLIENT)
            try:
                reusable = await _one_stream(stream, conn, port, path, body, stats)
            except (OSError, trio.BrokenResourceError, h11.ProtocolError, ProbeError) as exc:
                stats.streams += 1
                stats.note_error(f"{type(exc).__name__}: {exc}")
                reusable = False
            if not reusable:
                await stream.aclose()
                stream = None
    finally:
        if stream is not None:
            await stream.aclose()


async def _stream_probe(
    port: int, path: str, body: bytes, concurrency: int, duration: float, stagger: float
) -> StreamStats:
    stats = StreamStats()
    deadline = time.perf_counter() + duration
    # Streams started before the deadline run to their end; the hard cap keeps a hung server bounded.
    with trio.move_on_after(duration + 60) as scope:
        async with trio.open_nursery() as nursery:
            for i in range(concurrency):
                delay = stagger * i / concurrency
                nursery.start_soon(_stream_worker, port, path, body, deadline, stats, delay)
    if scope.cancelled_caught:
        stats.note_error("probe hit its hard time limit (streams hung)")
    return stats


def stream_probe(
    port: int, path: str, body: bytes, concurrency: int, duration: float, stagger: float = 0.0
) -> StreamStats:
    """``concurrency`` workers each open SSE streams back to back for ``duration`` seconds. Worker
    starts are spread evenly over ``stagger`` seconds (about one stream's length) so streams begin at
    a steady rate instead of in synchronised waves of ``concurrency``."""
    return trio.run(_stream_probe, port, path, body, concurrency, duration, stagger)
