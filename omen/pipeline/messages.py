"""The Anthropic-compatible endpoints: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

A Messages request is decoded (``omen.api.anthropic``), translated to an OpenAI chat request
(``omen.inbound.anthropic_request``), routed like ``/v1/chat/completions`` and dispatched through the
same provider translators and relay; :class:`AnthropicOutput` on the request context makes the relay
write the answer as an Anthropic ``Message`` or Anthropic SSE events, and errors in Anthropic's shape.
"""

from __future__ import annotations

from omen.api.anthropic import CountTokensRequest, MessagesRequest
from omen.api.decode import decode_body
from omen.errors import OmenError
from omen.inbound.anthropic_request import encode_chat, to_chat_request
from omen.inbound.anthropic_response import error_body, message_from_openai
from omen.inbound.anthropic_stream import AnthropicStreamWriter
from omen.pipeline.context import RequestContext
from omen.pipeline.gateway import Gateway
from omen.pipeline.handlers import _dispatch, _plan
from omen.providers.base import ChatCall, Provider, Result, StreamEvent
from omen.server.asgi import JSON_CT, Receive, Send, send_response
from omen.tokens import count_chat

# Upstreams whose reasoning models refuse ``max_tokens``; every other translator and OpenAI-compatible
# server reads ``max_tokens`` (the older, more widely supported name).
_MAX_COMPLETION_TOKENS_TYPES = frozenset({"openai", "azure"})
_THINKING_ON = frozenset({"enabled", "adaptive"})


class _Renderer:
    """Anthropic SSE for the relay, keeping the request's accounting (usage, error) up to date."""

    __slots__ = ("ctx", "writer")

    def __init__(self, ctx: RequestContext, writer: AnthropicStreamWriter) -> None:
        self.ctx = ctx
        self.writer = writer

    @property
    def done(self) -> bool:
        return self.writer.done

    def render(self, events: list[StreamEvent]) -> bytes:
        data = self.writer.render(events)
        self._account()
        return data

    def finish(self, error: OmenError | None) -> bytes:
        data = self.writer.finish(error)
        self._account()
        return data

    def _account(self) -> None:
        writer = self.writer
        if writer.usage is not None:
            self.ctx.usage = writer.usage
        if writer.error is not None:
            self.ctx.error = writer.error.message


class AnthropicOutput:
    """The relay's output format for one Messages request (see ``omen.pipeline.output``)."""

    __slots__ = ("model", "provider", "thinking")

    def __init__(self, model: str, *, provider: str = "upstream", thinking: bool = False) -> None:
        self.model = model  # answers name the model the client asked for
        self.provider = provider
        self.thinking = thinking

    def stream_renderer(self, ctx: RequestContext) -> _Renderer:
        return _Renderer(ctx, AnthropicStreamWriter(self.model, thinking=self.thinking, provider=self.provider))

    def result_body(self, result: Result) -> bytes:
        return message_from_openai(
            result.body, result.usage, self.model, provider=self.provider, thinking=self.thinking
        )

    def error_body(self, error: OmenError, request_id: str) -> bytes:
        return error_body(error, request_id)


ERRORS = AnthropicOutput("")
"""Renders errors on the /v1/messages paths raised before a request is decoded (auth, 405, 413)."""


def _max_tokens_field(provider: Provider) -> str:
    return "max_completion_tokens" if getattr(provider, "type", "") in _MAX_COMPLETION_TOKENS_TYPES else "max_tokens"


async def messages(gw: Gateway, ctx: RequestContext, body: bytes, receive: Receive, send: Send) -> None:
    request = decode_body(body, MessagesRequest)
    stream = bool(request.stream)
    # translated first so the router (intent, policies) sees the conversation; the upstream model and
    # the output-length field are set for the deployment the plan puts first
    translated = to_chat_request(request, request.model, stream=stream)
    chat = translated.request
    plan = _plan(gw, ctx, request.model, chat, stream=stream)
    first = plan.candidates[0].deployment
    provider = gw.providers[first.provider_id]
    chat.model = first.upstream_model
    if _max_tokens_field(provider) == "max_completion_tokens" and chat.max_tokens is not None:
        chat.max_completion_tokens, chat.max_tokens = chat.max_tokens, None
    call = ChatCall(
        # the OpenAI-format body OpenAI-compatible adapters forward as is
        raw=encode_chat(chat),
        upstream_model=first.upstream_model,
        public_model=request.model,
        stream=stream,
        include_usage=stream,
        request_id=ctx.request_id,
        request=chat,
    )
    thinking = request.thinking is not None and request.thinking.type in _THINKING_ON
    ctx.output = AnthropicOutput(request.model, provider=first.provider_id, thinking=thinking)
    try:
        await _dispatch(gw, "chat", plan, call, ctx, receive, send)
    except OmenError as error:
        # a provider translator or the upstream named an OpenAI path; the client sent Anthropic's
        raise translated.rewrite(error) from None


async def count_tokens(gw: Gateway, ctx: RequestContext, body: bytes, receive: Receive, send: Send) -> None:
    """``{"input_tokens": N}`` counted by OMEN's tokenizer on the translated request: exact for OpenAI
    models' text, an o200k_base estimate for every other model (their tokenizers are not public)."""
    request = decode_body(body, CountTokensRequest)
    upstream = _plan(gw, ctx, request.model).candidates[0].deployment.upstream_model
    chat = to_chat_request(request, upstream).request
    tokens = count_chat(chat.messages, upstream, chat.tools)
    ctx.status = 200
    await send_response(send, 200, b'{"input_tokens":%d}' % tokens, [JSON_CT, *ctx.route_headers()])
