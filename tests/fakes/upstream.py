"""Fake upstream LLM providers: real HTTP/1.1 servers on trio streams + h11.

Built on h11 rather than hypercorn because tests need byte-level control (stall mid-stream, drop the
TCP connection, notice the client hanging up) and benchmarks need the fake to be cheap. Use::

    async with open_fake_upstream("openai", api_key="sk-test") as up:
        ...  # point the gateway at up.openai_base, then inspect up.requests / up.disconnects
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, fields
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

import h11
import orjson
import trio

from .common import KINDS, ApiError, Ctx, Options, Plan, json_plan, ndjson, sse
from .faults import Fault, fault_error, mid_stream_error_obj, retry_after_value
from .routes import check_auth, error_plan, native_wire, resolve

RECV_SIZE = 65536
_OPTION_NAMES = frozenset(f.name for f in fields(Options))
_REASONS: dict[int, bytes] = {}


def _reason(status: int) -> bytes:
    reason = _REASONS.get(status)
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        _REASONS[status] = reason
    return reason


@dataclass
class RecordedRequest:
    """One request as the fake received it, plus what became of it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-case names; the last value wins for repeated headers."""
    body: bytes
    json: Any = None
    """Parsed body (a form body: a dict of its fields), or ``None`` when empty / not JSON."""
    target: str = ""
    params: dict[str, str] = field(default_factory=dict)
    """Path parameters, e.g. Azure ``deployment`` and ``api_version``."""
    seq: int = 0
    status: int | None = None
    """Status line sent (``None`` if the connection was dropped first)."""
    outcome: str = "pending"
    """``ok``, ``reset``, ``broken``, ``stalled``, ``mid_stream_error`` or ``client_closed``."""
    fault: Fault | None = None

    @property
    def client_closed(self) -> bool:
        return self.outcome == "client_closed"


@dataclass(slots=True)
class _Parsed:
    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any


def _parse(request: h11.Request, body: bytes) -> _Parsed:
    target = request.target.decode("latin-1")
    raw_path, _, qs = target.partition("?")
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers}
    data: Any = None
    if body and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        data = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))  # OAuth token requests
    elif body:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
    return _Parsed(
        request.method.decode("ascii"),
        target,
        unquote(raw_path),
        dict(parse_qsl(qs, keep_blank_values=True)),
        headers,
        body,
        data,
    )


class FakeUpstream:
    """State and behaviour of one fake provider server (see module docstring)."""

    def __init__(self, kind: str = "openai", **options: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fake upstream kind {kind!r}; expected one of {KINDS}")
        unknown = set(options) - _OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown fake upstream options: {sorted(unknown)}")
        self.kind = kind
        self.flavour = "openai" if kind == "generic" else kind
        """Which wire rules apply (``generic`` speaks plain OpenAI)."""
        self.options = Options(**options)
        self.host = "127.0.0.1"
        self.port = 0
        self.tls = False
        """Serving HTTPS (``serve(ssl_context=...)``)."""
        self.requests: list[RecordedRequest] = []
        self.request_count = 0
        self.disconnects = 0
        """Responses in progress (streaming, or waiting out ``delay_headers``) the client hung up on."""
        self.active_streams = 0
        self.active_connections = 0
        self.connections_opened = 0
        self.errors: list[BaseException] = []
        """Exceptions raised by the fake itself (answered as 500); tests may assert it stays empty."""
        self._fault: Fault | None = None
        self._fault_uses = 0
        self._once: deque[Fault] = deque()
        self._cache: dict[tuple[Any, ...], Plan] = {}
        self._changed = trio.Event()
        self._disconnects_waited = 0
        self._conn_scopes: set[trio.CancelScope] = set()

    # --- addresses -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def openai_base(self) -> str:
        """Base URL for OpenAI-style clients (Azure: its v1 surface; Ollama: not served)."""
        return self.base_url + ("/openai/v1" if self.kind == "azure" else "/v1")

    def url(self, path: str) -> str:
        return self.base_url + path

    def deployment_url(self, deployment: str, op: str = "chat/completions", api_version: str = "2024-10-21") -> str:
        """Classic Azure URL for ``deployment`` (``op``: chat/completions, completions, embeddings)."""
        return f"{self.base_url}/openai/deployments/{deployment}/{op}?api-version={api_version}"

    # --- faults and options ----------------------------------------------------------------------

    @property
    def fault(self) -> Fault | None:
        """Fault applied to every later matching request (until replaced or ``times`` runs out)."""
        return self._fault

    @fault.setter
    def fault(self, fault: Fault | None) -> None:
        self._fault = fault
        self._fault_uses = 0

    def set_fault(self, fault: Fault | None = None, **fields: Any) -> Fault | None:
        """``set_fault(status=500)`` or ``set_fault(Fault(...))``; ``set_fault()`` clears it."""
        if fault is not None:
            fault = fault.copy(**fields) if fields else fault
        elif fields:
            fault = Fault(**fields)
        self.fault = fault
        return fault

    def fault_once(self, fault: Fault | None = None, **fields: Any) -> Fault:
        """Queue a fault for the next matching request only (queued faults go before ``fault``)."""
        f = (fault.copy(**fields) if fields else fault) if fault is not None else Fault(**fields)
        self._once.append(f)
        return f

    def clear_faults(self) -> None:
        self.fault = None
        self._once.clear()

    def configure(self, **options: Any) -> None:
        """Change options mid-test (also drops the fast-mode response cache)."""
        unknown = set(options) - _OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown fake upstream options: {sorted(unknown)}")
        for name, value in options.items():
            setattr(self.options, name, value)
        self._cache.clear()

    def reset(self) -> None:
        """Forget recorded requests, counters and faults."""
        self.requests.clear()
        self.request_count = 0
        self.disconnects = 0
        self._disconnects_waited = 0
        self.errors.clear()
        self.clear_faults()
        self._cache.clear()

    def _take_fault(self, path: str) -> Fault | None:
        for i, f in enumerate(self._once):
            if f.matches(path):
                del self._once[i]
                return f
        f = self._fault
        if f is None or not f.matches(path):
            return None
        self._fault_uses += 1
        if f.times is not None and self._fault_uses >= f.times:
            self._fault = None
        return f

    # --- waiting ---------------------------------------------------------------------------------

    def _notify(self) -> None:
        event, self._changed = self._changed, trio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
        """Wait until ``predicate()`` holds; it is re-checked whenever the fake's state changes."""
        with trio.move_on_after(timeout):
            while not predicate():
                await self._changed.wait()
            return
        raise TimeoutError(f"fake {self.kind} upstream: no {what} within {timeout}s")

    async def wait_disconnect(self, timeout: float = 5.0) -> int:
        """Wait for one more client hang-up during a response than earlier calls consumed.

        Returns ``disconnects``; each call consumes one, so it works whether the hang-up happened
        before or after the call.
        """
        target = self._disconnects_waited + 1
        await self.wait_for(lambda: self.disconnects >= target, timeout, "client disconnect during a response")
        self._disconnects_waited = target
        return self.disconnects

    async def wait_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until ``count`` requests in total have arrived."""
        await self.wait_for(lambda: self.request_count >= count, timeout, f"{count} requests")
        return self.requests

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no response stream is in progress."""
        await self.wait_for(lambda: self.active_streams == 0, timeout, "idle (active streams remain)")

    def drop_connections(self) -> None:
        """Close every client connection now (simulates an upstream restart)."""
        for scope in list(self._conn_scopes):
            scope.cancel()

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if path in r.path]

    # --- serving ---------------------------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        task_status: trio.TaskStatus[FakeUpstream] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until cancelled; ``task_status.started(self)`` once the port is bound.

        ``reuse_port`` (SO_REUSEPORT) lets several benchmark processes share one port; ``ssl_context``
        (a server context with its certificate loaded) serves HTTPS.
        """
        if reuse_port:
            sock = trio.socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            await sock.bind((host, port))
            sock.listen(1024)
            listeners = [trio.SocketListener(sock)]
        else:
            listeners = await trio.open_tcp_listeners(port, host=host, backlog=1024)
        sockname = listeners[0].socket.getsockname()
        self.host, self.port = sockname[0], sockname[1]
        if ssl_context is not None:
            self.tls = True
            listeners = [trio.SSLListener(lst, ssl_context, https_compatible=True) for lst in listeners]
        task_status.started(self)
        await trio.serve_listeners(self._handle_connection, listeners)

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        self.connections_opened += 1
        self.active_connections += 1
        self._notify()
        conn = h11.Connection(h11.SERVER)
        scope = trio.CancelScope()
        self._conn_scopes.add(scope)
        try:
            with scope:
                while True:
                    incoming = await self._read_request(stream, conn)
                    if incoming is None:
                        break
                    raw = self._fast_raw(*incoming) if self.options.fast else None
                    if raw is not None:
                        # Bypass h11 on the way out (about half its per-request cost): write the cached
                        # bytes and parse the next request with a fresh h11 connection.
                        await stream.send_all(raw)
                        leftover, eof = conn.trailing_data
                        conn = h11.Connection(h11.SERVER)
                        if leftover:
                            conn.receive_data(leftover)
                        if eof:
                            conn.receive_data(b"")  # empty data means EOF to h11
                        continue
                    if not await self._respond(stream, conn, *incoming):
                        break
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        break
                    conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            self._conn_scopes.discard(scope)
            self.active_connections -= 1
            self._notify()
            await trio.aclose_forcefully(stream)

    @staticmethod
    async def _read_request(stream: trio.SocketStream, conn: h11.Connection) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        body: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(RECV_SIZE))
                continue
            etype = type(event)
            if etype is h11.Request:
                request = event  # type: ignore[assignment]
            elif etype is h11.Data:
                body.append(event.data)  # type: ignore[union-attr]
            elif etype is h11.EndOfMessage and request is not None:
                return request, b"".join(body)
            else:  # ConnectionClosed / PAUSED
                return None

    def _record(self, parsed: _Parsed, seq: int, fault: Fault | None) -> RecordedRequest | None:
        if not self.options.recording:
            return None
        rec = RecordedRequest(
            parsed.method,
            parsed.path,
            parsed.query,
            parsed.headers,
            parsed.body,
            parsed.json,
            parsed.target,
            seq=seq,
            fault=fault,
        )
        self.requests.append(rec)
        return rec

    def _plan(self, parsed: _Parsed, seq: int, rec: RecordedRequest | None, fault: Fault | None) -> Plan:
        kind = self.flavour
        model = parsed.json.get("model") if isinstance(parsed.json, dict) else None
        api_version = parsed.query.get("api-version")
        if not isinstance(model, str):
            model = None
        if fault is not None and fault.status is not None:  # a status fault wins over routing and auth
            return error_plan(kind, fault_error(fault), model=model, api_version=api_version)
        try:
            handler, params = resolve(kind, parsed.method, parsed.path, parsed.query)
            if rec is not None:
                rec.params = params
            check_auth(kind, self.options, parsed.headers, parsed.path, parsed.query)
            ctx = Ctx(
                kind, self.options, parsed.json, params, parsed.query, seq, fault.finish_reason if fault else None
            )
            return handler(ctx)
        except ApiError as err:
            return error_plan(kind, err, model=model, api_version=api_version)
        except Exception as exc:  # a bug in the fake: answer 500 and keep it for the test to see
            self.errors.append(exc)
            message = f"fake upstream bug: {exc!r}"
            return json_plan(500, {"error": {"message": message, "type": "server_error", "param": None, "code": None}})

    def _request_id_header(self, seq: int) -> tuple[bytes, bytes] | None:
        if self.flavour == "azure":
            return b"apim-request-id", f"00000000-0000-4000-8000-{seq:012d}".encode()
        if self.flavour in ("openai", "xai"):
            return b"x-request-id", f"req_fake{seq:08d}".encode()
        return None

    def _cached_plan(self, request: h11.Request, body: bytes, seq: int) -> Plan:
        """Fast mode: one Plan per distinct (method, target, body, credentials)."""
        auth = api_key = None
        for name, value in request.headers:
            if name == b"authorization":
                auth = value
            elif name == b"api-key":
                api_key = value
        key = (request.method, request.target, body, auth, api_key)
        plan = self._cache.get(key)
        if plan is None:
            if len(self._cache) >= 4096:
                self._cache.clear()
            plan = self._cache[key] = self._plan(_parse(request, body), seq, None, None)
        return plan

    def _fast_raw(self, request: h11.Request, body: bytes) -> bytes | None:
        """Complete response bytes for the fast path, or None when the request needs the full path."""
        if self.options.recording or self._fault is not None or self._once:
            return None
        if request.http_version != b"1.1" or request.method == b"HEAD":
            return None
        for name, value in request.headers:
            if name == b"connection" and b"close" in value.lower():
                return None
        self.request_count += 1
        plan = self._cached_plan(request, body, self.request_count)
        if plan.stream and self.options.chunk_delay > 0:
            self.request_count -= 1
            return None
        self._notify()
        return plan.raw()

    async def _respond(
        self, stream: trio.SocketStream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> bool:
        """Answer one request; returns whether the connection may be reused."""
        self.request_count += 1
        seq = self.request_count
        opts = self.options
        fault = None
        if self._fault is not None or self._once:
            fault = self._take_fault(unquote(request.target.partition(b"?")[0].decode("latin-1")))

        if opts.fast and fault is None and not opts.recording:
            plan = self._cached_plan(request, body, seq)
            self._notify()
            return await self._send(stream, conn, plan, None, None, [])

        parsed = _parse(request, body)
        rec = self._record(parsed, seq, fault)
        self._notify()
        extra: list[tuple[bytes, bytes]] = []
        rid = self._request_id_header(seq)
        if rid is not None:
            extra.append(rid)
        if fault is not None:
            if fault.delay_headers > 0 and await self._guarded(stream, conn, partial(trio.sleep, fault.delay_headers)):
                self._client_closed(rec)
                return False
            if fault.reset_before_headers:
                if rec is not None:
                    rec.outcome = "reset"
                await self._abort(stream, fault.rst)
                return False
            if fault.status is None:
                extra.extend((k.lower().encode(), str(v).encode()) for k, v in fault.headers.items())
                if fault.retry_after is not None:
                    extra.append((b"retry-after", retry_after_value(fault.retry_after).encode()))
        plan = self._plan(parsed, seq, rec, fault)
        return await self._send(stream, conn, plan, fault, rec, extra)

    async def _send(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        plan: Plan,
        fault: Fault | None,
        rec: RecordedRequest | None,
        extra: list[tuple[bytes, bytes]],
    ) -> bool:
        response = plan.head
        if response is None or extra:
            response = h11.Response(status_code=plan.status, headers=plan.headers + extra, reason=_reason(plan.status))
            if not extra:
                plan.head = response
        if rec is not None:
            rec.status = plan.status
        delay = fault.chunk_delay if fault is not None and fault.chunk_delay is not None else self.options.chunk_delay
        paced = plan.stream and (delay > 0 or not self.options.fast)
        if fault is None and not paced:
            # One write for the whole response: the cheap path benchmarks rely on.
            if rec is not None:
                rec.outcome = "ok"
            await stream.send_all(
                conn.send(response) + conn.send(h11.Data(data=plan.joined)) + conn.send(h11.EndOfMessage())
            )
            return True

        events = plan.chunks
        final = "ok"
        if fault is not None and plan.stream and fault.mid_stream_error not in (None, False):
            wire = native_wire(self.flavour)
            if wire is not None:
                spec = fault.mid_stream_error
                event = wire.mid_stream_error(spec if isinstance(spec, str) else "fake mid-stream failure")
            else:
                err = mid_stream_error_obj(self.flavour, fault.mid_stream_error)  # type: ignore[arg-type]
                event = ndjson(err) if plan.ndjson else sse(err)
            events = [*events[: fault.error_after_chunks], event]
            final = "mid_stream_error"
        stall = fault.stall_after_chunks if fault is not None else None
        brk = fault.break_after_chunks if fault is not None else None
        cut = None if stall is None and brk is None else min(x for x in (stall, brk) if x is not None)
        broken = cut is not None and cut == brk
        finished = False
        active = plan.stream
        if active:
            self.active_streams += 1
            self._notify()

        def end_stream() -> None:
            nonlocal active
            if active:
                active = False
                self.active_streams -= 1
                self._notify()

        def settle(outcome: str, *, ended: bool = True) -> None:
            # Book-keeping happens *before* the client can observe the end, so tests never race it.
            if rec is not None:
                rec.outcome = outcome
            if ended:
                end_stream()

        async def work() -> None:
            nonlocal finished
            await stream.send_all(conn.send(response))
            for i, event in enumerate(events[:cut]):
                if i and delay > 0:
                    await trio.sleep(delay)
                await stream.send_all(conn.send(h11.Data(data=event)))
            if broken:
                return
            if cut is not None:
                settle("stalled", ended=False)
                await trio.sleep_forever()
            finished = True
            settle(final)
            await stream.send_all(conn.send(h11.EndOfMessage()))

        try:
            closed = await self._guarded(stream, conn, work)
        finally:
            end_stream()
        if closed and not finished:
            self._client_closed(rec)
            return False
        if broken:
            settle("broken")
            await self._abort(stream, fault.rst if fault is not None else False)
            return False
        return not closed

    @staticmethod
    async def _guarded(stream: trio.SocketStream, conn: h11.Connection, work: Callable[[], Awaitable[Any]]) -> bool:
        """Run ``work`` while watching for the client hanging up; True if it did.

        A peer that closes is only noticed by reading (writes can succeed into the kernel buffer, and
        a stalled response writes nothing), so a watcher reads concurrently and feeds any early bytes
        (a pipelined request) to h11.
        """
        closed = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal closed
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    while data := await stream.receive_some(RECV_SIZE):
                        conn.receive_data(data)
                closed = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            try:
                await work()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                closed = True
            nursery.cancel_scope.cancel()
        return closed

    def _client_closed(self, rec: RecordedRequest | None) -> None:
        self.disconnects += 1
        if rec is not None:
            rec.outcome = "client_closed"
        self._notify()

    @staticmethod
    async def _abort(stream: trio.SocketStream, rst: bool) -> None:
        if rst:
            with suppress(OSError, AttributeError):  # AttributeError: a TLS stream has no .socket
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await trio.aclose_forcefully(stream)


async def serve_fake_upstream(
    kind: str = "openai",
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[FakeUpstream] = trio.TASK_STATUS_IGNORED,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> None:
    """Run a fake upstream until cancelled; ``await nursery.start(serve_fake_upstream, ...)`` returns it."""
    up = FakeUpstream(kind, **options)
    await up.serve(host, port, ssl_context=ssl_context, task_status=task_status)


@asynccontextmanager
async def open_fake_upstream(
    kind: str = "openai",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> AsyncIterator[FakeUpstream]:
    """Start a fake upstream in its own nursery; leaving the block stops it and closes its connections.

    ``ssl_context`` (a server context with its certificate loaded) serves HTTPS. An exception from the
    ``async with`` body comes out as itself, not wrapped in the nursery's ExceptionGroup, so
    ``pytest.raises`` around the block works.
    """
    try:
        async with trio.open_nursery() as nursery:
            serve = partial(serve_fake_upstream, kind, host, port, ssl_context=ssl_context, **options)
            up: FakeUpstream = await nursery.start(serve)
            try:
                yield up
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
