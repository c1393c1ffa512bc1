"""Sending one translated call and relaying the answer to the client.

The upstream exchange runs inside a nursery whose other task watches for the client going away:
a disconnect cancels the nursery, which cancels the upstream read and closes its connection.
Streams relay each upstream read as one ASGI body message (several SSE events batched), and always
end with ``data: [DONE]`` — after an SSE error event if the upstream failed mid-stream.

That is the OpenAI output. A request whose context carries an ``output`` (``omen.pipeline.output``,
e.g. Anthropic Messages) gets its results and streams rendered by it instead; the OpenAI path only
pays one ``is None`` test per response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from omen.errors import OmenError
from omen.pipeline.context import RequestContext
from omen.pipeline.output import StreamRenderer
from omen.providers.base import (
    Call,
    Chunk,
    Provider,
    Result,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamTranslator,
    StreamUsage,
    UpstreamRequest,
)
from omen.server.asgi import JSON_CT, SSE_HEADERS, Receive, Send, send_response, watch_disconnect
from omen.streaming.sse import encode_data
from omen.transport.exchange import Exchange, UpstreamResponse

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class Operation:
    """The three translator steps of one endpoint for one provider."""

    build: Callable[[Call], UpstreamRequest]
    parse: Callable[[Call, bytes], Result]
    stream: Callable[[Call], StreamTranslator] | None


def operation(provider: Provider, name: str) -> Operation:
    stream = getattr(provider, f"{name}_stream", None)
    return Operation(getattr(provider, f"{name}_request"), getattr(provider, f"{name}_result"), stream)


class _Renderer:
    """Turns translator events into SSE bytes; remembers usage and whether the stream ended."""

    __slots__ = ("ctx", "done")

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.done = False

    def render(self, events: list[StreamEvent]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if self.done:
                break
            if type(event) is Chunk:
                out.append(encode_data(event.data))
            elif type(event) is StreamUsage:
                self.ctx.usage = event.usage
            elif type(event) is StreamEnd:
                out.append(DONE)
                self.done = True
            elif type(event) is StreamError:
                out.append(error_event(event.error, self.ctx))
                out.append(DONE)
                self.done = True
        return b"".join(out)

    def finish(self, error: OmenError | None) -> bytes:
        if self.done:
            return b""
        if error is None:
            error = OmenError(
                502, "The upstream stream ended without finishing.", type="server_error", code="upstream_error"
            )
        self.done = True
        return error_event(error, self.ctx) + DONE


def _renderer(ctx: RequestContext) -> StreamRenderer:
    output = ctx.output
    return _Renderer(ctx) if output is None else output.stream_renderer(ctx)


def _result_body(ctx: RequestContext, result: Result) -> bytes:
    output = ctx.output
    return result.body if output is None else output.result_body(result)


def error_event(error: OmenError, ctx: RequestContext) -> bytes:
    ctx.error = error.message
    return encode_data(error.to_json())


async def _start_stream(send: Send, ctx: RequestContext) -> None:
    ctx.status = 200
    ctx.response_started = True
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + ctx.route_headers()})


async def _send_body(send: Send, ctx: RequestContext, data: bytes) -> None:
    ctx.mark_first_byte()
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _finish_stream(send: Send, ctx: RequestContext, renderer: StreamRenderer, error: OmenError | None) -> None:
    tail = renderer.finish(error)
    ctx.response_ending = True
    await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _while_connected_signal(signal: Any, ctx: RequestContext, work: Callable[[], Awaitable[None]]) -> None:
    """``while_connected`` on hypercorn's disconnect signal (the ``omen.disconnect`` scope extension): the
    disconnect cancels ``work`` through a callback, so no watcher task is spawned per request."""

    def on_disconnect() -> None:
        if not ctx.response_ending:  # a disconnect while the last body message goes out is the normal end
            client_scope.cancel()

    with trio.CancelScope() as client_scope:
        if signal.fired:
            client_scope.cancel()
        signal.subscribe(on_disconnect)
        try:
            await work()
        finally:
            signal.unsubscribe(on_disconnect)
    if client_scope.cancelled_caught:
        ctx.error = "client disconnected"
        ctx.status = ctx.status or 499


async def while_connected(receive: Receive, ctx: RequestContext, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` while watching for the client to disconnect; a disconnect cancels ``work``.

    OmenError from ``work`` is re-raised as itself (not wrapped in an ExceptionGroup by the nursery),
    so the caller can still answer with a proper error response.
    """
    signal = ctx.disconnect
    if signal is not None:
        await _while_connected_signal(signal, ctx, work)
        return
    error: OmenError | None = None
    finished = False
    with trio.CancelScope() as client_scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, receive, client_scope, lambda: ctx.response_ending)
            try:
                await work()
            except OmenError as exc:
                error = exc
            finished = True  # a disconnect noticed after this point is the normal end of the exchange
            nursery.cancel_scope.cancel()
    if client_scope.cancelled_caught and not finished:
        ctx.error = "client disconnected"
        ctx.status = ctx.status or 499
    elif error is not None:
        raise error


