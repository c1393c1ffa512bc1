"""Behaviour kept by omen.server.hypercorn_fastpath (the per-request CPU cuts on hypercorn's trio worker).

Three layers: ``IdleTimer`` alone under trio's mock clock (exact keep-alive semantics without real
time); ``H11Protocol`` with the patched and the upstream ``stream_send`` side by side (byte-identical
output, fewer writes); and a real server (keep-alive, pipelining, SSE flushing, disconnects, large
bodies through a full socket buffer, idle timeout, graceful shutdown, h2c). No test asserts timing.
"""

from __future__ import annotations

import inspect
import shutil
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.events
import h11
import httpx
import pytest
import trio
import trio.testing

from omen.server import hypercorn_fastpath, hypercorn_patches
from omen.server.hypercorn_fastpath import IdleTimer
from tests.server.support import TestApp, plain_settings, running_server, sse_data, sse_event


@pytest.fixture(autouse=True)
def _patched() -> None:
    hypercorn_patches.apply()
    assert hypercorn_fastpath.applied() == hypercorn_fastpath.selected()


def requires(patch: str) -> pytest.MarkDecorator:
    """For tests of a patch's own mechanism; the behaviour tests also pass with OMEN_HYPERCORN_FASTPATH=0."""
    return pytest.mark.skipif(patch not in hypercorn_fastpath.selected(), reason=f"{patch} disabled")


# ---- the switch


def test_switch_selects_patches() -> None:
    everything = hypercorn_fastpath.selected("1")
    assert set(everything) == set(hypercorn_fastpath.PATCHES)
    assert hypercorn_fastpath.selected("") == everything
    assert hypercorn_fastpath.selected("0") == ()
    assert hypercorn_fastpath.selected("send_path, idle_timer") == ("idle_timer", "send_path")
    with pytest.raises(ValueError, match="unknown patch"):
        hypercorn_fastpath.selected("idle_timer,nope")


@requires("send_path")
@requires("coalesce_response")
def test_apply_is_idempotent_and_h2_h3_are_untouched() -> None:
    from hypercorn.protocol import h2, h3, quic
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.trio.tcp_server import TCPServer

    methods = (TCPServer.__init__, TCPServer._read_data, TCPServer.protocol_send, H11Protocol.stream_send)
    for patch in hypercorn_fastpath.PATCHES.values():  # applying again must not wrap twice
        patch()
    hypercorn_fastpath.apply()
    assert (TCPServer.__init__, TCPServer._read_data, TCPServer.protocol_send, H11Protocol.stream_send) == methods
    for cls in (h2.H2Protocol, h3.H3Protocol, quic.QuicProtocol):
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            chain = member
            while chain is not None:
                assert getattr(chain, "__omen_fastpath__", None) is None, f"{cls.__name__}.{name}"
                chain = getattr(chain, "__wrapped__", None)


# ---- IdleTimer under the mock clock


class _FakeServer:
    def __init__(self, timeout: float) -> None:
        from hypercorn.trio.worker_context import EventWrapper

        self.config = type("Config", (), {"keep_alive_timeout": timeout})()
        self.context = type("Context", (), {"terminated": EventWrapper()})()
        self.closed_at: float | None = None
        self.marks: dict[str, float] = {}

    async def _initiate_server_close(self) -> None:
        self.closed_at = trio.current_time()

    async def _idle_timeout(self) -> None:  # what TCPServer passes as ``action``
        raise AssertionError("IdleTimer never runs the action itself")


class _Group:
    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def spawn(self, func: Callable[..., Any], *args: Any) -> None:
        self._nursery.start_soon(func, *args)


async def test_idle_timer_closes_after_the_timeout_of_the_last_idle_period(autojump_clock: Any) -> None:
    server = _FakeServer(timeout=10)
    with trio.fail_after(1000):  # virtual time: a watcher that never closes fails instead of hanging
        await _first_scenario(server)
    assert server.closed_at == pytest.approx(server.marks["last idle"] + 10)
    assert server.marks["idle again"] + 10 < server.closed_at


