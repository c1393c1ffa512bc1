"""OMEN's HTTP/1.1 upstream transport (omen/transport/h11_transport.py) against real local servers:
the fake upstream (plain and over TLS) and hypercorn over TLS. Behaviour only, never timing."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from omen.config.schema import ProviderConfig, ServerConfig
from omen.server.serve import serve
from omen.transport import h11_transport
from omen.transport.h11_transport import H11Transport
from omen.transport.pool import TRANSPORT_ENV, UpstreamPool
from tests.fakes import FakeUpstream, Fault, open_fake_upstream
from tests.server.certs import CertPair

CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}'
STREAM = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"one two three four"}]}'
TIMEOUT = httpx.Timeout(None, connect=5.0, pool=5.0)  # what omen/transport/pool.py sets


@asynccontextmanager
async def h11_client(**kw: Any) -> AsyncIterator[tuple[httpx.AsyncClient, H11Transport]]:
    timeout = kw.pop("timeout", TIMEOUT)
    transport = H11Transport(**kw)
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        yield client, transport


async def post(client: httpx.AsyncClient, up: FakeUpstream, body: bytes = CHAT) -> httpx.Response:
    return await client.post(up.openai_base + "/chat/completions", content=body)


async def open_stream(client: httpx.AsyncClient, url: str, body: bytes = STREAM) -> httpx.Response:
    """What omen/transport/exchange.py does: build_request + send(stream=True)."""
    return await client.send(client.build_request("POST", url, content=body), stream=True)


def assert_pool_clean(transport: H11Transport, max_connections: int) -> None:
    """No slot held and every pooled connection ready for a new request (nothing half-used)."""
    for origin in transport._origins.values():
        assert origin.slots.value == max_connections
        for conn in origin.idle:
            assert conn.h11.our_state is conn.h11.their_state is h11_transport.h11.IDLE
            assert not conn.looks_dead()


# --- keep-alive and limits -------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection() -> None:
    async with open_fake_upstream("openai") as up, h11_client() as (client, transport):
        for _ in range(30):
            response = await post(client, up)
            assert response.status_code == 200
            assert response.json()["object"] == "chat.completion"
            assert response.http_version == "HTTP/1.1"
        assert up.connections_opened == 1
        assert up.request_count == 30
        assert_pool_clean(transport, 100)


async def test_concurrency_is_capped_by_max_connections() -> None:
    async with open_fake_upstream("openai", chunk_delay=0.01) as up, h11_client(max_connections=3) as (client, tr):
        peak = 0
        done: list[int] = []

        async def one() -> None:
            nonlocal peak
            async with client.stream("POST", up.openai_base + "/chat/completions", content=STREAM) as response:
                async for _ in response.aiter_raw():
                    peak = max(peak, up.active_connections)
            done.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(12):
                nursery.start_soon(one)
        assert done == [200] * 12
        assert peak <= 3
        assert up.connections_opened == 3  # every connection was reused by the queued requests
        assert_pool_clean(tr, 3)


async def test_pool_timeout_when_every_connection_is_busy() -> None:
    async with open_fake_upstream("openai") as up:
        up.fault = Fault(stall_after_chunks=1)
        timeout = httpx.Timeout(None, connect=5.0, pool=0.2)
        async with h11_client(max_connections=1, timeout=timeout) as (client, transport):
            held = await open_stream(client, up.openai_base + "/chat/completions")
            with pytest.raises(httpx.PoolTimeout):
                await post(client, up)
            await held.aclose()
            up.clear_faults()
            assert (await post(client, up)).status_code == 200  # the slot came back
            assert_pool_clean(transport, 1)


# --- streaming and cancellation ---------------------------------------------------------------------


async def test_stream_chunks_arrive_before_the_response_ends() -> None:
    async with open_fake_upstream("openai") as up, h11_client() as (client, transport):
        # The fake sends 3 SSE events and then goes silent with the connection open: each one can only
        # be read here if the transport hands out chunks as they arrive instead of buffering the body.
        up.fault = Fault(stall_after_chunks=3)
        response = await open_stream(client, up.openai_base + "/chat/completions")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = b""
        raw = response.aiter_raw()
        while events.count(b"\n\n") < 3:
            with trio.fail_after(5):
                chunk = await raw.__anext__()
            assert isinstance(chunk, bytes)
            events += chunk
        assert events.count(b"data: ") == 3
        await response.aclose()
        await up.wait_disconnect()
        assert_pool_clean(transport, 100)


async def test_full_stream_then_connection_reused() -> None:
    async with open_fake_upstream("openai", chunk_delay=0.002) as up, h11_client() as (client, transport):
        for _ in range(3):
            async with client.stream("POST", up.openai_base + "/chat/completions", content=STREAM) as response:
                chunks = [chunk async for chunk in response.aiter_raw()]
            assert len(chunks) > 3  # chunked transfer, one piece per event
            assert b"".join(chunks).endswith(b"data: [DONE]\n\n")
        assert up.connections_opened == 1
        assert_pool_clean(transport, 100)


async def test_cancel_mid_stream_closes_the_upstream_connection() -> None:
    async with open_fake_upstream("openai") as up, h11_client(max_connections=1) as (client, transport):
        up.fault = Fault(stall_after_chunks=2, times=1)
        response = await open_stream(client, up.openai_base + "/chat/completions")
        raw = response.aiter_raw()
        await raw.__anext__()
        with trio.move_on_after(0.2) as scope:
            while True:  # the third chunk never comes
                await raw.__anext__()
        assert scope.cancelled_caught
        # As exchange.py does: close shielded after the cancellation.
        with trio.CancelScope(shield=True):
            await response.aclose()
        await up.wait_disconnect()
        assert up.last_request.outcome == "client_closed"
        await up.wait_for(lambda: up.active_connections == 0, what="the connection to close")
        assert_pool_clean(transport, 1)
        assert (await post(client, up)).status_code == 200
        assert up.connections_opened == 2


async def test_cancel_while_waiting_for_headers_closes_the_connection() -> None:
    async with open_fake_upstream("openai") as up, h11_client(max_connections=1) as (client, transport):
        assert (await post(client, up)).status_code == 200
        up.fault = Fault(delay_headers=30, times=1)
        with trio.move_on_after(0.2) as scope:
            await post(client, up)
        assert scope.cancelled_caught
        await up.wait_disconnect()
        assert_pool_clean(transport, 1)
        assert (await post(client, up)).status_code == 200


async def test_cancellation_at_any_point_leaves_the_pool_clean() -> None:
    """Cancel requests after many different delays (connect, send, head, body, between chunks): no
    slot may stay taken and no half-used connection may be pooled; the next request must succeed."""
    async with open_fake_upstream("openai", chunk_delay=0.001) as up, h11_client(max_connections=2) as (client, tr):
        for step in range(40):
            with trio.move_on_after(step * 0.0005):
                if step % 2:
                    await post(client, up)
                else:
                    async with client.stream("POST", up.openai_base + "/chat/completions", content=STREAM) as r:
                        async for _ in r.aiter_raw():
                            pass
            assert_pool_clean(tr, 2)
        assert (await post(client, up)).status_code == 200
        assert_pool_clean(tr, 2)


# --- faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rst", [False, True])
async def test_reset_before_headers(rst: bool) -> None:
    async with open_fake_upstream("openai") as up, h11_client() as (client, transport):
        up.fault = Fault(reset_before_headers=True, rst=rst)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await post(client, up)
        assert_pool_clean(transport, 100)


async def test_reset_before_headers_on_a_reused_connection_is_retried_once() -> None:
    async with open_fake_upstream("openai") as up, h11_client() as (client, transport):
        assert (await post(client, up)).status_code == 200
        up.fault = Fault(reset_before_headers=True, times=1)
        # Looks like a keep-alive race (closed before any response byte): one retry on a new connection.
        assert (await post(client, up)).status_code == 200
        assert up.connections_opened == 2
        # A persistent failure is not retried forever: one retry, then the error.
        up.fault = Fault(reset_before_headers=True)
        with pytest.raises(httpx.RemoteProtocolError):
            await post(client, up)
        assert up.request_count == 1 + 2 + 2  # each of the two failing sends reached the fake twice
        assert_pool_clean(transport, 100)


async def test_break_mid_body_raises_and_frees_the_slot() -> None:
    async with open_fake_upstream("openai") as up, h11_client(max_connections=1) as (client, transport):
        up.fault = Fault(break_after_chunks=2, times=1)
        response = await open_stream(client, up.openai_base + "/chat/completions")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            async for _ in response.aiter_raw():
                pass
        await response.aclose()
        assert_pool_clean(transport, 1)
        assert (await post(client, up)).status_code == 200


async def test_server_closing_an_idle_connection_is_transparent() -> None:
    async with open_fake_upstream("openai") as up, h11_client() as (client, transport):
        assert (await post(client, up)).status_code == 200
        up.drop_connections()  # e.g. the upstream's keep-alive timeout, or a restart
        await up.wait_for(lambda: up.active_connections == 0, what="the idle connection to close")
        assert (await post(client, up)).status_code == 200
        assert up.connections_opened == 2
        assert_pool_clean(transport, 100)


async def test_close_racing_the_liveness_check_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the peer's close is not yet visible at checkout, the failed reused connection is replaced."""
    async with open_fake_upstream("openai") as up, h11_client() as (client, transport):
        assert (await post(client, up)).status_code == 200
        up.drop_connections()
        await up.wait_for(lambda: up.active_connections == 0, what="the idle connection to close")
        monkeypatch.setattr(h11_transport._Connection, "looks_dead", lambda self: False)
        assert (await post(client, up)).status_code == 200
        assert up.connections_opened == 2
        assert up.request_count == 2
        assert_pool_clean(transport, 100)