async def relay_upstream(
    exchange: Exchange,
    provider: Provider,
    op: Operation,
    call: Call,
    ctx: RequestContext,
    receive: Receive,
    send: Send,
) -> None:
    """One upstream call relayed to the client, no routing around it (the attempt executor,
    ``omen.pipeline.attempts``, is what the handlers use)."""
    request = op.build(call)

    async def work() -> None:
        response = await exchange.open(provider, request)
        try:
            if response.status >= 400:
                body = await response.read()
                raise provider.error(response.status, response.headers, body)
            await relay_response(response, op, call, ctx, send)
        finally:
            await response.aclose()

    await while_connected(receive, ctx, work)


async def relay_response(
    response: UpstreamResponse, op: Operation, call: Call, ctx: RequestContext, send: Send
) -> None:
    """Relay an open 2xx upstream response to the client, as a JSON body or a stream.

    Raises OmenError only before anything was sent (``ctx.response_started`` still False): a body that
    cannot be read or parsed. Once the response started, failures end the stream in-band."""
    if not call.stream or op.stream is None:
        result = op.parse(call, await response.read())
        ctx.usage = result.usage
        body = _result_body(ctx, result)
        ctx.status = 200
        ctx.mark_first_byte()
        ctx.response_started = True
        ctx.response_ending = True
        await send_response(send, 200, body, [JSON_CT, *ctx.route_headers()])
    else:
        await _relay_stream(response, op.stream(call), ctx, send)


async def _relay_stream(
    response: UpstreamResponse, translator: StreamTranslator, ctx: RequestContext, send: Send
) -> None:
    renderer = _renderer(ctx)
    await _start_stream(send, ctx)
    error: OmenError | None = None
    try:
        while not renderer.done:
            chunk = await response.next_chunk()
            events = translator.feed(chunk) if chunk is not None else translator.close()
            data = renderer.render(events)
            if data:
                await _send_body(send, ctx, data)
            if chunk is None:
                break
    except OmenError as exc:
        error = exc
    await _finish_stream(send, ctx, renderer, error)


async def relay_local(
    result: Callable[[Call], Result] | None,
    stream: Callable[[Call], AsyncIterator[list[StreamEvent]]] | None,
    call: Call,
    ctx: RequestContext,
    receive: Receive,
    send: Send,
) -> None:
    """The same relay for a model that runs inside the gateway (the demo model)."""

    async def work() -> None:
        await local_work(result, stream, call, ctx, send)

    await while_connected(receive, ctx, work)


async def local_work(
    result: Callable[[Call], Result] | None,
    stream: Callable[[Call], AsyncIterator[list[StreamEvent]]] | None,
    call: Call,
    ctx: RequestContext,
    send: Send,
) -> None:
    if call.stream and stream is not None:
        renderer = _renderer(ctx)
        await _start_stream(send, ctx)
        async for events in stream(call):
            data = renderer.render(events)
            if data:
                await _send_body(send, ctx, data)
        await _finish_stream(send, ctx, renderer, None)
    else:
        assert result is not None
        answer = result(call)
        ctx.usage = answer.usage
        body = _result_body(ctx, answer)
        ctx.status = 200
        ctx.response_ending = True
        await send_response(send, 200, body, [JSON_CT, *ctx.route_headers()])