async def _first_scenario(server: _FakeServer) -> None:
    async with trio.open_nursery() as nursery:
        timer, group = IdleTimer(server), _Group(nursery)
        await timer.restart(group, server._idle_timeout)  # new connection: idle
        await trio.sleep(6)
        await timer.stop()  # request arrives
        await trio.sleep(30)  # busy far longer than the timeout: never closed while busy
        assert server.closed_at is None
        await timer.restart(group, server._idle_timeout)  # response done: idle again
        server.marks["idle again"] = trio.current_time()
        await trio.sleep(4)
        await timer.stop()
        await timer.restart(group, server._idle_timeout)  # a quick second request
        server.marks["last idle"] = trio.current_time()


async def test_idle_timer_first_period_and_reader_end(autojump_clock: Any) -> None:
    server = _FakeServer(timeout=5)
    start = trio.current_time()
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await IdleTimer(server).restart(_Group(nursery), server._idle_timeout)
    assert server.closed_at == pytest.approx(start + 5)  # a connection that never sends a request

    other = _FakeServer(timeout=5)
    async with trio.open_nursery() as nursery:
        timer = IdleTimer(other)
        await timer.restart(_Group(nursery), other._idle_timeout)
        await trio.sleep(1)
        timer.close()  # the reader saw EOF: the watcher ends now instead of sleeping out the timeout
        closed = trio.current_time()
    assert other.closed_at is None and trio.current_time() == pytest.approx(closed)


async def test_idle_timer_shutdown_closes_idle_now_and_busy_when_idle(autojump_clock: Any) -> None:
    idle, busy = _FakeServer(timeout=60), _FakeServer(timeout=60)
    with trio.fail_after(1000):
        shutdown, finished = await _shutdown_scenario(idle, busy)
    assert idle.closed_at == pytest.approx(shutdown)
    assert busy.closed_at == pytest.approx(finished)


async def _shutdown_scenario(idle: _FakeServer, busy: _FakeServer) -> tuple[float, float]:
    async with trio.open_nursery() as nursery:
        idle_timer, busy_timer = IdleTimer(idle), IdleTimer(busy)
        await idle_timer.restart(_Group(nursery), idle._idle_timeout)
        await busy_timer.restart(_Group(nursery), busy._idle_timeout)
        await busy_timer.stop()
        await trio.sleep(1)
        shutdown = trio.current_time()
        await idle.context.terminated.set()
        await busy.context.terminated.set()
        await trio.sleep(3)  # the busy connection finishes its request 3 s into the drain
        assert busy.closed_at is None
        await busy_timer.restart(_Group(nursery), busy._idle_timeout)
        finished = trio.current_time()
    return shutdown, finished


# ---- H11Protocol: patched vs upstream stream_send


def _upstream_h11() -> type:
    from hypercorn.protocol.h11 import H11Protocol

    class UpstreamH11(H11Protocol):
        stream_send = inspect.unwrap(H11Protocol.stream_send)

    return UpstreamH11


async def _h11_writes(protocol_class: type, app: Any, raw: bytes) -> list[bytes]:
    """Feed ``raw`` to an ``H11Protocol`` and return every non-empty write it asked for, in order."""
    from hypercorn.app_wrappers import ASGIWrapper
    from hypercorn.config import Config
    from hypercorn.events import RawData
    from hypercorn.trio.task_group import TaskGroup
    from hypercorn.trio.worker_context import WorkerContext
    from hypercorn.typing import ConnectionState

    config = Config()
    config.include_date_header = False  # byte-for-byte comparable
    writes: list[bytes] = []

    async def send(event: Any) -> None:
        if isinstance(event, RawData) and event.data:
            writes.append(bytes(event.data))

    async with TaskGroup() as group:
        protocol = protocol_class(
            ASGIWrapper(app), config, WorkerContext(None), group, ConnectionState({}), False, None, None, send
        )
        await protocol.handle(RawData(data=raw))
    return writes