async def test_connection_close_is_honoured() -> None:
    async with open_fake_upstream("openai") as up, h11_client() as (client, transport):
        for _ in range(2):
            response = await client.post(
                up.openai_base + "/chat/completions", content=CHAT, headers={"connection": "close"}
            )
            assert response.status_code == 200
        assert up.connections_opened == 2
        assert not transport._origins[(b"http", b"127.0.0.1", up.port)].idle


async def test_streamed_request_body_is_sent_chunked() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield CHAT[:10]
        yield b""
        yield CHAT[10:]

    async with open_fake_upstream("openai") as up, h11_client() as (client, transport):
        for _ in range(2):
            response = await client.post(up.openai_base + "/chat/completions", content=body())
            assert response.status_code == 200
            assert up.last_request.headers["transfer-encoding"] == "chunked"
            assert up.last_request.body == CHAT
        assert up.connections_opened == 1
        assert_pool_clean(transport, 100)


async def test_early_response_while_sending_the_body() -> None:
    """A server that answers (413) and closes before reading a big body: its response, not a WriteError."""

    async def answer_early(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(65536)
        await stream.send_all(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!"
        )
        await trio.sleep(0.1)
        stream.socket.close()  # unread body in the kernel buffer: the client gets a reset while writing

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, answer_early, listeners)
        async with h11_client() as (client, transport):
            response = await client.post(f"http://127.0.0.1:{port}/v1/files", content=b"x" * 20_000_000)
            assert response.status_code == 413
            assert response.content == b"too big!"
            assert_pool_clean(transport, 100)
            assert not transport._origins[(b"http", b"127.0.0.1", port)].idle
        nursery.cancel_scope.cancel()


