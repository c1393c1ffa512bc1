"""Run the gateway on hypercorn's trio worker, in-process.

One listening TCP socket speaks HTTP/1.1 and h2c (prior knowledge and ``Upgrade: h2c``); with
``certfile``/``keyfile`` it speaks TLS with ALPN ``h2``/``http/1.1`` instead, and (``quic = true``) a UDP
socket on the same port number serves HTTP/3, advertised with ``alt-svc: h3=":<port>"`` on every
TLS response. We bind the sockets ourselves (so port 0 works, the UDP port matches the TCP one, and the
launcher can use ``SO_REUSEPORT``) and hand them to hypercorn's trio ``worker_serve``, the function
behind ``hypercorn.trio.serve`` that accepts pre-bound sockets.

``run(config)`` is what ``omen serve`` calls: one process, or ``omen.server.launcher`` when
``server.workers > 1``.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from omen.server import hypercorn_patches
from omen.server.access_log import describe_exception, log_event

if TYPE_CHECKING:
    from hypercorn.config import Config

    from omen.config.schema import OmenConfig, ServerConfig

__all__ = [
    "DEFAULT_APP_FACTORY",
    "Listening",
    "ServerSockets",
    "bind_sockets",
    "hypercorn_config",
    "load_app_factory",
    "parse_bind",
    "run",
    "serve",
    "serve_with_signals",
]

DEFAULT_APP_FACTORY = "omen.server.app:create_app"
# hypercorn closes a keep-alive connection after keep_alive_max_requests (default 1000); clients then
# pay a new TCP/TLS handshake for nothing. h11 compares with >=, h2 with >: sys.maxsize never trips.
UNLIMITED_KEEP_ALIVE_REQUESTS = sys.maxsize
# hypercorn's default of 60 s lets a client that never finishes the TLS handshake hold a connection.
SSL_HANDSHAKE_TIMEOUT = 10.0
LISTEN_BACKLOG = 2048
# How often a launcher child checks that its parent is still alive.
_PARENT_POLL = 1.0

log = logging.getLogger("omen.server")

ASGIApp = Callable[..., Awaitable[None]]


# --------------------------------------------------------------------------------------------------------
# sockets


def parse_bind(bind: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> ``(host, port)``."""
    host, sep, port_text = bind.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"server.bind must be 'host:port' or '[ipv6]:port', got {bind!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"IPv6 addresses in server.bind need brackets: '[{host}]:{port_text}'")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port out of range in server.bind: {bind!r}")
    return host, port


def format_bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tls_enabled(settings: ServerConfig) -> bool:
    if (settings.certfile is None) != (settings.keyfile is None):
        raise ValueError("server.certfile and server.keyfile must be set together")
    return settings.certfile is not None


def quic_enabled(settings: ServerConfig) -> bool:
    # QUIC mandates TLS 1.3: hypercorn (and we) only offer HTTP/3 when a certificate is configured.
    return tls_enabled(settings) and settings.quic


@dataclass
class ServerSockets:
    """Pre-bound sockets for ``serve()``; ``serve()`` closes them when it returns."""

    tcp: list[socket.socket]
    quic: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        for sock in (*self.tcp, *self.quic):
            sock.close()


