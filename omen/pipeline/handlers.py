"""The OpenAI-compatible endpoints. Each handler decodes and validates the body, routes the model,
builds the call for the provider's translator and hands it to the relay."""

from __future__ import annotations

from typing import Any

from omen.api.chat import ChatCompletionRequest
from omen.api.completions import CompletionRequest
from omen.api.decode import decode_body
from omen.api.embeddings import EmbeddingRequest
from omen.catalog import capabilities_for, check_chat
from omen.errors import OmenError, model_not_found
from omen.media import inline_images
from omen.pipeline.context import RequestContext
from omen.pipeline.gateway import Gateway
from omen.pipeline.models import model_entry, model_list
from omen.pipeline.relay import operation, relay_local, relay_upstream
from omen.providers.base import ChatCall, CompletionCall, EmbeddingCall
from omen.routing.table import Route
from omen.server.asgi import JSON_CT, Receive, Send, send_response


def _route(gw: Gateway, ctx: RequestContext, model: str) -> Route:
    ctx.model = model
    route = gw.table.resolve(model)
    if route.provider_id not in gw.providers:
        raise model_not_found(model)
    ctx.provider = route.provider_id
    ctx.upstream_model = route.upstream_model
    return route


async def _dispatch(
    gw: Gateway, name: str, route: Route, call: Any, ctx: RequestContext, receive: Receive, send: Send
) -> None:
    provider = gw.providers[route.provider_id]
    ctx.stream = call.stream
    if name == "chat" and call.request is not None:
        # Refuse what the model cannot do before any upstream work, then give a provider that cannot
        # fetch image URLs (inline_images) checked data: URIs only.
        check_chat(capabilities_for(gw.config, gw.table.aliases, route), route.public_model, call.request)
        if getattr(provider, "inline_images", False):
            await inline_images(call.request, gw.config.images)
    if getattr(provider, "local", False):
        result = getattr(provider, f"{name}_result", None)
        stream = getattr(provider, f"{name}_stream", None)
        if result is None:
            raise OmenError(
                400,
                f"The model '{route.public_model}' does not support this endpoint.",
                code="unsupported_endpoint",
                param="model",
            )
        await relay_local(result, stream, call, ctx, receive, send)
    else:
        await relay_upstream(gw.exchange, provider, operation(provider, name), call, ctx, receive, send)


def _streamable_call(call_type: Any, request: Any, body: bytes, route: Route, ctx: RequestContext) -> Any:
    """The call for an endpoint that can stream (chat, legacy completions)."""
    options = request.stream_options
    return call_type(
        raw=body,
        upstream_model=route.upstream_model,
        public_model=request.model,
        stream=bool(request.stream),
        include_usage=bool(options and options.include_usage),
        request_id=ctx.request_id,
        request=request,
    )


async def chat_completions(gw: Gateway, ctx: RequestContext, body: bytes, receive: Receive, send: Send) -> None:
    request = decode_body(body, ChatCompletionRequest)
    if not request.messages:
        raise OmenError(400, "'messages' must contain at least one message.", param="messages")
    route = _route(gw, ctx, request.model)
    call = _streamable_call(ChatCall, request, body, route, ctx)
    await _dispatch(gw, "chat", route, call, ctx, receive, send)


async def completions(gw: Gateway, ctx: RequestContext, body: bytes, receive: Receive, send: Send) -> None:
    request = decode_body(body, CompletionRequest)
    route = _route(gw, ctx, request.model)
    call = _streamable_call(CompletionCall, request, body, route, ctx)
    await _dispatch(gw, "completion", route, call, ctx, receive, send)


async def embeddings(gw: Gateway, ctx: RequestContext, body: bytes, receive: Receive, send: Send) -> None:
    request = decode_body(body, EmbeddingRequest)
    if isinstance(request.input, list) and not request.input:
        raise OmenError(400, "'input' must not be empty.", param="input")
    route = _route(gw, ctx, request.model)
    call = EmbeddingCall(
        raw=body,
        upstream_model=route.upstream_model,
        public_model=request.model,
        request_id=ctx.request_id,
        request=request,
    )
    await _dispatch(gw, "embeddings", route, call, ctx, receive, send)


async def list_models(gw: Gateway, ctx: RequestContext, send: Send) -> None:
    ctx.status = 200
    await send_response(send, 200, model_list(gw), [JSON_CT, *ctx.route_headers()])


async def get_model(gw: Gateway, ctx: RequestContext, model_id: str, send: Send) -> None:
    body = model_entry(gw, model_id)
    ctx.status = 200
    await send_response(send, 200, body, [JSON_CT, *ctx.route_headers()])
