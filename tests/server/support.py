"""Test ASGI app, an in-process server runner and a subprocess server runner for tests/server."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import trio

from omen.config.schema import OmenConfig, ServerConfig
from omen.server.serve import Listening, ServerSockets, serve
from tests.server.certs import CertPair

REPO_ROOT = Path(__file__).resolve().parents[2]

Scope = dict[str, Any]


def plain_settings(**overrides: Any) -> ServerConfig:
    """Cleartext (h1 + h2c) on a kernel-chosen port."""
    return ServerConfig(**{"bind": "127.0.0.1:0", "graceful_timeout": 5, **overrides})


def tls_settings(certs: CertPair, **overrides: Any) -> ServerConfig:
    """TLS (h1 + h2 via ALPN) and QUIC (h3) on the same kernel-chosen port number."""
    defaults = {"bind": "127.0.0.1:0", "certfile": certs.certfile, "keyfile": certs.keyfile, "graceful_timeout": 5}
    return ServerConfig(**{**defaults, **overrides})


def client_ssl_context(certs: CertPair) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certs.certfile)


def sse_data(body: bytes) -> list[str]:
    return [line[len("data: ") :] for line in body.decode().split("\n") if line.startswith("data: ")]


def sse_event(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


class TestApp:
    """Small ASGI app with lifespan; ``disconnects`` records ``http.disconnect`` per ``/hold?id=``."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.disconnects: dict[str, trio.Event] = {}
        self.finished: dict[str, trio.Event] = {}
        self.lifespan: list[str] = []

    def disconnect_event(self, key: str) -> trio.Event:
        return self.disconnects.setdefault(key, trio.Event())

    def finished_event(self, key: str) -> trio.Event:
        return self.finished.setdefault(key, trio.Event())

    async def __call__(self, scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        path = scope["path"]
        if path == "/":
            await self._json(send, 200, {"http_version": scope["http_version"], "pid": os.getpid()})
        elif path == "/sse":
            await self._sse(send, int(query.get("n", "5")), float(query.get("d", "0.01")))
        elif path == "/echo":
            size = 0
            while True:
                message = await receive()
                size += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
            await self._json(send, 200, {"bytes": size})
        elif path == "/early":
            # answers without reading the request body (like a 413 for an oversized upload)
            await self._json(send, 413, {"error": "too large"})
        elif path == "/hold":
            await self._hold(receive, send, query["id"])
        elif path == "/blast":
            await self._blast(send, query["id"], int(query.get("chunks", "100")))
        elif path == "/disconnected":
            await self._json(send, 200, {"disconnected": self.disconnect_event(query["id"]).is_set()})
        else:
            await self._json(send, 404, {"error": "not found"})

    async def _lifespan(self, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.lifespan.append("startup")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.lifespan.append("shutdown")
                # visible to subprocess tests: the lifespan shutdown ran after the drain
                sys.stderr.write(json.dumps({"event": "test_app_lifespan_shutdown", "pid": os.getpid()}) + "\n")
                sys.stderr.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _json(send: Callable[..., Any], status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _sse(send: Callable[..., Any], count: int, delay: float) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index in range(count):
            await send({"type": "http.response.body", "body": sse_event(str(index)), "more_body": True})
            await trio.sleep(delay)
        await send({"type": "http.response.body", "body": sse_event("[DONE]")})

    async def _blast(self, send: Callable[..., Any], key: str, chunks: int) -> None:
        """64 KiB chunks as fast as flow control allows, never looking at receive(); records completion."""
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(chunks):
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            self.finished_event(key).set()

    async def _hold(self, receive: Callable[..., Any], send: Callable[..., Any], key: str) -> None:
        """Stream a tick every 100 ms until the client disconnects (the app must be told)."""
        event = self.disconnect_event(key)
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def watch_disconnect(cancel_scope: trio.CancelScope) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            event.set()
            cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, nursery.cancel_scope)
            tick = 0
            while True:
                await send({"type": "http.response.body", "body": sse_event(f"tick {tick}"), "more_body": True})
                tick += 1
                await trio.sleep(0.1)


def create_app(config: OmenConfig) -> TestApp:
    """App factory for ``omen.server.serve.run(config, app_factory=...)`` in subprocess tests."""
    return TestApp()


def create_failing_app(config: OmenConfig) -> TestApp:
    """An app factory that always fails (a worker that can never start)."""
    raise RuntimeError("simulated startup failure")


# --------------------------------------------------------------------------------------------------------
# in-process server


@dataclass
class RunningServer:
    listening: Listening
    app: TestApp
    settings: ServerConfig
    stop_event: trio.Event
    done: trio.Event

    @property
    def port(self) -> int:
        return self.listening.port

    def url(self, path: str = "/", *, tls: bool | None = None) -> str:
        secure = self.settings.certfile is not None if tls is None else tls
        return f"{'https' if secure else 'http'}://127.0.0.1:{self.port}{path}"

    async def stop(self) -> None:
        self.stop_event.set()
        await self.done.wait()


@asynccontextmanager
async def running_server(
    settings: ServerConfig, *, app: TestApp | None = None, sockets: ServerSockets | None = None
) -> AsyncIterator[RunningServer]:
    """``omen.server.serve.serve`` in a nursery; stopped gracefully (bounded) when the block exits."""
    app = app or TestApp()
    stop_event, done = trio.Event(), trio.Event()

    async def runner(task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await serve(app, settings, shutdown_trigger=stop_event.wait, sockets=sockets, task_status=task_status)
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            listening = await nursery.start(runner)
        server = RunningServer(listening, app, settings, stop_event, done)
        try:
            yield server
        finally:
            stop_event.set()
            with trio.move_on_after(settings.graceful_timeout + 10):
                await done.wait()
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------------------------------------
# subprocess server


@dataclass
class ServerProcess:
    """A server subprocess whose stderr JSON lines are collected (and waited for) in the background."""

    process: trio.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    raw_lines: list[str] = field(default_factory=list)
    eof: bool = False
    _changed: trio.Event = field(default_factory=trio.Event)

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        buffer = b""
        async for chunk in self.process.stderr:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode("utf-8", "replace")
                self.raw_lines.append(text)
                try:
                    record = json.loads(text)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    self.events.append(record)
            self._notify()
        self.eof = True
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, count: int = 1, timeout: float = 30
    ) -> list[dict[str, Any]]:
        """The first ``count`` logged events matching ``predicate`` (fails after ``timeout`` seconds)."""
        with trio.fail_after(timeout):
            while True:
                matches = [event for event in self.events if predicate(event)]
                if len(matches) >= count:
                    return matches[:count]
                if self.eof:
                    raise AssertionError("server output ended before the expected log line:\n" + self.log_tail())
                await self._changed.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.raw_lines[-lines:])

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait_exit(self, timeout: float) -> int:
        with trio.fail_after(timeout):
            return await self.process.wait()


@asynccontextmanager
async def server_process(
    config: OmenConfig, *, app_factory: str | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[ServerProcess]:
    """``python -m tests.server.serve_script <config>``: the real ``omen.server.serve.run`` path."""
    command = [sys.executable, "-m", "tests.server.serve_script", json.dumps(_to_builtins(config))]
    if app_factory is not None:
        command.append(app_factory)
    process = await trio.lowlevel.open_process(
        command, stderr=subprocess.PIPE, cwd=REPO_ROOT, env={**os.environ, **(env or {})}
    )
    server = ServerProcess(process)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server._read_stderr)
        try:
            yield server
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
                _kill_workers(server)
            with trio.move_on_after(10):
                await process.wait()
            nursery.cancel_scope.cancel()


def _kill_workers(server: ServerProcess) -> None:
    # a SIGKILLed supervisor cannot forward anything; workers would drain on their own (parent
    # watcher) but the test should not leave them behind
    for event in server.events:
        if event.get("event") == "worker_spawned":
            try:
                os.kill(int(event["worker_pid"]), signal.SIGKILL)
            except (ProcessLookupError, KeyError, ValueError):
                pass


def _to_builtins(config: OmenConfig) -> Any:
    import msgspec

    return msgspec.to_builtins(config)
