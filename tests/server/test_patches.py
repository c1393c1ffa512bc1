"""Evidence for each patch in omen.server.hypercorn_patches (bugs reproduced against hypercorn 0.18.0)."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import trio
from aioquic.h3.events import HeadersReceived

from omen.server import hypercorn_patches
from tests.clients.h3 import H3Client, H3Error, h3_request, run_asyncio
from tests.server.certs import CertPair
from tests.server.support import plain_settings, running_server, tls_settings

# ---- (1) TCPServer._close vs send_all


class _RecordingProtocol:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def handle(self, event: Any) -> None:
        self.events.append(event)


async def _close_while_sending(close: Any, rounds: int) -> None:
    """Run ``close(server)`` and ``protocol_send(RawData)`` concurrently on a real socket, ``rounds`` times."""
    from hypercorn.events import RawData
    from hypercorn.trio.tcp_server import TCPServer

    for _ in range(rounds):
        left, right = trio.socket.socketpair()
        server = TCPServer.__new__(TCPServer)  # only the parts _close/protocol_send use
        server.send_lock = trio.Lock()
        server.stream = trio.SocketStream(left)
        server.protocol = _RecordingProtocol()  # type: ignore[assignment]
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(close, server)
                # hypercorn's own protocol_send (send_all under the lock), not hypercorn_fastpath's
                # direct write, which never holds trio's send-conflict detector
                nursery.start_soon(inspect.unwrap(TCPServer.protocol_send), server, RawData(data=b"x" * 100))
        finally:
            right.close()


async def test_upstream_close_races_send_all() -> None:
    """Control: hypercorn 0.18.0's own _close makes a concurrent send_all raise BusyResourceError."""
    hypercorn_patches.apply()
    from hypercorn.trio.tcp_server import TCPServer

    original = TCPServer._close.__wrapped__  # type: ignore[attr-defined]
    with pytest.RaisesGroup(trio.BusyResourceError, flatten_subgroups=True):
        await _close_while_sending(original, rounds=200)


async def test_close_does_not_race_send_all() -> None:
    hypercorn_patches.apply()
    from hypercorn.trio.tcp_server import TCPServer

    await _close_while_sending(TCPServer._close, rounds=200)


# ---- (4) DATA for a stream whose response already completed