async def test_connect_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    async with h11_client() as (client, transport):
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", content=CHAT)
        assert_pool_clean(transport, 100)


async def test_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never_connects(*args: Any, **kw: Any) -> None:
        await trio.sleep_forever()

    monkeypatch.setattr(h11_transport.trio, "open_tcp_stream", never_connects)
    timeout = httpx.Timeout(None, connect=0.1, pool=5.0)
    async with h11_client(timeout=timeout) as (client, transport):
        with pytest.raises(httpx.ConnectTimeout):
            await client.get("http://127.0.0.1:9/")
        assert_pool_clean(transport, 100)


async def test_aclose_closes_idle_connections() -> None:
    async with open_fake_upstream("openai") as up:
        transport = H11Transport()
        async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(post, client, up)
            assert up.active_connections >= 1
        await up.wait_for(lambda: up.active_connections == 0, what="the pooled connections to close")


# --- TLS --------------------------------------------------------------------------------------------


def client_tls(certs: CertPair) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certs.certfile)
    context.set_alpn_protocols(["http/1.1"])
    return context


@asynccontextmanager
async def tls_fake_upstream(certs: CertPair) -> AsyncIterator[FakeUpstream]:
    """The fake upstream's connection handler behind trio's TLS listener (so its counters work)."""
    up = FakeUpstream("openai")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.certfile, certs.keyfile)
    context.set_alpn_protocols(["http/1.1"])
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    up.port = listeners[0].socket.getsockname()[1]
    tls = [trio.SSLListener(listener, context, https_compatible=True) for listener in listeners]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.serve_listeners, up._handle_connection, tls))
        yield up
        nursery.cancel_scope.cancel()


