"""The ASGI application: lifespan (background tasks in a nursery the server owns), routing of
paths to handlers, the master-key check, error rendering and the access log line."""

from __future__ import annotations

import orjson
import trio

from omen.api.chat import ChatCompletionRequest  # noqa: F401  (warm the decoder types at import)
from omen.config.schema import OmenConfig
from omen.errors import OmenError
from omen.pipeline import handlers, messages
from omen.pipeline.context import RequestContext, request_id_from
from omen.pipeline.discovery import run_discovery
from omen.pipeline.gateway import Gateway
from omen.pipeline.probes import run_probes
from omen.server.access_log import describe_exception, log_event
from omen.server.asgi import (
    JSON_CT,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_response,
)
from omen.server.hypercorn_fastpath import DISCONNECT_EXTENSION

_BODY_HANDLERS = {
    "/v1/chat/completions": handlers.chat_completions,
    "/v1/completions": handlers.completions,
    "/v1/embeddings": handlers.embeddings,
    "/v1/messages": messages.messages,  # Anthropic Messages API
    "/v1/messages/count_tokens": messages.count_tokens,
}
_HEALTH = orjson.dumps({"status": "ok"})


def _normalise(path: str) -> str:
    # Accept clients configured with a base URL lacking /v1 (``/chat/completions``).
    if path.startswith("/v1/"):
        return path
    if path.startswith(("/chat/", "/completions", "/embeddings", "/models")):
        return "/v1" + path
    return path


class OmenApp:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.max_body = gateway.config.server.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # ---- lifespan: the server's own nursery for background work ------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        gw = self.gateway
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_discovery, gw)
            nursery.start_soon(run_probes, gw)  # returns at once unless [routing.health] probes are on
            gw.ready = True
            log_event("startup", providers=sorted(gw.providers), models=len(gw.table.routes))
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            gw.ready = False
            nursery.cancel_scope.cancel()
        await gw.pool.aclose()
        await send({"type": "lifespan.shutdown.complete"})

    # ---- requests ----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gateway
        method: str = scope["method"]
        path = _normalise(scope["path"])
        ctx = RequestContext(request_id_from(header(scope, b"x-request-id")), method, path, trio.current_time())
        ctx.headers = scope["headers"]
        extensions = scope.get("extensions")
        if extensions:
            ctx.disconnect = extensions.get(DISCONNECT_EXTENSION)
        try:
            await self._route(scope, receive, send, ctx, method, path)
        except OmenError as error:
            await self._send_error(send, ctx, error)
        except ClientDisconnected:
            ctx.status = ctx.status or 499
            ctx.error = "client disconnected"
        except Exception as exc:  # a bug must answer 500, not kill the connection silently
            log_event("unhandled_error", level="error", request_id=ctx.request_id, error=describe_exception(exc))
            await self._send_error(send, ctx, OmenError(500, "Internal gateway error.", type="server_error"))
        gw.access_log.write(ctx.record())

    async def _route(
        self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext, method: str, path: str
    ) -> None:
        gw = self.gateway
        body_handler = _BODY_HANDLERS.get(path)
        if body_handler is not None:
            if method != "POST":
                raise _method_not_allowed(method, path, "POST")
            gw.master_key.check(header(scope, b"authorization"), header(scope, b"x-api-key"))
            if gw.master_key.enabled:
                ctx.key_id = "master"
            body = await read_body(scope, receive, self.max_body)
            await body_handler(gw, ctx, body, receive, send)
            return
        if path == "/admin/routing/explain" or path == "/v1/providers/status":
            await self._routing_info(scope, receive, send, ctx, method, path)
            return
        if path == "/v1/models" or path.startswith("/v1/models/"):
            if method != "GET":
                raise _method_not_allowed(method, path, "GET")
            gw.master_key.check(header(scope, b"authorization"), header(scope, b"x-api-key"))
            if path == "/v1/models":
                await handlers.list_models(gw, ctx, send)
            else:
                await handlers.get_model(gw, ctx, path[len("/v1/models/") :], send)
            return
        if path == "/health":
            ctx.status = 200
            await send_response(send, 200, _HEALTH, [JSON_CT])
            return
        if path == "/ready":
            usable = gw.usable_providers()
            ok = gw.ready and bool(usable)
            ctx.status = 200 if ok else 503
            body = orjson.dumps({"status": "ready" if ok else "not_ready", "providers": usable})
            await send_response(send, ctx.status, body, [JSON_CT])
            return
        raise OmenError(
            404,
            f"Unknown path '{scope['path']}'. OMEN serves the OpenAI API under /v1 "
            "(chat/completions, completions, embeddings, models) and the Anthropic Messages API (/v1/messages).",
            code="not_found",
        )

    async def _routing_info(
        self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext, method: str, path: str
    ) -> None:
        """The router's decision for a request, and the providers' health; behind the master key."""
        gw = self.gateway
        allowed = "GET, POST" if path == "/admin/routing/explain" else "GET"
        if method not in allowed.split(", "):
            raise _method_not_allowed(method, path, allowed)
        gw.master_key.check(header(scope, b"authorization"), header(scope, b"x-api-key"))
        if gw.master_key.enabled:
            ctx.key_id = "master"
        if path == "/v1/providers/status":
            await handlers.providers_status(gw, ctx, send)
            return
        body = await read_body(scope, receive, self.max_body) if method == "POST" else None
        await handlers.routing_explain(gw, ctx, method, scope.get("query_string", b""), body, send)

    async def _send_error(self, send: Send, ctx: RequestContext, error: OmenError) -> None:
        ctx.status = error.status
        ctx.error = error.message
        if ctx.response_started:
            return  # the response already started; the relay reported the error in-stream
        headers = [JSON_CT, *ctx.route_headers()]
        headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
        # each client API has its own error shape: Anthropic's on /v1/messages, OpenAI's elsewhere
        output = ctx.output or (messages.ERRORS if ctx.path.startswith("/v1/messages") else None)
        body = error.to_json() if output is None else output.error_body(error, ctx.request_id)
        try:
            await send_response(send, error.status, body, headers)
        except Exception:
            pass  # the client is gone


def _method_not_allowed(method: str, path: str, allowed: str) -> OmenError:
    return OmenError(
        405,
        f"Method {method} is not allowed on {path}; use {allowed}.",
        code="method_not_allowed",
        headers={"Allow": allowed},
    )


def create_app(config: OmenConfig) -> OmenApp:
    return OmenApp(Gateway.from_config(config))
