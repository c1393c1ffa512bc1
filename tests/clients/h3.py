"""A small HTTP/3 client for tests (aioquic on asyncio), usable from trio tests and as a subprocess.

* ``await h3_request(url, ...)`` from trio: runs the asyncio client in a worker thread.
* ``H3Client`` (asyncio): several requests on one QUIC connection, cancelling a request with
  RESET_STREAM + STOP_SENDING, or vanishing (dropping the UDP socket without CONNECTION_CLOSE).
* ``python -m tests.clients.h3 URL`` prints one JSON object per event and flushes, so a test can read
  the first chunk and SIGKILL the process: the most faithful "client vanished" there is.

Debian's curl has no HTTP/3, hence this client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

T = TypeVar("T")

Header = tuple[bytes, bytes]


@dataclass
class H3Response:
    status: int
    headers: list[Header]
    body: bytes
    # (seconds since the request was sent, DATA payload) for each non-empty DATA frame received
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    complete: bool = True  # False when the client reset or vanished before the end of the stream

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key == wanted:
                return value.decode("latin-1")
        return None

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower().encode()
        return [value.decode("latin-1") for key, value in self.headers if key == wanted]


class H3Error(Exception):
    pass


class _Protocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.queues: dict[int, asyncio.Queue[H3Event | QuicEvent]] = {}
        self.terminated: ConnectionTerminated | None = None  # how the connection ended, once it has

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            stream_id = getattr(h3_event, "stream_id", None)
            if stream_id in self.queues:
                self.queues[stream_id].put_nowait(h3_event)
        if isinstance(event, StreamReset) and event.stream_id in self.queues:
            self.queues[event.stream_id].put_nowait(event)
        elif isinstance(event, ConnectionTerminated):
            self.terminated = event
            for queue in self.queues.values():
                queue.put_nowait(event)


def _split_url(url: str) -> tuple[str, int, str, str]:
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.hostname is None:
        raise ValueError(f"HTTP/3 needs an https:// URL, got {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port or 443, path, parts.netloc


class H3Client:
    """One QUIC connection (asyncio). ``async with H3Client(url) as client: await client.request(...)``."""

    def __init__(self, url: str, *, verify: bool | str = False, idle_timeout: float = 30.0) -> None:
        self.host, self.port, _, self.authority = _split_url(url)
        self.verify = verify
        self.idle_timeout = idle_timeout
        self.protocol: _Protocol | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.vanished = False

    async def __aenter__(self) -> H3Client:
        configuration = QuicConfiguration(
            is_client=True, alpn_protocols=H3_ALPN, idle_timeout=self.idle_timeout, server_name=self.host
        )
        if self.verify is False:
            configuration.verify_mode = ssl.CERT_NONE
        elif isinstance(self.verify, str):
            configuration.load_verify_locations(cafile=self.verify)
        loop = asyncio.get_running_loop()
        info = (await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM))[0]
        family, address = info[0], info[4]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Protocol(QuicConnection(configuration=configuration)), sock=sock
        )
        self.transport, self.protocol = transport, protocol
        protocol.connect(address)
        await protocol.wait_connected()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.protocol is None or self.transport is None or self.vanished:
            return
        self.protocol.close()
        try:
            await asyncio.wait_for(self.protocol.wait_closed(), 5)
        except TimeoutError:
            pass
        self.transport.close()

    async def wait_closed_by_server(self, timeout: float) -> ConnectionTerminated | None:
        """Wait (up to ``timeout``) for the server to close the connection; its ConnectionTerminated."""
        assert self.protocol is not None
        try:
            await asyncio.wait_for(self.protocol.wait_closed(), timeout)
        except TimeoutError:
            return None
        return self.protocol.terminated

    def vanish(self) -> None:
        """Drop the UDP socket without sending CONNECTION_CLOSE, like a killed or disconnected client."""
        assert self.transport is not None
        self.vanished = True
        self.transport.abort()

    async def request(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        on_chunk: Callable[[bytes], None] | None = None,
        reset_after_chunks: int | None = None,
        vanish_after_chunks: int | None = None,
    ) -> H3Response:
        """Send one request; with ``*_after_chunks`` stop after that many DATA chunks (incomplete result)."""
        protocol = self.protocol
        assert protocol is not None
        quic = protocol._quic
        stream_id = quic.get_next_available_stream_id()
        queue: asyncio.Queue[H3Event | QuicEvent] = asyncio.Queue()
        protocol.queues[stream_id] = queue
        request_headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", self.authority.encode()),
            (b":path", path.encode()),
            *[(name.lower().encode(), value.encode()) for name, value in headers],
        ]
        protocol.h3.send_headers(stream_id, request_headers, end_stream=not body)
        if body:
            protocol.h3.send_data(stream_id, body, end_stream=True)
        protocol.transmit()
        started = time.monotonic()
        response = H3Response(status=0, headers=[], body=b"", complete=False)
        try:
            while True:
                event = await queue.get()
                if isinstance(event, HeadersReceived):
                    if response.status == 0:
                        response.headers = [(k, v) for k, v in event.headers if not k.startswith(b":")]
                        response.status = int(dict(event.headers)[b":status"])
                    if event.stream_ended:
                        response.complete = True
                        return response
                elif isinstance(event, DataReceived):
                    if event.data:
                        response.chunks.append((time.monotonic() - started, event.data))
                        response.body += event.data
                        if on_chunk is not None:
                            on_chunk(event.data)
                    if event.stream_ended:
                        response.complete = True
                        return response
                    if reset_after_chunks is not None and len(response.chunks) >= reset_after_chunks:
                        code = ErrorCode.H3_REQUEST_CANCELLED
                        quic.stop_stream(stream_id, code)
                        quic.reset_stream(stream_id, code)
                        protocol.transmit()
                        return response
                    if vanish_after_chunks is not None and len(response.chunks) >= vanish_after_chunks:
                        self.vanish()
                        return response
                elif isinstance(event, StreamReset):
                    raise H3Error(f"server reset stream {stream_id} (error {event.error_code:#x})")
                elif isinstance(event, ConnectionTerminated):
                    raise H3Error(f"connection closed (error {event.error_code:#x}: {event.reason_phrase})")
        finally:
            protocol.queues.pop(stream_id, None)


async def h3_request_asyncio(
    url: str,
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    verify: bool | str = False,
    timeout: float = 20.0,
    vanish_after_chunks: int | None = None,
) -> H3Response:
    """One request on a fresh connection (asyncio). ``verify``: False, True or a CA file path."""
    _, _, path, _ = _split_url(url)
    async with asyncio.timeout(timeout), H3Client(url, verify=verify) as client:
        return await client.request(
            path, method=method, headers=headers, body=body, vanish_after_chunks=vanish_after_chunks
        )


async def run_asyncio(make_coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an asyncio scenario from trio, in a worker thread with its own event loop."""
    import trio

    return await trio.to_thread.run_sync(lambda: asyncio.run(make_coroutine()))


