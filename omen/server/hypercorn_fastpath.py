"""Per-request CPU cuts for hypercorn 0.18.0's trio worker (HTTP/1.1 and the TCP transport).

``omen.server.hypercorn_patches`` fixes bugs; this module only makes the trio worker cheaper per request
and per message, without changing what goes on the wire or what the ASGI app sees. It is applied by
``hypercorn_patches.apply()`` (after the bug fixes, on the same pinned hypercorn version). Each patch is a
function whose docstring says what it changes, why that is safe, the profile figure it removes and the
A/B gain measured with ``bench/hypercorn_ab.py`` (figures and commands: ``bench/HYPERCORN.md``); the
behaviour it must keep is pinned by ``tests/server/test_fastpath.py``.

``OMEN_HYPERCORN_FASTPATH=0`` disables all of them (for A/B measurements and as an escape hatch);
``OMEN_HYPERCORN_FASTPATH=idle_timer,read_loop`` enables only the named ones. Unset or ``1``: all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from http import HTTPStatus
from math import inf
from typing import Any

import trio

__all__ = ["ENV_SWITCH", "PATCHES", "applied", "apply", "selected"]

ENV_SWITCH = "OMEN_HYPERCORN_FASTPATH"
_MARKER = "__omen_fastpath__"

log = logging.getLogger("omen.server.hypercorn_fastpath")

_applied: tuple[str, ...] | None = None


def _wrap(owner: type, name: str, patch: str, factory: Callable[[Any], Any]) -> None:
    """Replace ``owner.name`` by ``factory(current)``; the replacement records the patch name so that
    applying the same patch twice is a no-op while different patches may stack on one method."""
    current = getattr(owner, name)  # AttributeError: the upstream layout changed, refuse
    function = current
    while function is not None:
        if getattr(function, _MARKER, None) == patch:
            return
        function = getattr(function, "__wrapped__", None)
    replacement = factory(current)
    setattr(replacement, _MARKER, patch)
    replacement.__wrapped__ = current
    setattr(owner, name, replacement)


_direct_io = False  # set by patch_direct_io


def _plain_tcp(stream: Any) -> bool:
    """True if ``stream``'s bytes may bypass trio's stream layers: the ``direct_io`` patch is on and it
    is a cleartext ``trio.SocketStream`` on a POSIX fd (TLS streams keep trio's generic code path)."""
    return _direct_io and type(stream) is trio.SocketStream and os.name == "posix"


# --------------------------------------------------------------------------------------------------------
# (a) keep-alive idle timer: one long-lived task per connection instead of one new task per request


class IdleTimer:
    """Drop-in for ``TCPServer.idle_task`` (a ``TrioSingleTask``) with the same observable behaviour.

    Upstream restarts the idle-timeout task on every request: ``stop()`` cancels it when a request
    starts and ``restart()`` takes a ``trio.Lock`` and ``nursery.start()``s a new task when the
    connection is idle again. Here ``restart()``/``stop()`` only record the state (two attribute
    writes, no checkpoint) and one watcher task per connection sleeps until the *earliest* moment the
    connection could have been idle for ``keep_alive_timeout``; when it wakes it re-reads the state
    and either closes the connection (idle long enough, or idle after shutdown began) or goes back to
    sleep until the new earliest moment. The deadline never lies after the true expiry (a new idle
    period always ends later than any earlier one), so idle connections are closed exactly when
    upstream would close them, and a connection that became busy in the meantime is never closed.
    """

    __slots__ = ("_closed", "_idle", "_idle_since", "_running", "_scope", "_server")

    def __init__(self, server: Any) -> None:
        self._server = server
        self._idle = False
        self._idle_since = 0.0
        self._running = False
        self._closed = False
        self._scope: trio.CancelScope | None = None

    async def restart(self, task_group: Any, action: Callable[[], Any]) -> None:
        # ``action`` is always ``server._idle_timeout`` (the only caller is TCPServer); the watcher
        # runs its logic, made deadline-based.
        self._idle = True
        self._idle_since = trio.current_time()
        if not self._running:
            if not self._closed:
                self._running = True
                task_group.spawn(self._watch)
        elif self._scope is not None and self._server.context.terminated.is_set():
            self._scope.deadline = -inf  # shutting down: an idle connection closes now, like upstream

    async def stop(self) -> None:
        self._idle = False

    def close(self) -> None:
        """The connection's reader is done: nothing left to time out (the asyncio worker's behaviour)."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()

    async def _watch(self) -> None:
        server = self._server
        timeout = server.config.keep_alive_timeout
        terminated = server.context.terminated
        deadline = self._idle_since + timeout
        while True:
            with trio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                if terminated.is_set():
                    await trio.sleep_forever()  # only the deadline (or restart() above) wakes us
                else:
                    await terminated.wait()
            self._scope = None
            if self._closed:
                return
            if self._idle:
                expiry = self._idle_since + timeout
                if terminated.is_set() or trio.current_time() >= expiry:
                    break
                deadline = expiry
            else:
                deadline = trio.current_time() + timeout  # busy: look again one timeout later
        with trio.CancelScope(shield=True):
            await server._initiate_server_close()  # upstream _idle_timeout's tail


def patch_idle_timer() -> None:
    """Replace the per-request restart of the keep-alive idle-timeout task by a moving deadline.

    Upstream (``TCPServer.protocol_send(Updated)`` -> ``TrioSingleTask.restart``): every request
    costs a lock round trip, a cancelled task and a ``nursery.start()`` of a new one (py-spy:
    ``restart`` + ``stop`` + the task itself ~19% of the worker's CPU with a trivial app).
    ``IdleTimer`` keeps one watcher task per connection (see its docstring). Safe because the close
    decision is made by the watcher from the current state when it wakes, so it cannot close a busy
    connection, and it wakes no later than upstream's task would have fired. Shutdown is unchanged:
    an idle connection is closed as soon as ``context.terminated`` is set, a busy one when it next
    becomes idle. The watcher also stops when the reader ends; upstream's idle task kept a closed
    connection's task group (and its memory) alive until ``keep_alive_timeout`` expired.
    Measured (leave-one-out, server CPU per request, minimal app): 489 -> 297 us (1.65x).
    Evidence: tests/server/test_fastpath.py (idle close, keep-alive reuse, shutdown of idle and busy
    connections, no lingering after the client closed).
    """
    from hypercorn.trio import tcp_server

    def init_factory(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            self.idle_task = IdleTimer(self)

        return __init__

    def read_factory(original: Any) -> Any:
        async def _read_data(self: Any) -> None:
            try:
                await original(self)
            finally:
                idle_task = self.idle_task
                if isinstance(idle_task, IdleTimer):
                    idle_task.close()

        return _read_data

    _wrap(tcp_server.TCPServer, "__init__", "idle_timer", init_factory)
    _wrap(tcp_server.TCPServer, "_read_data", "idle_timer", read_factory)


# --------------------------------------------------------------------------------------------------------
# (d) read loop without a per-receive cancel scope


def patch_read_loop() -> None:
    """``TCPServer._read_data`` without a ``fail_after(inf)`` cancel scope around every receive.

    Upstream enters ``trio.fail_after(config.read_timeout or inf)`` around every ``receive_some``; with
    no read timeout (hypercorn's and OMEN's default) that scope can never fire but costs a scope
    enter/exit (and a clock read) per read. Bytes, checkpoints, end-of-stream and error handling
    (``Closed`` is handed to the protocol once the peer or the server closes) are upstream's loop's;
    with ``read_timeout`` set, upstream's code runs unchanged. With ``direct_io`` the receive itself
    is the trio socket's ``recv`` on cleartext TCP. Measured (leave-one-out, with direct_io's read
    half): 314 -> 281 us CPU per request (1.12x), none for SSE (nothing to read). Evidence: every
    h1/h2c test in tests/server reads through it; test_fastpath.py covers pipelining, peer close and
    reset.
    """
    from hypercorn.events import Closed, RawData
    from hypercorn.trio import tcp_server

    max_recv = tcp_server.MAX_RECV

    def factory(original: Any) -> Any:
        async def _read_data(self: Any) -> None:
            if self.config.read_timeout:
                await original(self)
                return
            stream = self.stream
            handle = self.protocol.handle
            if _plain_tcp(stream):
                recv = stream.socket.recv  # what SocketStream.receive_some calls, minus its error wrapper
                while True:
                    try:
                        data = await recv(max_recv)
                    except (trio.ClosedResourceError, OSError):  # SocketStream: Closed/BrokenResourceError
                        break
                    await handle(RawData(data))
                    if data == b"":
                        break
            else:
                receive = stream.receive_some
                while True:
                    try:
                        data = await receive(max_recv)
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        break
                    await handle(RawData(bytes(data)))
                    if data == b"":
                        break
            await handle(Closed())

        return _read_data

    _wrap(tcp_server.TCPServer, "_read_data", "read_loop", factory)


# --------------------------------------------------------------------------------------------------------
# (b) send path: no lock round trip when uncontended, no empty sends


def patch_send_path() -> None:
    """``TCPServer.protocol_send(RawData)`` without the per-message lock checkpoint and empty sends.

    Upstream, per message: ``async with send_lock`` (a schedule point even when nobody else holds
    it), then a shielded ``send_all`` -- also for h11's empty ``EndOfMessage`` of every Content-Length
    response. Here empty data is not sent at all (there is nothing to send; a dead peer is noticed by
    the next real send or by the reader, as upstream notices it on its next send), but it stays a
    cancellation point: a sender whose scope was cancelled meanwhile gets ``Cancelled`` there, as
    upstream's lock acquire raised it. That matters: the next checkpoint after h11's
    ``EndOfMessage`` is the ``http.disconnect`` put inside ``_maybe_recycle``, and ``Cancelled``
    there would leave the keep-alive connection stuck. The lock is taken with ``acquire_nowait``
    when free and waited for otherwise, so writers stay serialised in call order (h2's send task vs
    stream senders, ``_close``'s ``send_eof`` in hypercorn_patches), and a cancelled sender still
    raises ``Cancelled`` before writing anything (``checkpoint_if_cancelled``, what the lock's
    acquire did); each message keeps a full checkpoint. Write errors are handled as upstream: the
    protocol gets ``Closed``. With ``direct_io`` the write itself is an ``os.write`` on
    cleartext TCP (see ``patch_direct_io``). Measured (leave-one-out, which also removes
    direct_io's write): 419 -> 291 us CPU per request (1.44x), 61 -> 25 us per SSE chunk (2.5x); of
    that, direct_io alone accounts for 1.14x / 2.34x. Evidence: tests/server/test_fastpath.py (SSE
    flushed per event, disconnects, resets, the race with ``_close``) and every h1/h2c/h2 test in
    tests/server.
    """
    from hypercorn.events import Closed, RawData, Updated
    from hypercorn.trio import tcp_server

    checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
    cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint
    gone = (trio.BrokenResourceError, trio.ClosedResourceError)

    async def _send_shielded(self: Any, data: Any) -> None:
        try:
            with trio.CancelScope(shield=True):
                await self.stream.send_all(data)
        except gone:
            await self.protocol.handle(Closed())

    def factory(_original: Any) -> Any:
        async def protocol_send(self: Any, event: Any) -> None:
            if isinstance(event, RawData):
                await checkpoint_if_cancelled()
                data = event.data
                if not data:
                    return
                lock: trio.Lock = self.send_lock
                if lock.locked():
                    await lock.acquire()
                else:
                    lock.acquire_nowait()
                try:
                    stream = self.stream
                    if not _plain_tcp(stream):
                        await _send_shielded(self, data)
                        return
                    fd = stream.socket.fileno()
                    try:
                        sent = os.write(fd, data) if fd != -1 else -1
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        sent = -1
                    if sent < 0:
                        await self.protocol.handle(Closed())
                    elif sent < len(data):
                        await _send_shielded(self, memoryview(data)[sent:])
                    else:
                        await cancel_shielded_checkpoint()
                finally:
                    lock.release()
            elif isinstance(event, Closed):
                await self._close()
                await self.protocol.handle(Closed())
            elif isinstance(event, Updated):
                if event.idle:
                    await self.idle_task.restart(self._task_group, self._idle_timeout)
                else:
                    await self.idle_task.stop()

        return protocol_send

    _wrap(tcp_server.TCPServer, "protocol_send", "send_path", factory)


# --------------------------------------------------------------------------------------------------------
# (d) direct non-blocking socket I/O on cleartext TCP


def patch_direct_io() -> None:
    """On cleartext TCP, ``send_path`` writes with ``os.write`` on the socket's non-blocking fd and
    ``read_loop`` receives with the trio socket's ``recv``, instead of going through ``SocketStream``.

    What this removes is mostly not trio's stream layers but upstream's shielded ``CancelScope``
    around every ``send_all``. Micro-benchmark (bench/HYPERCORN.md): upstream's lock + shield +
    ``send_all`` ~60 us per small send, without the lock ~45 us, a plain ``send_all`` ~27 us, this
    path ~23 us. The shield is what keeps a cancelled sender from leaving part of a message on the
    wire (h11's state machine has already counted those bytes as sent), so it cannot simply go; and
    trio's own ``socket.send`` waits for writability cancellably. A direct non-blocking write needs
    neither: it completes synchronously, so no cancellation can interrupt it; a write the kernel takes
    whole is followed by a cancel-shielded schedule point (each message still yields), and only a
    partial write (socket buffer full) hands the rest to the shielded ``send_all``, exactly as
    upstream. A failed write hands ``Closed`` to the protocol, as upstream's ``send_all`` error does.
    The fd is read from the socket at every call (-1 once trio closed it) and never kept. Reads have
    no such constraint and use trio's public ``socket.recv`` (same checkpoint, same errors as
    ``receive_some`` minus its exception translation). TLS streams and non-POSIX systems keep trio's
    path. Needs ``send_path`` / ``read_loop`` to have any effect. Measured (leave-one-out): 310 ->
    273 us CPU per request (1.14x), 57.6 -> 24.6 us per SSE chunk (2.34x). Evidence:
    tests/server/test_fastpath.py (large bodies through a full socket buffer, a cancelled sender
    still writing its whole message, resets, pipelining) and every cleartext test in tests/server.
    """
    global _direct_io
    _direct_io = True


# --------------------------------------------------------------------------------------------------------
# (b) h11: the head of a response with a declared length goes out with its body, in one write

# Above this body size the head is written on its own rather than copied in front of the body.
_COALESCE_MAX_BODY = 64 * 1024


def patch_coalesce_response() -> None:
    """HTTP/1.1: hold the head of a response that declares ``content-length`` until its first body
    message, then write head and body together.

    Upstream writes the status line and headers as soon as the app sends ``http.response.start``, then
    the body with ``http.response.body``: two writes (two syscalls, two checkpoints) for every
    ordinary JSON response. The ASGI spec allows exactly this deferral ("protocol servers need not
    flush the data generated by this event to the send buffer until the first Response Body event is
    processed"). It is applied only when the app declared the length, i.e. has the complete body in
    hand and sends it next; streaming responses (SSE, chunked: no ``content-length``) keep their head
    written immediately, so time-to-headers of a stream is unchanged. Everything else is upstream's
    ``H11Protocol.stream_send``: h11 produces and validates the same bytes in the same order (the
    head is generated -- and h11's state advanced -- at ``http.response.start`` as before; only the
    write is deferred). A held head is written before anything else the stream sends, including when
    the app ends without a body (the stream's close), so no response loses its head; it is dropped
    only if the connection is already gone. HTTP/2 and HTTP/3 do not use this code. Measured: one
    write syscall per JSON response instead of two (strace); leave-one-out 308 -> 271 us CPU per
    request (1.14x), no effect on SSE. Evidence: tests/server/test_fastpath.py (one write per JSON
    response, byte-identical to upstream's; SSE head before the first event; app ending after start
    without a body).
    """
    import h11
    from hypercorn.events import RawData
    from hypercorn.protocol import h11 as h11_protocol
    from hypercorn.protocol.events import (
        Body,
        Data,
        EndBody,
        EndData,
        InformationalResponse,
        Response,
        StreamClosed,
    )

    h11_protocol.H11Protocol._omen_head = None  # a held response head (bytes) or None

    phrases: dict[int, bytes] = {}

    def _reason_phrase(status: int) -> bytes:
        """The standard reason phrase: upstream sends none (``HTTP/1.1 200 ``), which is valid HTTP but
        refused by some clients (h2load's HTTP/1.1 parser counts every such response as failed)."""
        phrase = phrases.get(status)
        if phrase is None:
            try:
                phrase = HTTPStatus(status).phrase.encode()
            except ValueError:
                phrase = b""
            phrases[status] = phrase
        return phrase

    def h11_bytes(self: Any, event: Any) -> bytes | None:
        """``_send_h11_event`` without the send: None where upstream swallows the protocol error."""
        try:
            return self.connection.send(event)  # type: ignore[no-any-return]
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return None

    async def write(self: Any, data: bytes | None) -> None:
        """Send ``data`` (even empty: every upstream send is a cancellation point) after any held head."""
        head = self._omen_head
        if head is not None:
            self._omen_head = None
            if data is not None and len(data) <= _COALESCE_MAX_BODY:
                data = head + data
            else:
                await self.send(RawData(data=head))
        if data is not None:
            await self.send(RawData(data=data))

    def factory(_original: Any) -> Any:
        async def stream_send(self: Any, event: Any) -> None:
            if isinstance(event, Response):
                if event.status_code >= 200:
                    headers = [*event.headers, *self.config.response_headers("h11")]
                    if self.keep_alive_requests >= self.config.keep_alive_max_requests:
                        headers.append((b"connection", b"close"))
                    response = h11.Response(
                        headers=headers, status_code=event.status_code, reason=_reason_phrase(event.status_code)
                    )
                    data = h11_bytes(self, response)
                    if data is not None and any(name == b"content-length" for name, _ in response.headers):
                        self._omen_head = data  # (nothing can be held already: h11 allows one head)
                    else:
                        await write(self, data)
                else:
                    response = h11.InformationalResponse(
                        headers=[*event.headers, *self.config.response_headers("h11")],
                        status_code=event.status_code,
                    )
                    await write(self, h11_bytes(self, response))
            elif isinstance(event, InformationalResponse):
                pass  # Ignore for HTTP/1
            elif isinstance(event, Body):
                await write(self, h11_bytes(self, h11.Data(data=event.data)))
            elif isinstance(event, EndBody):
                await write(self, h11_bytes(self, h11.EndOfMessage()))
            elif isinstance(event, Data):
                await write(self, event.data)
            elif isinstance(event, EndData):
                pass
            elif isinstance(event, StreamClosed):
                await write(self, None)  # an app that ended after start without a body
                await self._maybe_recycle()

        return stream_send

    _wrap(h11_protocol.H11Protocol, "stream_send", "coalesce_response", factory)


# --------------------------------------------------------------------------------------------------------
# (f) disconnect signal: a callback instead of a watcher task per request


class DisconnectSignal:
    """Fired when hypercorn reports the client gone (``http.disconnect`` put into the app's queue).

    Exposed to the app as the ASGI scope extension ``omen.disconnect``. Subscribers are plain callbacks
    run in hypercorn's protocol task (e.g. ``CancelScope.cancel``), so an app needs no task of its own
    blocked in ``receive()`` just to notice a disconnect."""

    __slots__ = ("_callbacks", "fired")

    def __init__(self) -> None:
        self.fired = False
        self._callbacks: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def fire(self) -> None:
        self.fired = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


DISCONNECT_EXTENSION = "omen.disconnect"


def patch_disconnect_signal() -> None:
    """``TaskGroup.spawn_app``: put a :class:`DisconnectSignal` in the scope's extensions and fire it
    when hypercorn puts ``http.disconnect`` into the app's queue (h11, h2 and h3 all go through here).

    Why: to cancel an upstream call when its client leaves, the app otherwise runs a second task per
    request blocked in ``receive()`` inside a nursery (spawn, cancel, join: extra scheduler passes on
    every request). Safe: the message is still queued as before, so ``receive()`` keeps its ASGI
    meaning; apps that ignore the extension see no change."""
    from hypercorn.trio.task_group import TaskGroup

    def factory(original: Any) -> Any:
        async def spawn_app(self: Any, app: Any, config: Any, scope: Any, send: Any) -> Any:
            signal = DisconnectSignal()
            scope.setdefault("extensions", {})[DISCONNECT_EXTENSION] = signal
            put = await original(self, app, config, scope, send)

            async def app_put(message: Any) -> None:
                if message["type"] == "http.disconnect":
                    signal.fire()
                await put(message)

            return app_put

        return spawn_app

    _wrap(TaskGroup, "spawn_app", "disconnect_signal", factory)


# --------------------------------------------------------------------------------------------------------

PATCHES: dict[str, Callable[[], None]] = {
    "idle_timer": patch_idle_timer,
    "read_loop": patch_read_loop,
    "send_path": patch_send_path,
    "coalesce_response": patch_coalesce_response,
    "direct_io": patch_direct_io,
    "disconnect_signal": patch_disconnect_signal,
}
# read_loop replaces _read_data; idle_timer wraps whatever _read_data is: apply read_loop first.
_ORDER = ("read_loop", "idle_timer", "send_path", "coalesce_response", "direct_io", "disconnect_signal")


def selected(value: str | None = None) -> tuple[str, ...]:
    """The patches ``OMEN_HYPERCORN_FASTPATH`` asks for: unset/``1``/``all`` -> all, ``0`` -> none,
    otherwise a comma-separated list of names from ``PATCHES``."""
    if value is None:
        value = os.environ.get(ENV_SWITCH, "1")
    value = value.strip().lower()
    if value in ("", "1", "all", "true", "on", "yes"):
        return tuple(name for name in _ORDER if name in PATCHES)
    if value in ("0", "none", "false", "off", "no"):
        return ()
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = names - PATCHES.keys()
    if unknown:
        raise ValueError(f"{ENV_SWITCH}: unknown patch(es) {sorted(unknown)}; known: {sorted(PATCHES)}")
    return tuple(name for name in _ORDER if name in names)


def apply() -> tuple[str, ...]:
    """Install the selected patches once per process (idempotent); returns the names installed.

    Called by ``hypercorn_patches.apply()``, which has already checked the hypercorn version.
    """
    global _applied
    if _applied is None:
        names = selected()
        for name in names:
            PATCHES[name]()
        _applied = names
        log.debug("hypercorn fast path: %s", ", ".join(names) or "off")
    return _applied


def applied() -> tuple[str, ...] | None:
    """The patch names installed by ``apply()``, or None before it ran."""
    return _applied
