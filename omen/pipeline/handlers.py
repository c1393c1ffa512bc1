"""The OpenAI-compatible endpoints. Each handler decodes and validates the body, plans the route
(omen.routing.router), builds the call and hands both to the attempt executor (omen.pipeline.attempts),
which tries the plan's deployments and relays the answer."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from omen.api.chat import ChatCompletionRequest, UserMessage
from omen.api.completions import CompletionRequest
from omen.api.decode import decode_body
from omen.api.embeddings import EmbeddingRequest
from omen.errors import OmenError
from omen.pipeline.attempts import execute
from omen.pipeline.context import RequestContext
from omen.pipeline.gateway import Gateway
from omen.pipeline.models import model_entry, model_list
from omen.providers.base import ChatCall, CompletionCall, EmbeddingCall
from omen.routing.explain import explain
from omen.routing.policy import patch_body
from omen.routing.router import RoutePlan
from omen.routing.status import providers_status as providers_status_body
from omen.server.asgi import JSON_CT, Receive, Send, send_response

DRY_RUN_HEADER = b"x-omen-dry-run"


def _plan(gw: Gateway, ctx: RequestContext, model: str, request: Any = None, *, stream: bool = False) -> RoutePlan:
    """Route the request (see omen.routing.router); the first candidate names the provider in the
    response headers until an attempt says otherwise."""
    ctx.model = model
    plan = gw.router.plan(model, request, ctx.headers, ctx.key_id, stream=stream)
    first = plan.candidates[0].deployment
    ctx.provider = first.provider_id
    ctx.upstream_model = first.upstream_model
    ctx.route_reason = plan.reason
    return plan


def _dry_run(ctx: RequestContext) -> bool:
    for name, value in ctx.headers:
        if name == DRY_RUN_HEADER:
            return value.strip().lower() in (b"1", b"true", b"yes")
    return False


async def _dispatch(
    gw: Gateway, name: str, plan: RoutePlan, call: Any, ctx: RequestContext, receive: Receive, send: Send
) -> None:
    ctx.stream = call.stream
    if ctx.headers and _dry_run(ctx):
        # the routing decision without calling a provider (x-omen-dry-run: 1)
        ctx.status = 200
        await send_response(send, 200, orjson.dumps(explain(plan)), [JSON_CT, *ctx.route_headers()])
        return
    if plan.rewrites and call.request is not None and call.raw:
        # a policy rewrote parameters on the struct; adapters that forward the client's bytes need them too
        call.raw = patch_body(call.raw, call.request, plan.rewrites)
    await execute(gw, plan, name, call, ctx, receive, send)


def _streamable_call(call_type: Any, request: Any, body: bytes, plan: RoutePlan, ctx: RequestContext) -> Any:
    """The call for an endpoint that can stream (chat, legacy completions)."""
    options = request.stream_options
    return call_type(
        raw=body,
        upstream_model=plan.candidates[0].deployment.upstream_model,
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
    plan = _plan(gw, ctx, request.model, request, stream=bool(request.stream))
    call = _streamable_call(ChatCall, request, body, plan, ctx)
    await _dispatch(gw, "chat", plan, call, ctx, receive, send)


async def completions(gw: Gateway, ctx: RequestContext, body: bytes, receive: Receive, send: Send) -> None:
    request = decode_body(body, CompletionRequest)
    plan = _plan(gw, ctx, request.model, request, stream=bool(request.stream))
    call = _streamable_call(CompletionCall, request, body, plan, ctx)
    await _dispatch(gw, "completion", plan, call, ctx, receive, send)


async def embeddings(gw: Gateway, ctx: RequestContext, body: bytes, receive: Receive, send: Send) -> None:
    request = decode_body(body, EmbeddingRequest)
    if isinstance(request.input, list) and not request.input:
        raise OmenError(400, "'input' must not be empty.", param="input")
    plan = _plan(gw, ctx, request.model, request)
    call = EmbeddingCall(
        raw=body,
        upstream_model=plan.candidates[0].deployment.upstream_model,
        public_model=request.model,
        request_id=ctx.request_id,
        request=request,
    )
    await _dispatch(gw, "embeddings", plan, call, ctx, receive, send)


async def list_models(gw: Gateway, ctx: RequestContext, send: Send) -> None:
    ctx.status = 200
    await send_response(send, 200, model_list(gw), [JSON_CT, *ctx.route_headers()])


async def get_model(gw: Gateway, ctx: RequestContext, model_id: str, send: Send) -> None:
    body = model_entry(gw, model_id)
    ctx.status = 200
    await send_response(send, 200, body, [JSON_CT, *ctx.route_headers()])


# ---- routing introspection ---------------------------------------------------------------------------


async def routing_explain(
    gw: Gateway, ctx: RequestContext, method: str, query: bytes, body: bytes | None, send: Send
) -> None:
    """``GET /admin/routing/explain?model=...[&prompt=...]`` or ``POST`` with a chat body: the route a
    request would take (intent, policy, candidates in order with their state), without calling a
    provider."""
    if method == "POST":
        request = decode_body(body or b"", ChatCompletionRequest)
    else:
        params = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
        model = params.get("model")
        if not model:
            raise OmenError(
                400, "Give the model to explain: ?model=<name> (and optionally &prompt=...).", param="model"
            )
        request = ChatCompletionRequest(model=model, messages=[UserMessage(content=params.get("prompt", ""))])
    plan = _plan(gw, ctx, request.model, request, stream=bool(request.stream))
    ctx.status = 200
    await send_response(send, 200, orjson.dumps(explain(plan)), [JSON_CT, *ctx.route_headers()])


async def providers_status(gw: Gateway, ctx: RequestContext, send: Send) -> None:
    body = orjson.dumps(providers_status_body(gw.deployments, gw.table.provider_types, gw.status))
    ctx.status = 200
    await send_response(send, 200, body, [JSON_CT, *ctx.route_headers()])
