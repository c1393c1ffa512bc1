"""Every patch OMEN applies to hypercorn 0.18.0, in one place.

Hypercorn's trio worker runs each connection handler (and the single QUIC/UDP server task) inside the
server-wide nursery, so *any* exception escaping a connection takes the whole process down, and several
upstream bugs raise such exceptions from client-controlled input. Each patch below is a small function
whose docstring names the upstream bug and the evidence (a test in ``tests/server``). ``apply()`` installs
all of them, is idempotent, and refuses to run against another hypercorn version because most of the
patches replace private methods whose bodies are copied from 0.18.0.

Set ``OMEN_ALLOW_UNTESTED_HYPERCORN=1`` to apply them anyway (with a warning) on another version.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = [
    "HYPERCORN_VERSION",
    "PATCHES",
    "QUIC_IDLE_TIMEOUT_ATTR",
    "UntestedHypercornError",
    "applied",
    "apply",
]

HYPERCORN_VERSION = "0.18.0"
# Attribute read from hypercorn's Config by the QUIC idle-timeout patch (omen.server.serve sets it).
QUIC_IDLE_TIMEOUT_ATTR = "quic_idle_timeout"
# How long TCPServer._close waits for the send lock before giving up on the FIN: a shielded send_all to
# a peer that stopped reading can hold the lock indefinitely, and aclose() is what unblocks it.
_CLOSE_LOCK_WAIT = 1.0
# Poll interval of the QUIC drain watcher (only runs after shutdown has started).
_QUIC_DRAIN_POLL = 0.05
_MARKER = "__omen_patch__"

log = logging.getLogger("omen.server.hypercorn_patches")

_applied = False


class UntestedHypercornError(RuntimeError):
    """The installed hypercorn is not the version these patches were written and tested against."""


def _installed_version() -> str:
    try:
        return importlib.metadata.version("hypercorn")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - hypercorn is a hard dependency
        return "unknown"


def _check_version() -> None:
    version = _installed_version()
    if version == HYPERCORN_VERSION:
        return
    message = (
        f"omen.server.hypercorn_patches targets hypercorn=={HYPERCORN_VERSION} (private methods are "
        f"replaced), found {version}"
    )
    if os.environ.get("OMEN_ALLOW_UNTESTED_HYPERCORN") == "1":
        warnings.warn(message + "; applying anyway (OMEN_ALLOW_UNTESTED_HYPERCORN=1)", RuntimeWarning, 2)
        return
    raise UntestedHypercornError(message + "; pin it or set OMEN_ALLOW_UNTESTED_HYPERCORN=1")


def _replace(owner: type, name: str, factory: Callable[[Any], Any]) -> None:
    """Replace ``owner.name`` by ``factory(original)``, once (the replacement carries a marker)."""
    original = getattr(owner, name)  # AttributeError here means the upstream layout changed: refuse
    if getattr(original, _MARKER, False):
        return
    replacement = factory(original)
    setattr(replacement, _MARKER, True)
    replacement.__wrapped__ = original
    setattr(owner, name, replacement)


# --------------------------------------------------------------------------------------------------------
# (1) h2c: TCPServer._close races an in-flight send_all


def patch_tcp_close_send_eof_race() -> None:
    """``TCPServer._close`` calls ``stream.send_eof()`` without holding ``send_lock``.

    Upstream bug (hypercorn 0.18.0, trio worker, cleartext only because ``SSLStream`` has no
    ``send_eof``): while ``send_eof`` sits in its checkpoint holding trio's send-conflict detector, the h2
    send task enters ``protocol_send`` -> ``send_all`` and gets ``trio.BusyResourceError``, which
    ``protocol_send`` does not catch; it escapes the connection and kills the worker process. Trigger:
    ``h2load -D1 -c4 -m8`` against h2c (research: 50% of runs). Fix: take ``send_lock`` around
    ``send_eof`` (bounded wait, see ``_CLOSE_LOCK_WAIT``) and always ``aclose()`` the stream.
    Evidence: tests/server/test_patches.py::test_close_does_not_race_send_all and
    tests/server/test_protocols.py::test_h2c_abrupt_disconnects_do_not_kill_server.
    """
    from hypercorn.trio import tcp_server

    def factory(_original: Any) -> Any:
        async def _close(self: Any) -> None:
            try:
                lock: trio.Lock = self.send_lock
                if lock.statistics().owner is trio.lowlevel.current_task():
                    # Reached from inside protocol_send's error path: trio.Lock is not re-entrant.
                    await self.stream.send_eof()
                else:
                    with trio.move_on_after(_CLOSE_LOCK_WAIT):
                        async with lock:
                            await self.stream.send_eof()
            except (
                trio.BrokenResourceError,
                trio.BusyResourceError,
                trio.ClosedResourceError,
                AttributeError,  # SSLStream has no send_eof
            ):
                pass  # the peer is already gone, or TLS: nothing to half-close
            finally:
                await self.stream.aclose()

        return _close

    _replace(tcp_server.TCPServer, "_close", factory)


# --------------------------------------------------------------------------------------------------------
# (2) QUIC idle timeout is aioquic's 60 s default


def patch_quic_idle_timeout() -> None:
    """Hypercorn builds ``QuicConfiguration`` with aioquic's default ``idle_timeout`` of 60 s, no setting.

    A vanished h3 client (no CONNECTION_CLOSE: killed, roamed, lost network) is only noticed when the
    QUIC idle timer fires, so the gateway would keep an upstream LLM call running and billing for a
    minute. This reads ``config.quic_idle_timeout`` (set by ``omen.server.serve.hypercorn_config`` from
    ``ServerConfig.quic_idle_timeout``) into the per-socket QuicConfiguration; the effective timeout is
    the minimum of both peers' values. Evidence:
    tests/server/test_protocols.py::test_h3_vanished_client_disconnect_reaches_app.
    """
    from hypercorn.protocol import quic

    from omen.config.schema import ServerConfig

    default = ServerConfig().quic_idle_timeout

    def factory(original: Any) -> Any:
        def __init__(self: Any, app: Any, config: Any, *args: Any, **kwargs: Any) -> None:
            original(self, app, config, *args, **kwargs)
            self.quic_config.idle_timeout = float(getattr(config, QUIC_IDLE_TIMEOUT_ATTR, default))

        return __init__

    _replace(quic.QuicProtocol, "__init__", factory)


# --------------------------------------------------------------------------------------------------------
# (3) h3 stream lifecycle: resets and dead connections never reach the app


def patch_h3_stream_lifecycle() -> None:
    """``H3Protocol`` ignores ``StreamReset``, ``StopSendingReceived`` and ``ConnectionTerminated``.

    Upstream (hypercorn 0.18.0): aioquic's ``H3Connection.handle_event`` returns no HTTP event for them,
    so the ``HTTPStream`` is never closed and the app never receives ``http.disconnect`` -- not when the
    client cancels a request, and not even when the QUIC connection dies of idle timeout (so patch (2)
    alone would not help). Worse, the app's next ``send`` after a STOP_SENDING raises aioquic's
    ``RuntimeError("Cannot send data after the stream was reset")`` and after a dead connection it buffers
    unboundedly. Fix: close the affected streams (the app gets ``http.disconnect``; delivered from a
    spawned task so a full app queue cannot stall the shared UDP receive loop) and drop later sends to
    streams that are no longer tracked. Evidence:
    tests/server/test_protocols.py::test_h3_vanished_client_disconnect_reaches_app and
    ::test_h3_stream_reset_reaches_app.
    """
    from aioquic.quic.events import ConnectionTerminated, StopSendingReceived, StreamReset
    from hypercorn.protocol import h3
    from hypercorn.protocol.events import (
        Body,
        Data,
        EndBody,
        EndData,
        InformationalResponse,
        Response,
        StreamClosed,
        Trailers,
    )

    sending_events = (Response, InformationalResponse, Body, Data, EndBody, EndData, Trailers)

    def close_stream(protocol: Any, stream_id: int) -> None:
        stream = protocol.streams.pop(stream_id, None)
        if stream is not None:
            protocol.task_group.spawn(stream.handle, StreamClosed(stream_id=stream_id))

    def handle_factory(original: Any) -> Any:
        async def handle(self: Any, quic_event: Any) -> None:
            await original(self, quic_event)
            if isinstance(quic_event, (StreamReset, StopSendingReceived)):
                close_stream(self, quic_event.stream_id)
            elif isinstance(quic_event, ConnectionTerminated):
                for stream_id in list(self.streams):
                    close_stream(self, stream_id)

        return handle

    def stream_send_factory(original: Any) -> Any:
        async def stream_send(self: Any, event: Any) -> None:
            if isinstance(event, sending_events) and event.stream_id not in self.streams:
                return  # the stream was reset or its connection died: the app already got http.disconnect
            await original(self, event)

        return stream_send

    _replace(h3.H3Protocol, "handle", handle_factory)
    _replace(h3.H3Protocol, "stream_send", stream_send_factory)


# --------------------------------------------------------------------------------------------------------
# (4) data for a stream that already finished -> KeyError -> dead process


class _ClosedStream:
    """Stands in for a stream hypercorn has already forgotten: every event is ignored."""

    idle = True

    async def handle(self, event: Any) -> None:
        return None


_CLOSED_STREAM = _ClosedStream()


class _StreamTable(dict[int, Any]):
    """``dict`` whose ``[]`` returns a no-op stream for unknown ids (``in``, ``get``, ``pop`` unchanged)."""

    def __missing__(self, key: int) -> Any:
        return _CLOSED_STREAM


def patch_stream_tables() -> None:
    """``H2Protocol``/``H3Protocol`` index ``self.streams[event.stream_id]`` for DATA without a guard.

    Upstream bug hypercorn#329 (unmerged PRs #312, #334, #365): when the app answers before reading the
    whole request body (e.g. 413 for an oversized body, 401 before the upload finished), the stream is
    removed from ``self.streams`` while the client is still sending; the next DATA frame raises
    ``KeyError`` in ``_handle_events``. On the asyncio worker that drops one connection, on the trio
    worker it kills the process -- one request from any client is enough. The same pattern exists in
    ``H3Protocol.handle`` (DATA on a finished or never-created stream, e.g. during shutdown). Fix: the
    streams table returns a no-op stream for unknown ids, mirroring what upstream already does for
    ``StreamEnded``; h2 flow control is still acknowledged by the unchanged caller. Evidence:
    tests/server/test_patches.py::test_h2_data_after_early_response_keeps_server_alive and
    ::test_h3_data_after_early_response_keeps_server_alive.
    """
    from hypercorn.protocol import h2, h3

    def factory(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            self.streams = _StreamTable(self.streams)

        return __init__

    _replace(h2.H2Protocol, "__init__", factory)
    _replace(h3.H3Protocol, "__init__", factory)


def patch_h2_closed_connection_releases_senders() -> None:
    """After an h2 connection is gone, app ``send`` calls still wait on its stream buffers forever.

    Upstream (hypercorn 0.18.0): ``H2Protocol.handle(Closed())`` marks the protocol closed (its send
    task exits) and closes the streams, but not the per-stream ``StreamBuffer``s. An app blocked in
    ``send`` on a full buffer (flow control: the client stopped reading) or in the final
    ``more_body=False`` send (``drain()`` waits for the dead send task) never returns. Its task -- and
    the upstream LLM call behind it -- lives until server shutdown, which then always waits the full
    graceful_timeout. Fix: close every stream buffer on ``Closed`` (what upstream already does for a
    single stream that fails to send); the app's pending and later sends then return at once.
    Evidence: tests/server/test_patches.py::test_h2_abrupt_close_releases_blocked_app_send.
    """
    from hypercorn.events import Closed
    from hypercorn.protocol import h2

    def factory(original: Any) -> Any:
        async def handle(self: Any, event: Any) -> None:
            await original(self, event)
            if isinstance(event, Closed):
                for buffer in list(self.stream_buffers.values()):
                    await buffer.close()

        return handle

    _replace(h2.H2Protocol, "handle", factory)


# --------------------------------------------------------------------------------------------------------
# (5) connection-level firewall for TCP connections


def patch_tcp_connection_firewall() -> None:
    """Contain any non-cancellation exception escaping one TCP connection's handler.

    Upstream design (trio worker): ``TCPServer.run`` runs in the server-wide handler nursery, so a bug
    in any protocol path (patches (1) and (4) are two known ones; hypercorn issues #203, #225, #329
    report more) propagates out of ``worker_serve`` and ends the process, taking every other
    connection and stream with it. The asyncio worker logs the same errors and loses one connection;
    this gives the trio worker that behaviour: log the error with its traceback and drop only the
    connection (trio's ``serve_listeners`` closes the stream). Cancellation and KeyboardInterrupt still
    propagate. Evidence: tests/server/test_patches.py::test_tcp_connection_error_is_contained.
    """
    from hypercorn.trio import tcp_server

    def factory(original: Any) -> Any:
        async def run(self: Any) -> None:
            await _contain(original(self), self.config, "Error in HTTP connection handler; connection dropped")

        return run

    _replace(tcp_server.TCPServer, "run", factory)


async def _contain(awaitable: Awaitable[None], config: Any, message: str) -> None:
    try:
        await awaitable
    except Exception:  # includes ExceptionGroups made only of Exceptions
        await config.log.exception(message)
    except BaseExceptionGroup as group:
        fatal, errors = group.split((trio.Cancelled, KeyboardInterrupt, SystemExit, GeneratorExit))
        if errors is not None:
            await config.log.error(message, exc_info=errors)
        if fatal is not None:
            raise fatal from None


# --------------------------------------------------------------------------------------------------------
# (6) QUIC: errors in one connection, UDP send errors, and shutdown blocked in recvfrom


def patch_quic_connection_firewall() -> None:
    """Contain exceptions raised while handling one QUIC connection's events.

    Upstream design (trio worker): ``QuicProtocol._handle_events`` runs inline in the single UDP receive
    loop (and in the per-connection timer tasks) inside the server nursery, so an exception from any h3
    path ends *all* QUIC connections and the process. Fix: log it and close only that QUIC connection
    with H3_INTERNAL_ERROR. Evidence: tests/server/test_patches.py::test_quic_connection_error_is_contained.
    """
    from aioquic.h3.connection import ErrorCode
    from hypercorn.protocol import quic

    def factory(original: Any) -> Any:
        async def _handle_events(self: Any, connection: Any, client: Any = None) -> None:
            try:
                await original(self, connection, client)
            except Exception:
                await self.config.log.exception("Error in QUIC connection handler; connection closed")
                try:
                    connection.quic.close(error_code=ErrorCode.H3_INTERNAL_ERROR, reason_phrase="internal error")
                    await self.send_all(connection)
                except Exception:
                    await self.config.log.exception("Error closing a failed QUIC connection")

        return _handle_events

    _replace(quic.QuicProtocol, "_handle_events", factory)


def patch_udp_send_errors() -> None:
    """``UDPServer.protocol_send`` lets ``OSError`` from ``sendto`` escape (ENOBUFS, EPERM, ENETUNREACH...).

    Upstream (hypercorn 0.18.0, trio worker): that error ends the UDP server task and with it the
    process. UDP is lossy by design and QUIC retransmits, so a failed datagram send is dropped and logged
    at debug level instead.
    """
    from hypercorn.events import RawData
    from hypercorn.trio import udp_server

    def factory(_original: Any) -> Any:
        async def protocol_send(self: Any, event: Any) -> None:
            if isinstance(event, RawData):
                try:
                    await self.socket.sendto(event.data, event.address)
                except OSError as error:
                    log.debug("QUIC datagram to %s dropped: %s", event.address, error)

        return protocol_send

    _replace(udp_server.UDPServer, "protocol_send", factory)


def patch_udp_server_shutdown() -> None:
    """``UDPServer.run`` only re-checks its exit condition after a datagram arrives.

    Upstream (hypercorn 0.18.0): the loop is ``while not terminated or not idle: await recvfrom()``, so
    once shutdown starts an idle QUIC socket blocks in ``recvfrom`` until the server nursery's
    ``graceful_timeout`` deadline cancels it -- every shutdown takes the full graceful_timeout as soon
    as a QUIC socket is bound. Also, h3 connections without requests in flight are never closed on
    shutdown (h2 gets a GOAWAY, h11 an idle close), so they hold the drain open until their idle
    timeout. Replacement (same structure as upstream): after ``context.terminated`` a watcher closes
    QUIC connections with no request in flight (H3_NO_ERROR) and stops the receive loop as soon as no
    connection is left; requests in flight keep being served until graceful_timeout. A ``recvfrom``
    error is logged instead of ending the task. Evidence:
    tests/server/test_shutdown.py::test_shutdown_with_quic_is_not_held_by_recvfrom.
    """
    from hypercorn.events import RawData
    from hypercorn.trio import udp_server
    from hypercorn.trio.task_group import TaskGroup
    from hypercorn.typing import ConnectionState
    from hypercorn.utils import parse_socket_addr

    def factory(_original: Any) -> Any:
        async def run(self: Any, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            from hypercorn.protocol.quic import QuicProtocol  # h3 is optional in hypercorn

            task_status.started()
            server = parse_socket_addr(self.socket.family, self.socket.getsockname())
            try:
                async with TaskGroup() as task_group:
                    self.protocol = QuicProtocol(
                        self.app,
                        self.config,
                        self.context,
                        task_group,
                        ConnectionState(self.state.copy()),
                        server,
                        self.protocol_send,
                    )
                    async with trio.open_nursery() as receive_nursery:
                        receive_nursery.start_soon(_quic_drain_watcher, self, receive_nursery.cancel_scope)
                        while True:
                            try:
                                data, address = await self.socket.recvfrom(udp_server.MAX_RECV)
                            except trio.ClosedResourceError:
                                break
                            except OSError as error:
                                log.warning("QUIC recvfrom failed: %s", error)
                                await trio.sleep(0.01)  # never spin on a persistent error
                                continue
                            try:
                                await self.protocol.handle(RawData(data=data, address=address))
                            except Exception:
                                await self.config.log.exception("Error handling a QUIC datagram")
            finally:
                self.socket.close()

        return run

    _replace(udp_server.UDPServer, "run", factory)


async def _quic_drain_watcher(server: Any, receive_scope: trio.CancelScope) -> None:
    from aioquic.h3.connection import ErrorCode

    await server.context.terminated.wait()
    while True:
        protocol = server.protocol
        if protocol.idle:
            receive_scope.cancel()
            return
        try:
            # connections is keyed by every connection id, so deduplicate by identity
            for connection in {id(c): c for c in protocol.connections.values()}.values():
                if getattr(connection, "_omen_draining", False):
                    continue
                if connection.h3 is None or not connection.h3.streams:
                    connection._omen_draining = True
                    connection.quic.close(error_code=ErrorCode.H3_NO_ERROR, reason_phrase="shutting down")
                    await protocol.send_all(connection)
        except Exception:
            log.exception("Error while draining QUIC connections")
        await trio.sleep(_QUIC_DRAIN_POLL)


# --------------------------------------------------------------------------------------------------------

def patch_quic_stale_timer() -> None:
    """A QUIC timer task that wakes after its connection has ended must not crash the worker.

    Upstream: every ``_handle_events`` pass starts a task that sleeps until ``quic.get_timer()`` and
    then calls ``quic.handle_timer(now)``. If the connection reached the end of its close procedure
    meanwhile (another pass ran ``_close_end``, which sets ``_close_at = None``), aioquic's
    ``handle_timer`` evaluates ``now >= None`` -> ``TypeError``. That task runs in the server's
    nursery outside ``_handle_events`` (so the connection firewall does not cover it), and the
    exception ends the UDP server and the process. Seen in CI during an h3 stream-reset test. Fix: a
    timer for a connection that has no close deadline any more is stale and is dropped; any other
    exception from a timer is contained like ``patch_quic_connection_firewall`` does (log, close that
    connection). Evidence: tests/server/test_patches.py::test_stale_quic_timer_is_dropped.
    """
    from aioquic.h3.connection import ErrorCode
    from hypercorn.protocol import quic

    def factory(_original: Any) -> Any:
        async def _handle_timer(self: Any, timer: float, connection: Any) -> None:
            wait = max(0, timer - self.context.time())
            await self.context.sleep(wait)
            if connection.quic._close_at is None:
                return  # the connection already ended: nothing left for this timer to do
            try:
                connection.quic.handle_timer(now=self.context.time())
            except Exception:
                await self.config.log.exception("Error in QUIC timer; connection closed")
                try:
                    connection.quic.close(error_code=ErrorCode.H3_INTERNAL_ERROR, reason_phrase="internal error")
                except Exception:
                    await self.config.log.exception("Error closing a failed QUIC connection")
            await self._handle_events(connection, None)

        return _handle_timer

    _replace(quic.QuicProtocol, "_handle_timer", factory)


PATCHES: tuple[Callable[[], None], ...] = (
    patch_tcp_close_send_eof_race,
    patch_quic_idle_timeout,
    patch_h3_stream_lifecycle,
    patch_stream_tables,
    patch_h2_closed_connection_releases_senders,
    patch_tcp_connection_firewall,
    patch_quic_connection_firewall,
    patch_quic_stale_timer,
    patch_udp_send_errors,
    patch_udp_server_shutdown,
)


def apply() -> None:
    """Install every patch, then ``hypercorn_fastpath`` (idempotent).

    Raises ``UntestedHypercornError`` on another hypercorn version.
    """
    global _applied
    if _applied:
        return
    _check_version()
    for patch in PATCHES:
        patch()
    # per-request CPU cuts (not bug fixes) live in their own module; OMEN_HYPERCORN_FASTPATH=0 skips them
    from omen.server import hypercorn_fastpath

    hypercorn_fastpath.apply()
    _applied = True


def applied() -> bool:
    return _applied