def _new_socket(host: str, port: int, kind: socket.SocketKind, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # one socket per worker process: the kernel spreads TCP connections over them and hashes
            # each UDP 4-tuple to one socket, so a QUIC connection stays with one process
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_sockets(settings: ServerConfig, *, reuse_port: bool = False, listen: bool = True) -> ServerSockets:
    """Bind the TCP socket for ``settings.bind`` and, with TLS + QUIC, a UDP socket on the same port.

    With port 0 the kernel picks the TCP port and the UDP socket is bound to the same number (retrying
    if that UDP port happens to be taken), so alt-svc ``h3=":<port>"`` names the port the client used.
    """
    host, port = parse_bind(settings.bind)
    want_quic = quic_enabled(settings)
    attempts = 20 if port == 0 else 1
    for attempt in range(attempts):
        tcp = _new_socket(host, port, socket.SOCK_STREAM, reuse_port=reuse_port)
        try:
            quic: list[socket.socket] = []
            if want_quic:
                actual_port = tcp.getsockname()[1]
                try:
                    quic.append(_new_socket(host, actual_port, socket.SOCK_DGRAM, reuse_port=reuse_port))
                except OSError as error:
                    if error.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                        tcp.close()
                        continue
                    raise
            if listen:
                tcp.listen(LISTEN_BACKLOG)
            return ServerSockets(tcp=[tcp], quic=quic)
        except BaseException:
            tcp.close()
            raise
    raise OSError(errno.EADDRINUSE, "no port free for both TCP and UDP")  # pragma: no cover


# --------------------------------------------------------------------------------------------------------
# hypercorn config


class _JsonLineFormatter(logging.Formatter):
    """hypercorn's error log as the same one-JSON-object-per-line shape as the rest of OMEN's stderr."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": "server_log",
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (pytest and daemons swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _error_logger(level: str) -> logging.Logger:
    logger = logging.getLogger("omen.server.hypercorn")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(_JsonLineFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())
    return logger


def hypercorn_config(settings: ServerConfig, *, sockets: ServerSockets | None = None) -> Config:
    """The hypercorn ``Config`` for ``settings``.

    With ``sockets`` the binds are ``fd://`` references to them (informational: ``serve()`` passes the
    socket objects themselves) and the alt-svc header is derived from the bound UDP port; without, the
    binds are ``settings.bind`` (TCP, and UDP for QUIC) and hypercorn derives alt-svc when it binds.
    """
    from hypercorn.config import Config

    tls = tls_enabled(settings)
    quic = quic_enabled(settings)
    config = Config()
    config.workers = 1  # multi-process is omen.server.launcher, never hypercorn's own --workers
    config.worker_class = "trio"
    if sockets is not None:
        config.bind = [f"fd://{sock.fileno()}" for sock in sockets.tcp]
        config.quic_bind = [f"fd://{sock.fileno()}" for sock in sockets.quic] if quic else []
        if quic and sockets.quic:
            ports = sorted({sock.getsockname()[1] for sock in sockets.quic})
            config.alt_svc_headers = [f'h3=":{port}"; ma=3600' for port in ports]
    else:
        config.bind = [settings.bind]
        config.quic_bind = [settings.bind] if quic else []
    config.insecure_bind = []
    if tls:
        config.certfile = settings.certfile
        config.keyfile = settings.keyfile
        config.alpn_protocols = ["h2", "http/1.1"]
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.keep_alive_max_requests = UNLIMITED_KEEP_ALIVE_REQUESTS
    config.graceful_timeout = settings.graceful_timeout
    config.ssl_handshake_timeout = SSL_HANDSHAKE_TIMEOUT
    config.backlog = LISTEN_BACKLOG
    # OMEN writes its own access log (omen.server.access_log); hypercorn's would duplicate every line.
    config.accesslog = None
    config.errorlog = _error_logger(settings.log_level)
    config.loglevel = settings.log_level.upper()
    # Without this every response would carry "server: hypercorn-h11" next to any server header the
    # app sets itself.
    config.include_server_header = False
    setattr(config, hypercorn_patches.QUIC_IDLE_TIMEOUT_ATTR, settings.quic_idle_timeout)
    return config


# --------------------------------------------------------------------------------------------------------
# serve


@dataclass(frozen=True)
class Listening:
    """What ``serve()`` reports through ``task_status.started()`` once the server accepts connections."""

    urls: tuple[str, ...]  # as hypercorn reports them, e.g. ("https://127.0.0.1:8443",)
    tcp: tuple[tuple[str, int], ...]
    quic: tuple[tuple[str, int], ...]

    @property
    def port(self) -> int:
        return self.tcp[0][1]

    @property
    def quic_port(self) -> int | None:
        return self.quic[0][1] if self.quic else None


class _StartedAdapter:
    """Turns hypercorn's ``task_status.started(binds)`` into ``started(Listening)`` for our caller."""

    def __init__(self, outer: trio.TaskStatus[Listening], sockets: ServerSockets) -> None:
        self._outer = outer
        self._tcp = tuple(_address(sock) for sock in sockets.tcp)
        self._quic = tuple(_address(sock) for sock in sockets.quic)

    def started(self, value: Any = None) -> None:
        listening = Listening(urls=tuple(value or ()), tcp=self._tcp, quic=self._quic)
        log_event("listening", urls=listening.urls, port=listening.port, quic_port=listening.quic_port)
        self._outer.started(listening)


def _address(sock: socket.socket) -> tuple[str, int]:
    name = sock.getsockname()
    return (name[0], name[1])


