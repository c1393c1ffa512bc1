"""Real sockets against ``omen.server.serve.serve``: h1, h2c, h2 over TLS (ALPN) and h3, JSON and SSE."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest
import trio

from tests.clients.h3 import H3Client, h3_request, run_asyncio, subprocess_command
from tests.server.certs import CertPair
from tests.server.support import (
    REPO_ROOT,
    client_ssl_context,
    plain_settings,
    running_server,
    sse_data,
    tls_settings,
)

SSE_EVENTS = [str(i) for i in range(5)] + ["[DONE]"]


async def check_json_and_sse(client: httpx.AsyncClient, base: str, http_version: str, scope_version: str) -> None:
    response = await client.get(base + "/")
    assert response.status_code == 200
    assert response.http_version == http_version
    assert response.json()["http_version"] == scope_version
    # hypercorn's own "server: hypercorn-*" header is disabled (the app sets its own if it wants one)
    assert "server" not in response.headers

    chunks: list[bytes] = []
    async with client.stream("GET", base + "/sse?n=5&d=0.05") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"] == "text/event-stream"
        async for chunk in stream.aiter_raw():
            chunks.append(chunk)
    assert sse_data(b"".join(chunks)) == SSE_EVENTS
    # events are flushed one by one, not buffered until the end
    assert len(chunks) >= 3


async def test_h1_json_and_sse() -> None:
    async with running_server(plain_settings()) as server, httpx.AsyncClient(http1=True, http2=False) as client:
        await check_json_and_sse(client, server.url(""), "HTTP/1.1", "1.1")


async def test_h2c_prior_knowledge_json_and_sse() -> None:
    async with running_server(plain_settings()) as server, httpx.AsyncClient(http1=False, http2=True) as client:
        await check_json_and_sse(client, server.url(""), "HTTP/2", "2")


def _h2c_upgrade_get(port: int) -> tuple[bytes, bytes]:
    """HTTP/1.1 request with ``Upgrade: h2c``; returns (status line, body of the h2 stream 1)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(5)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = client.initiate_upgrade_connection()
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(65536)
        assert data
        head += data
    status_line, _, rest = head.partition(b"\r\n")
    rest = rest.partition(b"\r\n\r\n")[2]
    sock.sendall(client.data_to_send())  # client preface + SETTINGS
    body = b""
    while True:
        for event in client.receive_data(rest):
            if isinstance(event, h2.events.DataReceived) and event.stream_id == 1:
                body += event.data
            if isinstance(event, h2.events.StreamEnded) and event.stream_id == 1:
                sock.close()
                return status_line, body
        sock.sendall(client.data_to_send())
        rest = sock.recv(65536)
        assert rest


async def test_h2c_upgrade_header() -> None:
    async with running_server(plain_settings()) as server:
        status_line, body = await trio.to_thread.run_sync(_h2c_upgrade_get, server.port)
        assert status_line.startswith(b"HTTP/1.1 101")
        assert json.loads(body)["http_version"] == "2"


async def test_h2_over_tls_alpn_json_sse_and_alt_svc(certs: CertPair) -> None:
    async with running_server(tls_settings(certs)) as server:
        assert server.listening.quic_port == server.port  # HTTP/3 on the same port number over UDP
        async with httpx.AsyncClient(http2=True, verify=client_ssl_context(certs)) as client:
            await check_json_and_sse(client, server.url(""), "HTTP/2", "2")
            response = await client.get(server.url("/"))
            assert response.headers.get_list("alt-svc") == [f'h3=":{server.port}"; ma=3600']


async def test_h1_over_tls_advertises_h3(certs: CertPair) -> None:
    async with (
        running_server(tls_settings(certs)) as server,
        httpx.AsyncClient(http1=True, http2=False, verify=client_ssl_context(certs)) as client,
    ):
        await check_json_and_sse(client, server.url(""), "HTTP/1.1", "1.1")
        response = await client.get(server.url("/"))
        assert response.headers.get_list("alt-svc") == [f'h3=":{server.port}"; ma=3600']


async def test_tls_without_quic_has_no_alt_svc(certs: CertPair) -> None:
    async with running_server(tls_settings(certs, quic=False)) as server:
        assert server.listening.quic == ()
        async with httpx.AsyncClient(http2=True, verify=client_ssl_context(certs)) as client:
            response = await client.get(server.url("/"))
            assert response.status_code == 200
            assert "alt-svc" not in response.headers


async def test_h3_json_and_sse(certs: CertPair) -> None:
    async with running_server(tls_settings(certs)) as server:
        response = await h3_request(server.url("/"), verify=certs.certfile)
        assert response.status == 200
        assert json.loads(response.body)["http_version"] == "3"
        assert response.header("server") is None

        stream = await h3_request(server.url("/sse?n=5&d=0.05"), verify=certs.certfile)
        assert stream.status == 200
        assert stream.header("content-type") == "text/event-stream"
        assert sse_data(stream.body) == SSE_EVENTS
        assert len(stream.chunks) >= 3  # one DATA frame per event, flushed as sent


