"""A lean HTTP/1.1 transport for httpx, built directly on trio streams + h11.

httpx's default transport (httpcore) costs about 0.7-1 ms of CPU per request on trio, and more with
concurrency: for every request ``AsyncConnectionPool._assign_requests_to_connections`` walks every
pooled connection (a poll syscall each) under a pool-wide lock, and several stream wrapper layers sit
between the socket and the caller. This transport keeps httpx's client API (``build_request`` /
``send(stream=True)`` / ``aiter_raw`` / ``aclose``, exceptions, timeouts) and replaces what is under it:

* **Pool**: per (scheme, host, port) a LIFO deque of idle connections; checkout and checkin are O(1).
  Only the connection actually picked is checked for liveness (idle age, then a zero-timeout poll on its
  socket: an idle HTTP/1.1 connection that is readable was closed by the peer or is out of sync).
  LIFO hands out the warmest connection and lets the coldest ones age out at the left end.
* **Limit**: ``max_connections`` per origin, a ``trio.Semaphore`` held from checkout until the response
  is closed (or fully read). Idle connections are only created by requests that held a slot and a new
  connection is only opened when no idle one exists, so open connections never exceed the limit.
  Waiting for a slot is bounded by httpx's ``pool`` timeout (:class:`httpx.PoolTimeout`).
* **Stale connections**: a reused connection that fails before any response byte arrived (the peer
  closed it while idle, racing our check) is retried once on a fresh connection. A server cannot have
  acted on a request whose bytes it never fully read, and one that closes a kept-alive connection
  without a single response byte is, in practice, a keep-alive timeout race; a fresh connection never
  retries. Bodies that are not replayable (streams, not bytes) are only retried if nothing was sent.
* **Responses stream**: the body is an :class:`httpx.AsyncByteStream` yielding each chunk as it comes
  off the socket (chunked, content-length or close-delimited; h11 does the framing). A connection goes
  back to the pool only when h11 says both sides finished the exchange cleanly; any other close shuts
  the socket at once, so the upstream *sees* an abandoned response (OMEN stops upstream generation
  that way).
* **Cancellation**: every state change that matters (return to pool, close, slot release) is
  synchronous, so a trio ``Cancelled`` arriving at any await cannot leave a half-used connection in the
  pool or a slot taken: the connection in hand is closed on any exception, and an open response owns
  its connection until it is closed.
* **Errors** come out as httpx's own exceptions (ConnectError, ConnectTimeout, PoolTimeout, ReadError,
  WriteError, RemoteProtocolError, ReadTimeout/WriteTimeout when those timeouts are set), so code
  written against httpx's default transport keeps working.

TLS uses ``trio.SSLStream`` with a certifi-based default context offering only ``http/1.1`` over ALPN.
HTTP/2, proxies and Expect/100-continue bodies are out of scope: use httpx's default transport for them.
"""

from __future__ import annotations

import math
import select
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import certifi
import h11
import httpx
import trio

RECV_SIZE = 65536
_NETWORK_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_DEFAULT_PORTS = {b"http": 80, b"https": 443}