def _h2_early_response_then_data(port: int) -> tuple[int, int]:
    """POST /early without END_STREAM, wait for the 413, send DATA, then a second request."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(5)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    headers = [(":method", "POST"), (":path", "/early"), (":scheme", "http"), (":authority", "x")]
    client.send_headers(1, headers)
    sock.sendall(client.data_to_send())

    def wait_stream_end(stream_id: int) -> int:
        status = 0
        while True:
            data = sock.recv(65536)
            assert data, "server closed the connection"
            for event in client.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    status = int(dict(event.headers)[b":status"])
                if isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    return status
            sock.sendall(client.data_to_send())

    first = wait_stream_end(1)
    client.send_data(1, b"late body bytes", end_stream=True)  # KeyError in hypercorn's _handle_events
    headers = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
    client.send_headers(3, headers, end_stream=True)
    sock.sendall(client.data_to_send())
    second = wait_stream_end(3)
    sock.close()
    return first, second


async def test_h2_data_after_early_response_keeps_server_alive() -> None:
    async with running_server(plain_settings()) as server:
        with trio.fail_after(15):
            first, second = await trio.to_thread.run_sync(_h2_early_response_then_data, server.port)
        assert (first, second) == (413, 200)  # same connection still usable
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            assert (await client.get(server.url("/"))).status_code == 200


async def test_h3_data_after_early_response_keeps_server_alive(certs: CertPair) -> None:
    """Same bug on h3: there the KeyError would end the single UDP task, i.e. every QUIC connection."""
    async with running_server(tls_settings(certs)) as server:

        async def scenario() -> tuple[int, int]:
            async with H3Client(server.url("/")) as client:
                protocol = client.protocol
                assert protocol is not None
                stream_id = protocol._quic.get_next_available_stream_id()
                queue: asyncio.Queue[Any] = asyncio.Queue()
                protocol.queues[stream_id] = queue
                headers = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", b"/early")]
                protocol.h3.send_headers(stream_id, headers, end_stream=False)
                protocol.transmit()
                status = 0
                while True:
                    event = await queue.get()
                    if isinstance(event, HeadersReceived):
                        status = int(dict(event.headers)[b":status"])
                    if getattr(event, "stream_ended", False):
                        break
                protocol.h3.send_data(stream_id, b"late body bytes", end_stream=True)
                protocol.transmit()
                second = await client.request("/")  # same connection, after the late DATA
                return status, second.status

        with trio.fail_after(20):
            assert await run_asyncio(scenario) == (413, 200)
        assert (await h3_request(server.url("/"), timeout=10)).status == 200


# ---- h2 connection closed while the app is blocked in send


def _h2_blast_then_reset(port: int) -> None:
    """Request /blast, never read (flow control blocks the app), then reset the connection."""
    sock = socket.create_connection(("127.0.0.1", port))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    headers = [(":method", "GET"), (":path", "/blast?id=blocked"), (":scheme", "http"), (":authority", "x")]
    client.send_headers(1, headers, end_stream=True)
    sock.sendall(client.data_to_send())
    sock.settimeout(5)
    received = 0
    while received < 65536:  # the initial windows: the server is now blocked on flow control
        data = sock.recv(65536)
        assert data
        received += len(data)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST


async def test_h2_abrupt_close_releases_blocked_app_send() -> None:
    async with running_server(plain_settings()) as server:
        await trio.to_thread.run_sync(_h2_blast_then_reset, server.port)
        # the app's pending send must return once the connection is gone (unpatched: never)
        with trio.fail_after(10):
            await server.app.finished_event("blocked").wait()


# ---- (5) and (6): firewalls


async def test_tcp_connection_error_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    from hypercorn.events import RawData
    from hypercorn.protocol.h11 import H11Protocol

    original = H11Protocol.handle

    async def failing_handle(self: Any, event: Any) -> None:
        if isinstance(event, RawData) and b"/boom" in event.data:
            raise RuntimeError("simulated hypercorn protocol bug")
        await original(self, event)

    monkeypatch.setattr(H11Protocol, "handle", failing_handle)
    async with running_server(plain_settings()) as server, httpx.AsyncClient() as client:
        with pytest.raises(httpx.TransportError):
            await client.get(server.url("/boom"))
        assert (await client.get(server.url("/"))).status_code == 200


async def test_quic_connection_error_is_contained(monkeypatch: pytest.MonkeyPatch, certs: CertPair) -> None:
    from hypercorn.protocol.h3 import H3Protocol

    original = H3Protocol._create_stream

    async def failing_create_stream(self: Any, request: Any) -> None:
        if (b":path", b"/boom") in request.headers:
            raise RuntimeError("simulated hypercorn h3 bug")
        await original(self, request)

    monkeypatch.setattr(H3Protocol, "_create_stream", failing_create_stream)
    async with running_server(tls_settings(certs)) as server:
        with pytest.raises(H3Error, match="0x102"):  # H3_INTERNAL_ERROR: only that connection closed
            await h3_request(server.url("/boom"), timeout=10)
        response = await h3_request(server.url("/"), timeout=10)
        assert response.status == 200
        assert json.loads(response.body)["http_version"] == "3"


async def test_stale_quic_timer_is_dropped() -> None:
    """A timer task waking after its QUIC connection ended: upstream crashes (``now >= None``), patched drops it."""
    from types import SimpleNamespace

    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from hypercorn.protocol.quic import QuicProtocol

    hypercorn_patches.apply()
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True))
    assert quic._close_at is None  # as after _close_end(): the connection has no deadline any more
    handled: list[Any] = []

    async def handle_events(connection: Any, client: Any) -> None:
        handled.append(connection)

    protocol = SimpleNamespace(
        context=SimpleNamespace(time=trio.current_time, sleep=trio.sleep), _handle_events=handle_events
    )
    connection = SimpleNamespace(quic=quic)
    with pytest.raises(TypeError):  # hypercorn 0.18.0 + aioquic: the crash seen in CI
        await QuicProtocol._handle_timer.__wrapped__(protocol, trio.current_time(), connection)
    await QuicProtocol._handle_timer(protocol, trio.current_time(), connection)
    assert handled == []  # dropped: nothing to handle for an ended connection
