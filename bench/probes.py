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
API_KEY = "bench"  # sent as "Authorization: Bearer <API_KEY>" to every target (run.py sets LiteLLM's master key)


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
    headers = [("Host", f"{HOST}:{port}"), ("Authorization", f"Bearer {API_KEY}")]
    if body is not None:
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    return headers + (extra or [])


class H11Client:
    """A blocking keep-alive HTTP/1.1 client on one socket; reconnects when the server closes."""

    def __init__(self, port: int, timeout: float = 10.0, headers: list[tuple[str, str]] | None = None) -> None:
        self.port = port
        self.timeout = timeout
        self.headers = headers or []  # extra headers sent with every request
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
        headers = _request_headers(self.port, body, self.headers)
        out = conn.send(h11.Request(method=method, target=target, headers=headers))
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
    headers: list[tuple[str, str]] = field(default_factory=list)
    samples_ms: list[float] = field(default_factory=list)
    errors: int = 0
    client: H11Client | None = None


def sequential_latency(targets: list[SeqTarget], duration: float, warmup: int = 50) -> None:
    """Concurrency 1: one request at a time, rotating over the targets request by request so that
    every target sees the same background noise. Fills ``samples_ms`` and ``errors``."""
    for target in targets:
        target.client = H11Client(target.port, headers=target.headers)
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


class ChunkedDecoder:
    """Incremental HTTP/1.1 ``Transfer-Encoding: chunked`` decoder (no trailers expected)."""

    def __init__(self) -> None:
        self.buf = b""
        self.left = 0  # payload bytes left in the current chunk
        self.crlf = False  # the CRLF after a chunk's payload is still to skip
        self.finished = False
        self.leftover = b""  # bytes after the last chunk (the next response, if pipelined)

    def feed(self, data: bytes) -> bytes:
        buf = self.buf + data if self.buf else data
        out: list[bytes] = []
        while buf:
            if self.left:
                take = buf[: self.left]
                out.append(take)
                self.left -= len(take)
                buf = buf[len(take) :]
                if not self.left:
                    self.crlf = True
                continue
            if self.crlf:
                if len(buf) < 2:
                    break
                buf = buf[2:]
                self.crlf = False
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                break
            size = int(buf[:end].split(b";", 1)[0], 16)
            if size == 0:
                tail = buf.find(b"\r\n", end + 2)  # the empty line ending the (empty) trailer section
                if tail < 0:
                    break
                self.finished = True
                self.leftover = buf[tail + 2 :]
                buf = b""
                break
            self.left = size
            buf = buf[end + 2 :]
        self.buf = buf
        return b"".join(out)


@dataclass
class Head:
    status: int
    chunked: bool
    length: int | None  # Content-Length, if any
    close: bool  # the server will close the connection after this response


def parse_head(raw: bytes) -> Head:
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ProbeError(f"bad status line {lines[0][:80]!r}")
    chunked, length, close = False, None, parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = b"close" in value
    return Head(int(parts[1]), chunked, length, close)