async def h3_request(
    url: str,
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    verify: bool | str = False,
    timeout: float = 20.0,
    vanish_after_chunks: int | None = None,
) -> H3Response:
    """``h3_request_asyncio`` for trio callers (the thread is not cancellable: ``timeout`` bounds it)."""
    return await run_asyncio(
        lambda: h3_request_asyncio(
            url,
            method=method,
            headers=headers,
            body=body,
            verify=verify,
            timeout=timeout,
            vanish_after_chunks=vanish_after_chunks,
        )
    )


def subprocess_command(url: str, *, method: str = "GET", body: bytes = b"") -> list[str]:
    """argv that streams ``url`` over HTTP/3 in a child process printing JSON lines (see ``main``)."""
    command = [sys.executable, "-m", "tests.clients.h3", url, "--method", method]
    if body:
        command += ["--data", body.decode()]
    return command


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def _main_async(args: argparse.Namespace) -> None:
    _, _, path, _ = _split_url(args.url)
    async with H3Client(args.url, verify=False) as client:
        response = await client.request(
            path,
            method=args.method,
            body=args.data.encode(),
            on_chunk=lambda data: _emit(event="chunk", data=data.decode("utf-8", "replace")),
        )
        _emit(event="end", status=response.status)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="HTTP/3 test client: one JSON line per DATA chunk")
    parser.add_argument("url")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--data", default="")
    args = parser.parse_args(argv)
    _emit(event="start")
    asyncio.run(_main_async(args))


if __name__ == "__main__":
    main()
