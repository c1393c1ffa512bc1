"""``server.workers > 1``: per-process SO_REUSEPORT workers, supervision, respawn and drain."""

from __future__ import annotations

import json
import os
import signal

import httpx
import trio

from omen.config.schema import OmenConfig
from omen.server.serve import parse_bind
from tests.clients.h3 import h3_request
from tests.server.certs import CertPair
from tests.server.support import ServerProcess, client_ssl_context, plain_settings, server_process, tls_settings


def _is(name: str):  # type: ignore[no-untyped-def]
    return lambda event: event.get("event") == name


async def _pids_serving(base: str, certs: CertPair, *, requests: int, want: set[int] | None = None) -> set[int]:
    """PIDs answering ``requests`` fresh TLS connections (stops early once ``want`` is covered)."""
    served: set[int] = set()
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection (new 4-tuple) per request
    async with httpx.AsyncClient(verify=client_ssl_context(certs), limits=limits) as client:
        for _ in range(requests):
            response = await client.get(base + "/")
            assert response.status_code == 200
            served.add(response.json()["pid"])
            if want is not None and want <= served:
                break
    return served


async def _ready_pids(process: ServerProcess, count: int) -> list[int]:
    events = await process.wait_for(_is("worker_ready"), count=count, timeout=60)
    return [int(event["worker_pid"]) for event in events]


async def test_two_workers_share_the_port_respawn_and_drain(certs: CertPair) -> None:
    config = OmenConfig(server=tls_settings(certs, workers=2, graceful_timeout=5))
    async with server_process(config) as process:
        [start] = await process.wait_for(_is("supervisor_start"))
        port = parse_bind(start["bind"])[1]
        assert port != 0  # port 0 was resolved once so every worker binds the same port
        base = f"https://127.0.0.1:{port}"
        workers = set(await _ready_pids(process, 2))
        assert len(workers) == 2

        # TCP connections are spread over both processes by the kernel (SO_REUSEPORT group)
        assert await _pids_serving(base, certs, requests=60, want=workers) == workers

        # HTTP/3: every datagram of a QUIC connection reaches the same process (hypercorn's own
        # --workers shares one UDP socket and loses connections here)
        h3_pids = set()
        for _ in range(8):
            response = await h3_request(base + "/", timeout=10)
            assert response.status == 200
            h3_pids.add(json.loads(response.body)["pid"])
        assert h3_pids <= workers

        # a worker crash is not the supervisor's death: it is logged and the worker respawned
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        [died] = await process.wait_for(lambda e: e.get("event") == "worker_died" and e["worker_pid"] == victim)
        assert died["exitcode"] == -signal.SIGKILL
        assert died["level"] == "error"
        replacement = (await _ready_pids(process, 3))[2]
        assert replacement not in workers
        survivors = (workers - {victim}) | {replacement}
        assert await _pids_serving(base, certs, requests=60, want=survivors) == survivors
        assert process.process.returncode is None

        process.send_signal(signal.SIGTERM)
        assert await process.wait_exit(timeout=30) == 0
        stopped = await process.wait_for(_is("worker_stopped"), count=2)
        assert {event["exitcode"] for event in stopped} == {0}
        [exit_line] = await process.wait_for(_is("supervisor_exit"))
        assert exit_line["exitcode"] == 0


async def test_supervisor_gives_up_on_workers_that_never_start(certs: CertPair) -> None:
    config = OmenConfig(server=tls_settings(certs, workers=2, graceful_timeout=5))
    async with server_process(
        config, app_factory="tests.server.support:create_failing_app", env={"OMEN_TEST_BACKOFF": "0.02"}
    ) as process:
        assert await process.wait_exit(timeout=60) == 1
        await process.wait_for(_is("worker_giving_up"))
        failures = [e for e in process.events if e.get("event") == "worker_failed"]
        assert failures and "simulated startup failure" in failures[0]["error"]
        assert not [e for e in process.events if e.get("event") == "worker_ready"]


async def test_sigterm_reaches_every_worker_while_streaming(certs: CertPair) -> None:
    """Each worker drains its own streams (hypercorn's --workers terminate()d the others)."""
    config = OmenConfig(server=tls_settings(certs, workers=2, graceful_timeout=10))
    async with server_process(config) as process:
        [start] = await process.wait_for(_is("supervisor_start"))
        base = f"https://127.0.0.1:{parse_bind(start['bind'])[1]}"
        await _ready_pids(process, 2)
        limits = httpx.Limits(max_keepalive_connections=0)
        bodies: list[bytes] = []
        first_chunks = trio.Semaphore(0)

        async def stream_one(client: httpx.AsyncClient) -> None:
            body = b""
            async with client.stream("GET", base + "/sse?n=12&d=0.1") as response:
                async for chunk in response.aiter_raw():
                    if not body:
                        first_chunks.release()
                    body += chunk
            bodies.append(body)

        async with (
            httpx.AsyncClient(verify=client_ssl_context(certs), limits=limits) as client,
            trio.open_nursery() as nursery,
        ):
            for _ in range(6):  # spread over both workers with overwhelming probability
                nursery.start_soon(stream_one, client)
            with trio.fail_after(20):
                for _ in range(6):
                    await first_chunks.acquire()
            process.send_signal(signal.SIGTERM)
        assert len(bodies) == 6
        assert all(body.endswith(b"data: [DONE]\n\n") for body in bodies)
        assert await process.wait_exit(timeout=30) == 0


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan's reaper may be slow or absent)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_workers_do_not_outlive_a_killed_supervisor() -> None:
    config = OmenConfig(server=plain_settings(workers=2, graceful_timeout=5))
    async with server_process(config) as process:
        workers = await _ready_pids(process, 2)
        process.send_signal(signal.SIGKILL)  # no chance to forward anything
        await process.wait_exit(timeout=10)
        with trio.fail_after(20):
            while any(_running(pid) for pid in workers):
                await trio.sleep(0.1)
        events = await process.wait_for(lambda e: e.get("reason") == "parent_exited", count=2)
        assert {event["pid"] for event in events} == set(workers)