async def serve(
    app: ASGIApp,
    settings: ServerConfig,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    sockets: ServerSockets | None = None,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown_trigger()`` returns, then drain.

    Applies ``hypercorn_patches``, binds (unless ``sockets`` are given; ``serve`` takes ownership of
    them and closes them on return), runs the ASGI lifespan startup, then calls
    ``task_status.started(Listening(...))`` once listening. When the trigger returns: the listeners are
    closed (new connections are refused), idle keep-alive connections are closed, h2 connections refuse
    new streams and get GOAWAY once their streams finish, QUIC connections without a request in flight
    are closed, in-flight requests and streams get up to ``settings.graceful_timeout`` to finish and are
    then cancelled, and the lifespan shutdown runs.
    """
    from hypercorn.config import Sockets
    from hypercorn.trio.run import worker_serve
    from hypercorn.utils import wrap_app

    hypercorn_patches.apply()
    if sockets is None:
        sockets = bind_sockets(settings)
    try:
        if sockets.quic and not quic_enabled(settings):
            raise ValueError("QUIC sockets given but TLS or server.quic is not configured")
        for sock in sockets.tcp:
            # hypercorn only calls listen() on sockets it creates itself; harmless if already listening
            sock.listen(LISTEN_BACKLOG)
        config = hypercorn_config(settings, sockets=sockets)
        hypercorn_sockets = Sockets(
            secure_sockets=list(sockets.tcp) if config.ssl_enabled else [],
            insecure_sockets=[] if config.ssl_enabled else list(sockets.tcp),
            quic_sockets=list(sockets.quic),
        )
        await worker_serve(
            wrap_app(app, config.wsgi_max_body_size, "asgi"),
            config,
            sockets=hypercorn_sockets,
            shutdown_trigger=shutdown_trigger,
            task_status=_StartedAdapter(task_status, sockets),  # type: ignore[arg-type]
        )
    finally:
        sockets.close()


async def _watch_signals(signals: AsyncIterator[int], stop: trio.Event, hard_stop: trio.CancelScope) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if not stop.is_set():
            log_event("shutdown", signal=name, mode="graceful")
            stop.set()
        elif signum == signal.SIGINT:
            # a second Ctrl-C is a human insisting; a repeated SIGTERM is usually a wrapper (timeout,
            # a shell, a process-group kill) delivering the same request twice and must not cut streams
            log_event("shutdown", signal=name, mode="immediate")
            hard_stop.cancel()
            return
        else:
            log_event("shutdown", signal=name, mode="already_draining")


async def _watch_parent(parent_pid: int, stop: trio.Event) -> None:
    # A launcher child must not outlive its supervisor (e.g. the supervisor was SIGKILLed): when we are
    # re-parented, drain and exit like on SIGTERM.
    while os.getppid() == parent_pid:
        await trio.sleep(_PARENT_POLL)
    log_event("shutdown", reason="parent_exited", mode="graceful")
    stop.set()


async def serve_with_signals(
    app: ASGIApp,
    settings: ServerConfig,
    *,
    sockets: ServerSockets | None = None,
    signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
    parent_pid: int | None = None,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> int:
    """``serve()`` until one of ``signals`` arrives, then drain; a second SIGINT stops immediately.

    Returns the process exit code: 0 for a stop by signal (drained or not). Must run in the main thread.
    """
    stop = trio.Event()
    with trio.open_signal_receiver(*signals) as signal_receiver:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signal_receiver, stop, nursery.cancel_scope)
            if parent_pid is not None:
                nursery.start_soon(_watch_parent, parent_pid, stop)
            await serve(app, settings, shutdown_trigger=stop.wait, sockets=sockets, task_status=task_status)
            nursery.cancel_scope.cancel()
    return 0


def load_app_factory(spec: str) -> Callable[[OmenConfig], ASGIApp]:
    """``"package.module:function"`` -> the function (the launcher passes factories by name to children)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"app factory must be 'module:function', got {spec!r}")
    factory = getattr(importlib.import_module(module_name), attribute)
    if not callable(factory):
        raise TypeError(f"{spec} is not callable")
    return factory  # type: ignore[no-any-return]


async def _run_single(config: OmenConfig, app_factory: str) -> int:
    app = load_app_factory(app_factory)(config)
    return await serve_with_signals(app, config.server)


def run(config: OmenConfig, *, app_factory: str = DEFAULT_APP_FACTORY) -> int:
    """Entry point of ``omen serve``: serve until SIGTERM/SIGINT and return the exit code.

    ``server.workers > 1`` runs ``omen.server.launcher`` (N processes with their own ``SO_REUSEPORT``
    sockets, supervised and respawned). ``app_factory`` names ``create_app(config) -> ASGI app``; it is
    a string so worker processes can import it themselves.
    """
    try:
        if config.server.workers > 1:
            from omen.server.launcher import run_workers

            return run_workers(config, app_factory=app_factory)
        return trio.run(_run_single, config, app_factory)
    except Exception as error:  # bind error, lifespan startup failure, bad certificate...
        log_event("server_failed", level="error", error=describe_exception(error))
        log.debug("server failed", exc_info=True)
        return 1


# --------------------------------------------------------------------------------------------------------
# small helpers shared with the launcher