def default_ssl_context() -> ssl.SSLContext:
    """Verifying context with certifi's CA bundle, offering only HTTP/1.1 over ALPN."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


if hasattr(select, "poll"):

    def _fd_readable(fd: int) -> bool:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))  # POLLHUP / POLLERR are reported too

else:  # pragma: no cover - Windows

    def _fd_readable(fd: int) -> bool:
        return bool(select.select([fd], [], [], 0)[0])


class _Connection:
    """One HTTP/1.1 connection: the trio stream, its socket (for sync close / liveness) and h11 state."""

    __slots__ = ("h11", "idle_since", "reused", "sock", "stream")

    def __init__(self, stream: trio.abc.Stream, sock: trio.socket.SocketType) -> None:
        self.stream = stream
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT)
        self.reused = False
        self.idle_since = 0.0

    def close(self) -> None:
        # Synchronous on purpose: it cannot be interrupted by a cancellation, and closing the socket
        # (trio wakes any task blocked on it) makes the peer see FIN/RST right away. TLS close_notify is
        # skipped; an HTTP/1.1 peer does not need it to know a connection is gone.
        self.sock.close()

    def looks_dead(self) -> bool:
        """An idle connection must have nothing to read; readable means EOF, RST or stray bytes."""
        fd = self.sock.fileno()
        return fd < 0 or _fd_readable(fd)


class _Origin:
    """Idle connections and the connection limit of one (scheme, host, port)."""

    __slots__ = ("closed", "expiry", "host", "idle", "port", "slots", "tls")

    def __init__(self, host: str, port: int, tls: bool, max_connections: int, expiry: float) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.expiry = expiry
        self.idle: deque[_Connection] = deque()
        self.slots = trio.Semaphore(max_connections)
        self.closed = False

    async def acquire(self, timeout: float | None, request: httpx.Request) -> None:
        try:
            self.slots.acquire_nowait()  # the common case costs no scheduler round trip
            return
        except trio.WouldBlock:
            pass
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await self.slots.acquire()
            return
        raise httpx.PoolTimeout(f"no free connection to {self.host}:{self.port} within {timeout}s", request=request)

    def checkout(self) -> _Connection | None:
        idle = self.idle
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since > self.expiry or conn.looks_dead():
                conn.close()
                continue
            conn.reused = True
            return conn
        return None

    def finish(self, conn: _Connection) -> None:
        """Back to the pool if the exchange completed cleanly, otherwise close; releases the slot."""
        try:
            h = conn.h11
            if (
                not self.closed
                and h.our_state is h11.DONE
                and h.their_state is h11.DONE
                and h.trailing_data == (b"", False)  # stray bytes or EOF after the response: not reusable
            ):
                h.start_next_cycle()
                now = conn.idle_since = time.monotonic()
                idle = self.idle
                idle.append(conn)
                # The oldest idle connections sit at the left (LIFO use): expire them here, O(1) amortised.
                while now - idle[0].idle_since > self.expiry:
                    idle.popleft().close()
            else:
                conn.close()
        finally:
            self.slots.release()

    def close_idle(self) -> None:
        self.closed = True
        while self.idle:
            self.idle.pop().close()


class _Stale(Exception):
    """A reused connection failed before any response byte: the caller may retry on a fresh one."""

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(str(error))
        self.error = error


class H11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive transport on trio + h11. See the module docstring.

    ``max_connections`` applies per (scheme, host, port); OMEN uses one client per upstream base URL,
    so it is the connection limit of that upstream. ``ssl_context`` is used as given (default:
    :func:`default_ssl_context`, made on first TLS use).
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._origins: dict[tuple[bytes, bytes, int | None], _Origin] = {}

    # --- the httpx transport API ------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.raw_scheme, url.raw_host, url.port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._new_origin(*key)
        timeouts: dict[str, float | None] = request.extensions.get("timeout") or {}
        await origin.acquire(timeouts.get("pool"), request)
        try:
            return await self._send(origin, request, timeouts)
        except BaseException:
            origin.slots.release()  # on success the response stream owns the slot
            raise

    async def aclose(self) -> None:
        """Close every idle connection; connections of open responses close when those responses do."""
        for origin in self._origins.values():
            origin.close_idle()
        self._origins.clear()

    # --- internals --------------------------------------------------------------------------------

    def _new_origin(self, scheme: bytes, host: bytes, port: int | None) -> _Origin:
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme.decode(errors='replace')!r}")
        origin = _Origin(
            host.decode("ascii"),
            port or _DEFAULT_PORTS[scheme],
            scheme == b"https",
            self._max_connections,
            self._keepalive_expiry,
        )
        self._origins[(scheme, host, port)] = origin
        return origin

    async def _send(self, origin: _Origin, request: httpx.Request, timeouts: dict[str, float | None]) -> httpx.Response:
        # OMEN always sends bytes (httpx wraps them in a ByteStream and has already read them).
        body = request.content if isinstance(request.stream, httpx.ByteStream) else None
        conn = origin.checkout()
        for attempt in (1, 2):
            if conn is None:
                conn = await self._connect(origin, timeouts.get("connect"), request)
            try:
                return await _exchange(origin, conn, request, body, timeouts)
            except _Stale as stale:
                conn.close()
                if attempt == 2:  # cannot happen (fresh connections never raise _Stale); be safe
                    raise stale.error from None
                conn = None  # retry once, on a new connection
            except BaseException:
                conn.close()  # whatever happened (Cancelled included), this connection is not reusable
                raise
        raise AssertionError("unreachable")

    async def _connect(self, origin: _Origin, timeout: float | None, request: httpx.Request) -> _Connection:
        where = f"{origin.host}:{origin.port}"
        with trio.move_on_after(math.inf if timeout is None else timeout):
            try:
                tcp = await trio.open_tcp_stream(origin.host, origin.port)
            except OSError as exc:
                raise httpx.ConnectError(f"cannot connect to {where}: {exc}", request=request) from exc
            try:
                if not origin.tls:
                    return _Connection(tcp, tcp.socket)
                if self._ssl_context is None:
                    self._ssl_context = default_ssl_context()
                tls = trio.SSLStream(tcp, self._ssl_context, server_hostname=origin.host, https_compatible=True)
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError as exc:
                    cause = exc.__cause__ or exc
                    raise httpx.ConnectError(f"TLS handshake with {where} failed: {cause}", request=request) from exc
                if tls.selected_alpn_protocol() not in (None, "http/1.1"):
                    raise httpx.ConnectError(
                        f"{where} negotiated {tls.selected_alpn_protocol()!r}; this transport speaks HTTP/1.1 only",
                        request=request,
                    )
                return _Connection(tls, tcp.socket)
            except BaseException:
                tcp.socket.close()
                raise
        raise httpx.ConnectTimeout(f"connecting to {where} took longer than {timeout}s", request=request)


async def _exchange(
    origin: _Origin,
    conn: _Connection,
    request: httpx.Request,
    body: bytes | None,
    timeouts: dict[str, float | None],
) -> httpx.Response:
    """Send the request and read the response head; the body stays on the socket for the stream."""
    read_timeout = timeouts.get("read")
    try:
        await _write_request(conn, request, body, timeouts.get("write"))
    except _WriteFailed as failed:
        # A peer that closed before it had the whole request cannot have acted on it.
        if conn.reused and (body is not None or not failed.sent_any):
            raise _Stale(failed.error) from failed.error.__cause__
        # The server may have answered early (413, 401...) and closed: its response beats a WriteError.
        try:
            event = await _read_head(conn, request, read_timeout, may_retry=False)
        except httpx.TransportError:
            raise failed.error from failed.error.__cause__
    else:
        # Only bytes can be sent again: a streamed body has been consumed by now.
        event = await _read_head(conn, request, read_timeout, may_retry=conn.reused and body is not None)
    return httpx.Response(
        status_code=event.status_code,
        headers=event.headers.raw_items(),
        stream=_ResponseStream(origin, conn, request, read_timeout),
        extensions={"http_version": b"HTTP/" + event.http_version, "reason_phrase": event.reason},
    )


class _WriteFailed(Exception):
    def __init__(self, error: httpx.WriteError, sent_any: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.sent_any = sent_any


async def _write_request(conn: _Connection, request: httpx.Request, body: bytes | None, timeout: float | None) -> None:
    h = conn.h11
    sent_any = False
    try:
        head = h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw)
        with _deadline(timeout) as scope:
            if body is not None:
                # One write for the whole request: the common case is a small JSON body.
                data = [h.send(head)]
                if body:
                    data += h.send_with_data_passthrough(h11.Data(data=body))
                data.append(h.send(h11.EndOfMessage()))
                await conn.stream.send_all(b"".join(data))  # type: ignore[arg-type]
            else:
                await conn.stream.send_all(h.send(head))  # type: ignore[arg-type]
                sent_any = True
                async for chunk in request.stream:  # type: ignore[union-attr]
                    if chunk:
                        await conn.stream.send_all(b"".join(h.send_with_data_passthrough(h11.Data(data=chunk))))
                await conn.stream.send_all(h.send(h11.EndOfMessage()))  # type: ignore[arg-type]
    except h11.LocalProtocolError as exc:  # invalid header, body longer/shorter than its Content-Length...
        raise httpx.LocalProtocolError(str(exc), request=request) from exc
    except _NETWORK_ERRORS as exc:
        error = httpx.WriteError(_reason("sending the request", exc), request=request)
        error.__cause__ = exc
        raise _WriteFailed(error, sent_any) from exc
    if scope.cancelled_caught:
        raise httpx.WriteTimeout(f"sending the request took longer than {timeout}s", request=request)


async def _read_head(conn: _Connection, request: httpx.Request, timeout: float | None, may_retry: bool) -> h11.Response:
    """The response head. ``may_retry``: failing before any response byte raises _Stale (see _send)."""
    h = conn.h11
    received_any = False
    while True:
        try:
            event = h.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        if event is h11.NEED_DATA:
            try:
                data = await _receive(conn, timeout, request)
            except _NETWORK_ERRORS as exc:
                error = httpx.ReadError(_reason("reading the response", exc), request=request)
                if may_retry and not received_any:
                    raise _Stale(error) from exc
                raise error from exc
            if not data and not received_any:
                error = httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
                if may_retry:
                    raise _Stale(error)
                raise error
            received_any = True
            h.receive_data(data)
            continue
        if type(event) is h11.Response:
            return event  # type: ignore[return-value]
        if type(event) is h11.InformationalResponse:
            continue  # 100 Continue / 103 Early Hints: the real response follows
        raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__} before the response", request=request)


class _ResponseStream(httpx.AsyncByteStream):
    """The response body, chunk by chunk as it arrives. Owns the connection and its pool slot until
    the body ends (connection back to the pool) or :meth:`aclose` (pool if complete, else closed)."""

    def __init__(self, origin: _Origin, conn: _Connection, request: httpx.Request, read_timeout: float | None) -> None:
        self._origin = origin
        self._conn: _Connection | None = conn
        self._request = request
        self._read_timeout = read_timeout

    def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        # A plain async iterator rather than an async generator: nothing for the GC to finalize when
        # a caller stops iterating early, and one frame less per chunk.
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        h = conn.h11
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:  # e.g. EOF before the whole body
                self._release()
                raise httpx.RemoteProtocolError(str(exc), request=self._request) from exc
            if event is h11.NEED_DATA:
                # A Cancelled here leaves h11 consistent (no bytes were taken off the socket); the
                # caller's aclose() then finds the response incomplete and closes the connection.
                try:
                    data = await _receive(conn, self._read_timeout, self._request)
                except _NETWORK_ERRORS as exc:
                    self._release()
                    raise httpx.ReadError(_reason("reading the response body", exc), request=self._request) from exc
                except httpx.ReadTimeout:
                    self._release()
                    raise
                h.receive_data(data)
                continue
            etype = type(event)
            if etype is h11.Data:
                if event.data:  # type: ignore[union-attr]
                    return bytes(event.data)  # type: ignore[union-attr]  # h11 hands out bytearrays
                continue
            if etype is h11.EndOfMessage:
                self._release()
                raise StopAsyncIteration
            self._release()
            raise httpx.RemoteProtocolError(f"unexpected {etype.__name__} in the response body", request=self._request)

    async def aclose(self) -> None:
        conn = self._conn
        if conn is None:
            return
        # If the rest of the body is already buffered, the exchange is complete without any I/O and the
        # connection can be reused; otherwise _release() closes it and the upstream sees that.
        h = conn.h11
        try:
            while h.their_state is h11.SEND_BODY:
                event = h.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
        except h11.ProtocolError:
            pass
        self._release()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._origin.finish(conn)


class _deadline:
    """``trio.move_on_after`` only when a timeout is set (OMEN leaves read/write timeouts to its own
    cancel scopes, so the common path creates no scope)."""

    __slots__ = ("_scope", "_timeout")

    def __init__(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._scope: trio.CancelScope | None = None

    def __enter__(self) -> _deadline:
        if self._timeout is not None:
            self._scope = trio.move_on_after(self._timeout)
            self._scope.__enter__()
        return self

    def __exit__(self, *exc: Any) -> bool:
        if self._scope is None:
            return False
        return bool(self._scope.__exit__(*exc))

    @property
    def cancelled_caught(self) -> bool:
        return self._scope is not None and self._scope.cancelled_caught


async def _receive(conn: _Connection, timeout: float | None, request: httpx.Request) -> bytes:
    if timeout is None:
        return await conn.stream.receive_some(RECV_SIZE)  # type: ignore[return-value]
    with trio.move_on_after(timeout):
        return await conn.stream.receive_some(RECV_SIZE)  # type: ignore[return-value]
    raise httpx.ReadTimeout(f"no data from the server for {timeout}s", request=request)


def _reason(doing: str, exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
    text = str(cause)
    return f"{doing} failed: {type(cause).__name__}" + (f": {text}" if text else "")