# ---- robustness: abrupt disconnects and vanished clients


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) not installed")
async def test_h2c_abrupt_disconnects_do_not_kill_server() -> None:
    """Regression for the TCPServer._close send_eof race (research: worker died in ~50% of runs)."""
    async with running_server(plain_settings()) as server:
        for _ in range(4):
            # -D: stop after a duration, closing TCP with streams still in flight
            await trio.run_process(
                ["h2load", "-D", "1", "-c", "4", "-m", "8", server.url("/")],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            assert (await client.get(server.url("/"))).status_code == 200


def _h2_open_streams_then_reset(port: int, streams: int) -> None:
    """Raw h2c client: many streaming requests, read a little, then close with RST (SO_LINGER 0)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    for index in range(streams):
        stream_id = 1 + 2 * index
        headers = [(":method", "GET"), (":path", "/sse?n=200&d=0"), (":scheme", "http"), (":authority", "x")]
        connection.send_headers(stream_id, headers, end_stream=True)
    sock.sendall(connection.data_to_send())
    sock.settimeout(2)
    received = 0
    while received < 4096:
        data = sock.recv(65536)
        if not data:
            break
        received += len(data)
    sock.close()


async def test_h2c_raw_abrupt_close_mid_stream_keeps_serving() -> None:
    async with running_server(plain_settings()) as server:
        for _ in range(15):
            await trio.to_thread.run_sync(_h2_open_streams_then_reset, server.port, 20)
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            assert (await client.get(server.url("/"))).status_code == 200


async def test_h1_client_abandoning_a_stream_reaches_app() -> None:
    async with running_server(plain_settings()) as server, httpx.AsyncClient(http1=True, http2=False) as client:
        async with client.stream("GET", server.url("/hold?id=abandon-h1")) as stream:
            async for _ in stream.aiter_raw():
                break  # leaving the block with the body unread closes the connection
        with trio.fail_after(10):
            await server.app.disconnect_event("abandon-h1").wait()


def _h2_read_then_rst_stream(port: int, path: str, disconnected: Callable[[], bool]) -> bool:
    """Raw h2c: GET ``path``, read the first DATA frame, RST_STREAM(CANCEL); returns whether
    ``disconnected()`` became true while the connection was still open."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(5)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    headers = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "x")]
    client.send_headers(1, headers, end_stream=True)
    sock.sendall(client.data_to_send())
    while not any(isinstance(event, h2.events.DataReceived) for event in client.receive_data(sock.recv(65536))):
        pass
    client.reset_stream(1, error_code=h2.errors.ErrorCodes.CANCEL)
    sock.sendall(client.data_to_send())
    # ping round trip: the server has processed the RST_STREAM before we close the connection
    client.ping(b"12345678")
    sock.sendall(client.data_to_send())
    while not any(isinstance(event, h2.events.PingAckReceived) for event in client.receive_data(sock.recv(65536))):
        pass
    deadline = time.monotonic() + 10
    while not (seen := disconnected()) and time.monotonic() < deadline:
        time.sleep(0.02)
    sock.close()
    return seen


async def test_h2_stream_reset_reaches_app() -> None:
    """RST_STREAM on a live h2c connection becomes http.disconnect for that stream's app.

    (httpx/httpcore 1.0.9 does *not* send RST_STREAM when a response is closed early -- the server
    keeps streaming until flow control stops it -- hence the raw client.)
    """
    async with running_server(plain_settings()) as server:
        event = server.app.disconnect_event("reset-h2")

        def disconnected() -> bool:
            return trio.from_thread.run_sync(event.is_set)

        assert await trio.to_thread.run_sync(_h2_read_then_rst_stream, server.port, "/hold?id=reset-h2", disconnected)


async def test_h3_vanished_client_disconnect_reaches_app(certs: CertPair) -> None:
    """A killed h3 client (no CONNECTION_CLOSE) is noticed after quic_idle_timeout, not aioquic's 60 s."""
    async with running_server(tls_settings(certs, quic_idle_timeout=1.0)) as server:
        command = subprocess_command(server.url("/hold?id=vanish"))
        process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, cwd=REPO_ROOT)
        assert process.stdout is not None
        try:
            with trio.fail_after(20):
                buffer = b""
                while b'"chunk"' not in buffer:
                    data = await process.stdout.receive_some()
                    assert data, "h3 client exited before the first chunk"
                    buffer += data
        finally:
            process.kill()  # SIGKILL: the client cannot send CONNECTION_CLOSE
            await process.wait()
        assert not server.app.disconnect_event("vanish").is_set()
        # generous guard, far below aioquic's 60 s default that hypercorn would use unpatched
        with trio.fail_after(15):
            await server.app.disconnect_event("vanish").wait()


async def test_h3_stream_reset_reaches_app(certs: CertPair) -> None:
    """A client cancelling one request (RESET_STREAM + STOP_SENDING) on a live connection."""
    async with running_server(tls_settings(certs)) as server:

        async def scenario() -> tuple[bool, int]:
            import asyncio

            async with H3Client(server.url("/")) as client:
                cancelled = await client.request("/hold?id=reset", reset_after_chunks=2)
                assert not cancelled.complete
                for _ in range(100):  # the same connection keeps working
                    response = await client.request("/disconnected?id=reset")
                    if json.loads(response.body)["disconnected"]:
                        return True, response.status
                    await asyncio.sleep(0.05)
                return False, 0

        with trio.fail_after(30):
            disconnected, status = await run_asyncio(scenario)
        assert disconnected
        assert status == 200