def request_bytes(port: int, path: str, body: bytes, extra: list[tuple[str, str]] | None) -> bytes:
    headers = _request_headers(port, body, [("Accept", "text/event-stream"), *(extra or [])])
    lines = [f"POST {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _one_stream(stream: trio.SocketStream, request: bytes, stats: StreamStats, pending: bytes) -> bytes | None:
    """Run one SSE exchange on an open connection (raw bytes, no h11: at a thousand concurrent streams
    the client's own CPU per event matters). Returns the bytes read past the response when the
    connection can be reused, None when it cannot."""
    t0 = time.perf_counter()
    await stream.send_all(request)
    buf = pending
    while (end := buf.find(b"\r\n\r\n")) < 0:
        data = await stream.receive_some(65536)
        if not data:
            raise ProbeError("server closed the connection before the response head")
        buf += data
    head = parse_head(buf[:end])
    now = time.perf_counter()
    stats.headers_ms.append((now - t0) * 1e3)
    rest = buf[end + 4 :]
    decoder = ChunkedDecoder() if head.chunked else None
    remaining = head.length
    events = b""
    times: list[float] = []
    done = False
    leftover = b""
    while True:
        if rest:
            if decoder is not None:
                payload = decoder.feed(rest)
            elif remaining is not None:
                payload, leftover = rest[:remaining], rest[remaining:]
                remaining -= len(payload)
            else:
                payload = rest
            events = events + payload if events else payload
            if b"\r" in events:
                events = events.replace(b"\r\n", b"\n")
            while (sep := events.find(b"\n\n")) >= 0:
                raw, events = events[:sep], events[sep + 2 :]
                for line in raw.split(b"\n"):
                    if line.startswith(b"data:"):
                        if line[5:].strip() == b"[DONE]":
                            done = True
                        else:
                            times.append(now)
                        break
        if decoder is not None and decoder.finished:
            leftover = decoder.leftover
            break
        if remaining is not None and remaining <= 0:
            break
        rest = await stream.receive_some(65536)
        now = time.perf_counter()
        if not rest:
            if decoder is None and remaining is None:  # body delimited by the connection closing
                head.close = True
                break
            raise ProbeError("server closed the connection mid-stream")
    stats.streams += 1
    if head.status != 200:
        stats.note_error(f"HTTP {head.status}")
    elif times:
        stats.events += len(times)
        stats.ttfb_ms.append((times[0] - t0) * 1e3)
        stats.gaps_ms.extend((b - a) * 1e3 for a, b in itertools.pairwise(times))
        if done:
            stats.complete += 1
        else:
            stats.note_error("stream ended without data: [DONE]")
    else:
        stats.note_error("stream without data events")
    return None if head.close else leftover


async def _stream_worker(port: int, request: bytes, deadline: float, stats: StreamStats, start_delay: float) -> None:
    stream: trio.SocketStream | None = None
    pending = b""
    await trio.sleep(start_delay)
    try:
        while time.perf_counter() < deadline:
            if stream is None:
                try:
                    stream = await trio.open_tcp_stream(HOST, port)
                    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError as exc:
                    stats.note_error(f"connect: {exc}")
                    await trio.sleep(0.05)
                    continue
                pending = b""
            try:
                after = await _one_stream(stream, request, stats, pending)
            except (OSError, trio.BrokenResourceError, ProbeError, ValueError) as exc:
                stats.streams += 1
                stats.note_error(f"{type(exc).__name__}: {exc}")
                after = None
            if after is None:
                await stream.aclose()
                stream = None
            else:
                pending = after
    finally:
        if stream is not None:
            await stream.aclose()


async def _stream_probe(
    port: int,
    path: str,
    body: bytes,
    concurrency: int,
    duration: float,
    stagger: float,
    headers: list[tuple[str, str]] | None,
) -> StreamStats:
    stats = StreamStats()
    request = request_bytes(port, path, body, headers)
    deadline = time.perf_counter() + duration
    # Streams started before the deadline run to their end; the hard cap keeps a hung server bounded.
    with trio.move_on_after(duration + 60) as scope:
        async with trio.open_nursery() as nursery:
            for i in range(concurrency):
                delay = stagger * i / concurrency
                nursery.start_soon(_stream_worker, port, request, deadline, stats, delay)
    if scope.cancelled_caught:
        stats.note_error("probe hit its hard time limit (streams hung)")
    return stats


def stream_probe(
    port: int,
    path: str,
    body: bytes,
    concurrency: int,
    duration: float,
    stagger: float = 0.0,
    headers: list[tuple[str, str]] | None = None,
) -> StreamStats:
    """``concurrency`` workers each open SSE streams back to back for ``duration`` seconds. Worker
    starts are spread evenly over ``stagger`` seconds (about one stream's length) so streams begin at
    a steady rate instead of in synchronised waves of ``concurrency``. ``headers`` are sent with every
    request (on top of Host, Authorization, Content-Type/Length and Accept)."""
    return trio.run(_stream_probe, port, path, body, concurrency, duration, stagger, headers)