async def test_tls_keep_alive_and_streaming(certs: CertPair) -> None:
    async with tls_fake_upstream(certs) as up, h11_client(ssl_context=client_tls(certs)) as (client, transport):
        base = f"https://127.0.0.1:{up.port}/v1"
        for _ in range(5):
            response = await client.post(base + "/chat/completions", content=CHAT)
            assert response.status_code == 200
            assert response.json()["object"] == "chat.completion"
        async with client.stream("POST", base + "/chat/completions", content=STREAM) as response:
            body = b"".join([chunk async for chunk in response.aiter_raw()])
        assert body.endswith(b"data: [DONE]\n\n")
        assert up.connections_opened == 1
        up.fault = Fault(stall_after_chunks=1, times=1)
        response = await open_stream(client, base + "/chat/completions")
        await response.aiter_raw().__anext__()
        await response.aclose()
        await up.wait_disconnect()  # the upstream sees an abandoned TLS response too
        assert_pool_clean(transport, 100)


async def test_tls_certificate_not_trusted_is_a_connect_error(certs: CertPair) -> None:
    async with tls_fake_upstream(certs) as up, h11_client() as (client, transport):  # certifi CAs only
        with pytest.raises(httpx.ConnectError, match="TLS handshake"):
            await client.post(f"https://127.0.0.1:{up.port}/v1/chat/completions", content=CHAT)
        assert_pool_clean(transport, 100)


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for part in (b"hello ", b"over ", scope["http_version"].encode()):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def test_tls_to_hypercorn_negotiates_http11(certs: CertPair) -> None:
    """Hypercorn offers h2 and http/1.1 over ALPN; the transport only offers http/1.1."""
    stop = trio.Event()
    settings = ServerConfig(bind="127.0.0.1:0", certfile=certs.certfile, keyfile=certs.keyfile, quic=False)
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(partial(serve, hello_app, settings, shutdown_trigger=stop.wait))
        async with h11_client(ssl_context=client_tls(certs)) as (client, transport):
            for _ in range(3):
                response = await client.get(f"https://127.0.0.1:{listening.port}/")
                assert response.text == "hello over 1.1"
            (origin,) = transport._origins.values()
            assert len(origin.idle) == 1
        stop.set()


# --- wiring -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("http2", "env", "fast"),
    [(None, None, True), (False, None, True), (True, None, False), (None, "httpcore", False), (None, "h11", True)],
)
async def test_pool_picks_the_transport(
    monkeypatch: pytest.MonkeyPatch, http2: bool | None, env: str | None, fast: bool
) -> None:
    if env is None:
        monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    else:
        monkeypatch.setenv(TRANSPORT_ENV, env)
    pool = UpstreamPool()
    upstream = pool.upstream("http://127.0.0.1:1/v1", ProviderConfig(http2=http2))
    assert isinstance(upstream.transport, H11Transport) is fast
    await pool.aclose()


def test_unknown_transport_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRANSPORT_ENV, "curl")
    with pytest.raises(ValueError, match=TRANSPORT_ENV):
        UpstreamPool()
