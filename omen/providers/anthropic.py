"""Anthropic through its Messages API (``POST /v1/messages``, ``GET /v1/models``).

OpenAI chat requests are translated to Anthropic's format (anthropic_request.py) and the answers,
streamed or not, back to OpenAI's (anthropic_response.py); the module docstrings there list every
mapping choice. Anthropic has no embeddings and no legacy completions endpoint: those calls are
refused with a 400 naming the endpoint.

Config: ``[providers.anthropic]`` ``api_key`` (sent as ``x-api-key``), ``anthropic_version`` (default
``2023-06-01``), ``base_url`` (default ``https://api.anthropic.com``; a pasted ``/v1`` suffix is
dropped), ``headers`` (e.g. ``anthropic-beta``; they override the defaults by name).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, NoReturn

import orjson

from omen.api.chat import ChatCompletionRequest
from omen.config.schema import ProviderConfig
from omen.errors import OmenError
from omen.providers.anthropic_request import DEFAULT_MAX_TOKENS, messages_body
from omen.providers.anthropic_response import AnthropicChatStream, chat_completion, decode_message, http_error
from omen.providers.base import (
    ChatCall,
    CompletionCall,
    EmbeddingCall,
    Headers,
    ModelInfo,
    Result,
    UpstreamRequest,
)
from omen.providers.ollama import _epoch, _request, random_id
from omen.providers.upstream_errors import invalid_upstream_body

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
# Anthropic pages its model list (default 20 per page); one page of the maximum size holds them all.
MODELS_PATH = "/v1/models?limit=1000"


def _unsupported(endpoint: str) -> NoReturn:
    raise OmenError(
        400,
        f"This provider (Anthropic) has no {endpoint} endpoint; use a model of another provider, "
        "or /v1/chat/completions for Anthropic models.",
        code="unsupported_endpoint",
        param="model",
    )


class AnthropicProvider:
    """``type = "anthropic"``. ``clock`` and ``new_id`` make timestamps and fallback ids deterministic
    in tests (Anthropic's own message id is used as the completion id)."""

    type: ClassVar[str] = "anthropic"

    def __init__(
        self,
        provider_id: str,
        config: ProviderConfig,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = random_id,
    ) -> None:
        self.id = provider_id
        self.config = config
        self._clock = clock
        self._new_id = new_id
        base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._base = base.removesuffix("/v1")  # the paths below start with /v1
        auth: Headers = [("x-api-key", config.api_key)] if config.api_key else []
        auth.append(("anthropic-version", config.anthropic_version or DEFAULT_VERSION))
        names = {k.lower() for k in config.headers}
        self._headers = [h for h in auth if h[0].lower() not in names] + list(config.headers.items())
        self._post_headers = [("content-type", "application/json"), *self._headers]

    def endpoints(self) -> list[str]:
        return [self._base]

    # -- chat --

    def chat_request(self, call: ChatCall) -> UpstreamRequest:
        req = _request(call, ChatCompletionRequest)
        body = messages_body(req, call.raw, call.upstream_model, call.stream)
        # a fresh header list per request: the transport may add to it
        return UpstreamRequest("POST", "/v1/messages", list(self._post_headers), orjson.dumps(body), call.stream)

    def chat_result(self, call: ChatCall, body: bytes) -> Result:
        msg = decode_message(self.id, body)
        data, usage = chat_completion(
            msg, msg.id or f"chatcmpl-{self._new_id()}", int(self._clock()), msg.model or call.upstream_model
        )
        return Result(body=data, usage=usage)

    def chat_stream(self, call: ChatCall) -> AnthropicChatStream:
        return AnthropicChatStream(self.id, int(self._clock()), call.upstream_model, call.include_usage, self._new_id)

    # -- endpoints Anthropic does not have --

    def completion_request(self, call: CompletionCall) -> UpstreamRequest:
        _unsupported("legacy completions (/v1/completions)")

    def completion_result(self, call: CompletionCall, body: bytes) -> Result:
        _unsupported("legacy completions (/v1/completions)")

    def embeddings_request(self, call: EmbeddingCall) -> UpstreamRequest:
        _unsupported("embeddings (/v1/embeddings)")

    def embeddings_result(self, call: EmbeddingCall, body: bytes) -> Result:
        _unsupported("embeddings (/v1/embeddings)")

    # -- models and errors --

    def models_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", MODELS_PATH, list(self._headers))

    def models_result(self, body: bytes) -> list[ModelInfo]:
        try:
            page = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise invalid_upstream_body(self.id, "a model list", body) from None
        data = page.get("data") if isinstance(page, dict) else None
        if not isinstance(data, list):
            raise invalid_upstream_body(self.id, "a model list", body)
        models = []
        for item in data:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            extra: dict[str, Any] = {k: v for k, v in item.items() if k not in ("id", "type", "created_at")}
            created = _epoch(item.get("created_at"))
            models.append(ModelInfo(id=item["id"], owned_by=self.id, created=created, extra=extra))
        return models

    def error(self, status: int, headers: Headers, body: bytes) -> OmenError:
        return http_error(self.id, status, headers, body)


__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MAX_TOKENS", "DEFAULT_VERSION", "AnthropicProvider"]