async def _json_app(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    body = b'{"ok":true,"path":"%s"}' % scope["path"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def _sse_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for index in range(3):
        await send({"type": "http.response.body", "body": sse_event(str(index)), "more_body": True})
    await send({"type": "http.response.body", "body": sse_event("[DONE]")})


async def _start_then_fail_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
    raise RuntimeError("boom after http.response.start")


@requires("coalesce_response")
def _with_reason(data: bytes) -> bytes:
    """Upstream's bytes with the reason phrase the fast path adds (upstream sends ``HTTP/1.1 200 ``)."""
    return data.replace(b"HTTP/1.1 200 \r\n", b"HTTP/1.1 200 OK\r\n")


async def test_h11_json_response_is_one_write_and_byte_identical() -> None:
    raw = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nPOST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"
    from hypercorn.protocol.h11 import H11Protocol

    upstream = await _h11_writes(_upstream_h11(), _json_app, raw)
    fast = await _h11_writes(H11Protocol, _json_app, raw)
    assert b"".join(fast) == _with_reason(b"".join(upstream))
    assert len(upstream) == 4 and len(fast) == 2  # head + body per response -> one write per response
    assert fast[0].startswith(b"HTTP/1.1 200 OK\r\n") and fast[0].endswith(b'{"ok":true,"path":"/a"}')
    assert fast[1].endswith(b'{"ok":true,"path":"/b"}')


async def test_h11_streaming_head_and_events_are_written_as_upstream() -> None:
    raw = b"GET /sse HTTP/1.1\r\nhost: x\r\n\r\n"
    from hypercorn.protocol.h11 import H11Protocol

    upstream = await _h11_writes(_upstream_h11(), _sse_app, raw)
    fast = await _h11_writes(H11Protocol, _sse_app, raw)
    assert fast == [_with_reason(w) for w in upstream]  # head alone first, one write per event, the last chunk
    assert fast[0].startswith(b"HTTP/1.1 200 OK\r\n") and fast[0].endswith(b"\r\n\r\n")
    assert len(fast) == 1 + 3 + 2


async def test_h11_head_is_written_when_the_app_fails_after_start() -> None:
    raw = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
    from hypercorn.protocol.h11 import H11Protocol

    upstream = await _h11_writes(_upstream_h11(), _start_then_fail_app, raw)
    fast = await _h11_writes(H11Protocol, _start_then_fail_app, raw)
    assert fast == [_with_reason(w) for w in upstream] and fast[0].startswith(b"HTTP/1.1 200 OK\r\n")


# ---- a real server


class FastpathApp(TestApp):
    """TestApp plus routes whose progress the test controls (no sleeps, no timing)."""

    __test__ = False

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[str, trio.Event] = {}

    def gate(self, key: str) -> trio.Event:
        return self.gates.setdefault(key, trio.Event())

    async def __call__(self, scope: Any, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "http":
            query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
            if scope["path"] == "/gated-sse":
                # head, then one event per opened gate: shows each one reaches the client on its own
                key = query["id"]
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
                )
                await self.gate(key + "-head").wait()
                for index in range(2):
                    await send({"type": "http.response.body", "body": sse_event(str(index)), "more_body": True})
                    await self.gate(f"{key}-{index}").wait()
                await send({"type": "http.response.body", "body": sse_event("[DONE]")})
                return
            if scope["path"] == "/big":
                size = int(query["size"])
                body = bytes(range(256)) * (size // 256)
                headers = [(b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            if scope["path"] == "/big-deadline":
                # the app gives up on its send (deadline) while the socket buffer is full: the message
                # must still go out whole, or the connection would be out of step with h11's state
                body = bytes(range(256)) * (int(query["size"]) // 256)
                headers = [(b"content-length", str(len(body)).encode())]
                with trio.move_on_after(0.1) as deadline:
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    await trio.sleep_forever()
                if deadline.cancelled_caught:
                    self.gate("deadline-" + query["id"]).set()
                return
            if scope["path"] == "/wait-disconnect":
                # reads the request, never answers: only http.disconnect ends it
                while (await receive())["type"] != "http.disconnect":
                    self.gate(query["id"] + "-arrived").set()
                self.disconnect_event(query["id"]).set()
                return
        await super().__call__(scope, receive, send)


class RawH1:
    """A raw HTTP/1.1 client connection, parsed with h11, that can also pipeline requests."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.leftover = b""

    @classmethod
    async def open(cls, port: int) -> RawH1:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    @staticmethod
    def wire(path: str, method: str = "GET", body: bytes = b"") -> bytes:
        conn = h11.Connection(h11.CLIENT)
        headers = [("host", "x"), ("content-length", str(len(body)))]
        request = conn.send(h11.Request(method=method, target=path, headers=headers))
        return request + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())

    def expect(self, path: str, method: str = "GET") -> None:
        """Get ready to parse the response to a request already on the wire (h11's client only
        parses a response to a request it sent itself; a fresh one per request allows pipelining)."""
        self.conn = h11.Connection(h11.CLIENT)
        self.conn.send(h11.Request(method=method, target=path, headers=[("host", "x"), ("content-length", "0")]))
        self.conn.send(h11.EndOfMessage())
        if self.leftover:  # (receive_data(b"") would mean EOF)
            self.conn.receive_data(self.leftover)
        self.leftover = b""

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                if isinstance(event, h11.EndOfMessage):
                    self.leftover = self.conn.trailing_data[0]
                return event
            self.conn.receive_data(await self.stream.receive_some(65536))

    async def response(self) -> tuple[int, bytes]:
        head = await self.next_event()
        assert isinstance(head, h11.Response), head
        body = b""
        while not isinstance(event := await self.next_event(), h11.EndOfMessage):
            body += bytes(event.data)
        return head.status_code, body

    async def request(self, path: str, method: str = "GET", body: bytes = b"") -> tuple[int, bytes]:
        await self.stream.send_all(self.wire(path, method, body))
        self.expect(path, method)
        return await self.response()

    async def closed_by_server(self) -> bool:
        """Wait until the server closes the connection; True if it sent nothing more before."""
        return self.leftover == b"" and await self.stream.receive_some(65536) == b""


async def test_keep_alive_and_pipelined_requests() -> None:
    async with running_server(plain_settings(), app=FastpathApp()) as server:
        client = await RawH1.open(server.port)
        for index in range(30):
            status, body = await client.request(f"/echo?i={index}", "POST", b"x" * index)
            assert (status, body) == (200, b'{"bytes": %d}' % index)
        # pipelined: three requests in one write, answered in order on the same connection
        requests = [("/echo", "POST", b"abc"), ("/", "GET", b""), ("/echo", "POST", b"defgh")]
        await client.stream.send_all(b"".join(RawH1.wire(*request) for request in requests))
        results = []
        for path, method, _ in requests:
            client.expect(path, method)
            results.append(await client.response())
        assert results[0] == (200, b'{"bytes": 3}')
        assert results[1][0] == 200 and b"http_version" in results[1][1]
        assert results[2] == (200, b'{"bytes": 5}')
        assert (await client.request("/echo", "POST", b"z"))[1] == b'{"bytes": 1}'
        await client.stream.aclose()


async def test_sse_head_and_each_event_reach_the_client_while_the_app_waits() -> None:
    app = FastpathApp()
    async with running_server(plain_settings(), app=app) as server:
        client = await RawH1.open(server.port)
        await client.stream.send_all(RawH1.wire("/gated-sse?id=s"))
        client.expect("/gated-sse?id=s")
        with trio.fail_after(10):
            head = await client.next_event()  # the app is still blocked before its first event
            assert isinstance(head, h11.Response) and head.status_code == 200
            app.gate("s-head").set()
            received = b""
            for index in range(2):
                while sse_event(str(index)) not in received:  # arrives while the app waits on the gate
                    received += bytes((await client.next_event()).data)
                app.gate(f"s-{index}").set()
            while not isinstance(event := await client.next_event(), h11.EndOfMessage):
                received += bytes(event.data)
        assert sse_data(received) == ["0", "1", "[DONE]"]
        await client.stream.aclose()


async def test_large_bodies_through_a_full_socket_buffer() -> None:
    """Responses bigger than the socket buffers: the direct write is partial and send_all finishes it."""
    async with running_server(plain_settings(), app=FastpathApp()) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await trio.to_thread.run_sync(sock.connect, ("127.0.0.1", server.port))
        client = RawH1(trio.SocketStream(trio.socket.from_stdlib_socket(sock)))
        size = 3 * 1024 * 1024
        await client.stream.send_all(RawH1.wire(f"/big?size={size}"))
        client.expect(f"/big?size={size}")
        await trio.sleep(0.2)  # let the server fill both socket buffers before we read
        with trio.fail_after(30):
            status, body = await client.response()
            assert status == 200 and body == bytes(range(256)) * (size // 256)
            sse_status, sse_body = await client.request("/sse?n=3&d=0")  # the connection is still in sync
        assert sse_status == 200 and sse_data(sse_body) == ["0", "1", "2", "[DONE]"]
        await client.stream.aclose()


async def test_a_cancelled_sender_still_writes_its_whole_message() -> None:
    app = FastpathApp()
    async with running_server(plain_settings(), app=app) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await trio.to_thread.run_sync(sock.connect, ("127.0.0.1", server.port))
        client = RawH1(trio.SocketStream(trio.socket.from_stdlib_socket(sock)))
        size = 8 * 1024 * 1024  # far more than the socket buffers hold
        await client.stream.send_all(RawH1.wire(f"/big-deadline?size={size}&id=d"))
        client.expect(f"/big-deadline?size={size}&id=d")
        await trio.sleep(0.3)  # not reading: the app's deadline passes while its send is blocked
        with trio.fail_after(30):
            status, body = await client.response()
            assert status == 200 and body == bytes(range(256)) * (size // 256)
            await app.gate("deadline-d").wait()
            assert (await client.request("/"))[0] == 200  # and the connection is still in step
        await client.stream.aclose()


async def test_client_disconnect_reaches_the_app() -> None:
    app = FastpathApp()
    async with running_server(plain_settings(), app=app) as server:
        # before the response started: the app waits in receive() after reading the request
        client = await RawH1.open(server.port)
        await client.stream.send_all(RawH1.wire("/wait-disconnect?id=before"))
        with trio.fail_after(10):
            await app.gate("before-arrived").wait()
            await client.stream.aclose()
            await app.disconnect_event("before").wait()
        # while streaming
        async with httpx.AsyncClient() as http, http.stream("GET", server.url("/hold?id=streaming")) as stream:
            async for _ in stream.aiter_raw():
                break
        with trio.fail_after(10):
            await app.disconnect_event("streaming").wait()


async def test_idle_keep_alive_connections_are_closed_and_busy_ones_are_not() -> None:
    app = FastpathApp()
    async with running_server(plain_settings(keep_alive_timeout=0.3), app=app) as server:
        never_used = await RawH1.open(server.port)
        used = await RawH1.open(server.port)
        assert (await used.request("/"))[0] == 200
        # a response lasting well beyond the keep-alive timeout is not cut, and the connection is
        # reused afterwards
        busy = await RawH1.open(server.port)
        status, body = await busy.request("/sse?n=8&d=0.1")
        assert status == 200 and sse_data(body)[-1] == "[DONE]"
        assert (await busy.request("/"))[0] == 200
        with trio.fail_after(10):
            assert await never_used.closed_by_server()
            assert await used.closed_by_server()
            assert await busy.closed_by_server()
        for client in (never_used, used, busy):
            await client.stream.aclose()


@requires("idle_timer")
async def test_connections_closed_by_the_client_do_not_linger() -> None:
    """Upstream's idle task kept a closed connection's tasks alive until keep_alive_timeout (75 s)."""

    async def connect_request_close(count: int) -> None:
        clients = [await RawH1.open(server.port) for _ in range(count)]
        for client in clients:
            assert (await client.request("/"))[0] == 200
        for client in clients:
            await client.stream.aclose()

    async with running_server(plain_settings(keep_alive_timeout=75)) as server:
        await connect_request_close(1)  # first connection: one-off tasks of the server start here
        await trio.sleep(0.2)
        baseline = trio.lowlevel.current_statistics().tasks_living
        await connect_request_close(5)
        with trio.fail_after(10):
            while trio.lowlevel.current_statistics().tasks_living > baseline:
                await trio.sleep(0.01)


async def test_graceful_shutdown_closes_idle_connections_and_drains_streams() -> None:
    app = FastpathApp()
    async with running_server(plain_settings(graceful_timeout=20), app=app) as server:
        idle = await RawH1.open(server.port)
        assert (await idle.request("/"))[0] == 200
        streaming = await RawH1.open(server.port)
        await streaming.stream.send_all(RawH1.wire("/gated-sse?id=drain"))
        streaming.expect("/gated-sse?id=drain")
        app.gate("drain-head").set()
        received = b""
        with trio.fail_after(10):
            assert isinstance(await streaming.next_event(), h11.Response)
            while sse_event("0") not in received:
                received += bytes((await streaming.next_event()).data)
        server.stop_event.set()
        with trio.fail_after(10):
            assert await idle.closed_by_server()  # idle: closed as soon as shutdown starts
        assert not server.done.is_set()  # the stream holds the drain open
        app.gate("drain-0").set()
        app.gate("drain-1").set()
        with trio.fail_after(10):
            while not isinstance(event := await streaming.next_event(), h11.EndOfMessage):
                received += bytes(event.data)
            assert sse_data(received) == ["0", "1", "[DONE]"]
            assert await streaming.closed_by_server()  # not recycled during shutdown
            await server.done.wait()
        for client in (idle, streaming):
            await client.stream.aclose()


def _h2c_request_then_wait_close(port: int) -> tuple[int, bool]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(
        1, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")], end_stream=True
    )
    sock.sendall(client.data_to_send())
    status = 0
    ended = False
    while not ended:
        data = sock.recv(65536)
        assert data, "closed before the response"
        for event in client.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            ended = ended or isinstance(event, h2.events.StreamEnded)
        sock.sendall(client.data_to_send())
    while True:  # idle now: the server must close the connection after keep_alive_timeout
        data = sock.recv(65536)
        if not data:
            sock.close()
            return status, True
        client.receive_data(data)
        if client.data_to_send():
            sock.sendall(client.data_to_send())


async def test_h2c_requests_and_idle_timeout() -> None:
    async with running_server(plain_settings(keep_alive_timeout=0.3)) as server:
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            for _ in range(5):
                response = await client.get(server.url("/"))
                assert response.status_code == 200 and response.json()["http_version"] == "2"
        with trio.fail_after(20):
            assert await trio.to_thread.run_sync(_h2c_request_then_wait_close, server.port) == (200, True)


@requires("send_path")
async def test_patched_close_and_fast_send_do_not_race() -> None:
    """hypercorn_patches' _close (send_eof under the send lock) against the fast send path."""
    from hypercorn.events import RawData
    from hypercorn.trio.tcp_server import TCPServer

    class Recorder:
        async def handle(self, event: Any) -> None:
            pass

    for _ in range(200):
        left, right = trio.socket.socketpair()
        server = TCPServer.__new__(TCPServer)
        server.send_lock = trio.Lock()
        server.stream = trio.SocketStream(left)
        server.protocol = Recorder()  # type: ignore[assignment]
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(TCPServer._close, server)
                nursery.start_soon(server.protocol_send, RawData(data=b"x" * 100))
        finally:
            right.close()


async def test_abrupt_client_close_with_a_pending_response() -> None:
    """The write fails (peer reset) -> the protocol gets Closed, the app its http.disconnect."""
    app = FastpathApp()
    async with running_server(plain_settings(), app=app) as server:
        for index in range(20):
            sock = trio.socket.socket()
            await sock.connect(("127.0.0.1", server.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            await sock.send(RawH1.wire(f"/hold?id=rst{index}"))
            with trio.fail_after(10):
                assert await sock.recv(100)
            sock.close()  # RST
            with trio.fail_after(10):
                await app.disconnect_event(f"rst{index}").wait()
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.url("/"))).status_code == 200


@requires("disconnect_signal")
async def test_disconnect_signal_fires_and_receive_still_reports_it() -> None:
    fired = trio.Event()
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        signal = scope["extensions"][hypercorn_fastpath.DISCONNECT_EXTENSION]
        seen["fired_at_start"] = signal.fired
        signal.subscribe(fired.set)
        await receive()  # the request body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: x\n\n", "more_body": True})
        with trio.fail_after(10):
            await fired.wait()  # the callback ran before anyone read the queue
            seen["message"] = (await receive())["type"]  # and the ASGI message is still there

    async with running_server(plain_settings(), app=app) as server:
        async with httpx.AsyncClient() as http, http.stream("GET", server.url("/")) as stream:
            async for _ in stream.aiter_raw():
                break
        with trio.fail_after(10):
            await fired.wait()
            while "message" not in seen:
                await trio.sleep(0.01)
    assert seen == {"fired_at_start": False, "message": "http.disconnect"}


@requires("coalesce_response")
@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) not installed")
async def test_h1_status_line_has_a_reason_phrase() -> None:
    """h2load's HTTP/1.1 parser counts a response without a reason phrase (``HTTP/1.1 200 ``) as failed."""
    async with running_server(plain_settings()) as server:
        result = await trio.run_process(
            ["h2load", "--h1", "-n", "20", "-c", "2", server.url("/")], capture_stdout=True, check=False
        )
    out = result.stdout.decode()
    assert "20 succeeded" in out, out
