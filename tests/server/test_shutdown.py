"""Graceful shutdown: the real ``run()`` path in a subprocess (signals) and in-process QUIC drains."""

from __future__ import annotations

import asyncio
import signal

import httpx
import trio

from omen.config.schema import OmenConfig, ServerConfig
from tests.clients.h3 import H3Client, H3Response, run_asyncio
from tests.server.certs import CertPair
from tests.server.support import ServerProcess, running_server, server_process, sse_data, tls_settings


async def _listening_port(process: ServerProcess) -> int:
    [listening] = await process.wait_for(lambda event: event.get("event") == "listening")
    return int(listening["port"])


async def _refuses_connections(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return True
    await stream.aclose()
    return False


async def test_sigterm_drains_sse_stream_then_exits_zero() -> None:
    config = OmenConfig(server=ServerConfig(bind="127.0.0.1:0", graceful_timeout=10))
    async with server_process(config) as process:
        port = await _listening_port(process)
        body = b""
        async with (
            httpx.AsyncClient() as client,
            client.stream("GET", f"http://127.0.0.1:{port}/sse?n=15&d=0.1") as stream,
        ):
            chunks = stream.aiter_raw()
            body += await chunks.__anext__()
            process.send_signal(signal.SIGTERM)
            await process.wait_for(lambda event: event.get("event") == "shutdown")
            # a repeated SIGTERM (wrappers often deliver it twice) must not cut the stream
            process.send_signal(signal.SIGTERM)
            await process.wait_for(lambda event: event.get("mode") == "already_draining")
            # stop accepting: the listening socket is closed while the stream keeps going
            with trio.fail_after(10):
                while not await _refuses_connections(port):
                    await trio.sleep(0.05)
            async for chunk in chunks:
                body += chunk
        assert sse_data(body) == [str(i) for i in range(15)] + ["[DONE]"]
        assert await process.wait_exit(timeout=30) == 0
        # the ASGI lifespan shutdown ran after the drain
        await process.wait_for(lambda event: event.get("event") == "test_app_lifespan_shutdown")


async def test_stream_longer_than_graceful_timeout_is_cut_and_exit_is_zero() -> None:
    config = OmenConfig(server=ServerConfig(bind="127.0.0.1:0", graceful_timeout=1))
    async with server_process(config) as process:
        port = await _listening_port(process)
        body = b""
        async with httpx.AsyncClient() as client:
            try:
                async with client.stream("GET", f"http://127.0.0.1:{port}/sse?n=2000&d=0.05") as stream:
                    chunks = stream.aiter_raw()
                    body += await chunks.__anext__()
                    process.send_signal(signal.SIGTERM)
                    with trio.fail_after(30):
                        async for chunk in chunks:
                            body += chunk
            except httpx.TransportError:
                pass  # cut mid-body: the chunked message is incomplete
        events = sse_data(body)
        assert events[0] == "0"
        assert "[DONE]" not in events
        assert await process.wait_exit(timeout=30) == 0


async def test_sigint_stops_an_idle_server_with_exit_zero() -> None:
    config = OmenConfig(server=ServerConfig(bind="127.0.0.1:0", graceful_timeout=10))
    async with server_process(config) as process:
        await _listening_port(process)
        process.send_signal(signal.SIGINT)
        assert await process.wait_exit(timeout=30) == 0


async def test_shutdown_with_quic_is_not_held_by_recvfrom(certs: CertPair) -> None:
    """With a QUIC socket bound, an idle server stops without waiting for graceful_timeout (60 s here);
    an idle, still-open h3 connection is closed by the server with H3_NO_ERROR."""
    async with running_server(tls_settings(certs, graceful_timeout=60)) as server:
        requested = trio.Event()
        outcome: dict[str, object] = {}

        async def scenario() -> None:
            async with H3Client(server.url("/")) as client:
                outcome["status"] = (await client.request("/")).status
                trio.from_thread.run_sync(requested.set)
                terminated = await client.wait_closed_by_server(timeout=30)
                outcome["close_code"] = terminated.error_code if terminated else None

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_asyncio, lambda: scenario())
            with trio.fail_after(15):
                await requested.wait()
            # a generous guard far below graceful_timeout: unpatched, recvfrom holds shutdown for 60 s
            with trio.fail_after(20):
                await server.stop()
        assert outcome == {"status": 200, "close_code": 0x100}


async def test_h3_stream_in_flight_completes_during_shutdown(certs: CertPair) -> None:
    async with running_server(tls_settings(certs, graceful_timeout=10)) as server:
        first_chunk = trio.Event()
        result: list[H3Response] = []

        async def scenario() -> None:
            async with asyncio.timeout(30), H3Client(server.url("/")) as client:
                response = await client.request(
                    "/sse?n=10&d=0.1",
                    on_chunk=lambda _: trio.from_thread.run_sync(first_chunk.set),
                )
                result.append(response)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_asyncio, lambda: scenario())
            with trio.fail_after(15):
                await first_chunk.wait()
            with trio.fail_after(20):
                await server.stop()
        [response] = result
        assert response.complete
        assert sse_data(response.body) == [str(i) for i in range(10)] + ["[DONE]"]
