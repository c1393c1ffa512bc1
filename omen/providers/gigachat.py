"""GigaChat (Sber) through its native v1 REST API (providers.md §8).

* **Auth**: an OAuth token obtained at run time from ``auth_url`` with the authorization key
  (``credentials``) and ``scope`` — :class:`~omen.providers.gigachat_auth.GigaChatTokenFlow`; the
  transport caches and refreshes it and :meth:`GigaChatProvider.authorize` adds it as a Bearer header.
* **TLS**: Sber's endpoints chain to the Russian Trusted Root CA, absent from public trust stores; point
  ``ca_bundle`` at that PEM (the transport adds it to the trust store for both hosts).
* **Chat**: request mapping in :mod:`~omen.providers.gigachat_request`, answers and streams in
  :mod:`~omen.providers.gigachat_response`.

What GigaChat cannot do, and what OMEN does about it:

* images: GigaChat takes them only as files uploaded beforehand (``POST /files``) -> 400
  ``unsupported_capability``;
* JSON mode (``json_object``): none -> 400; ``json_schema`` maps to GigaChat's own ``response_format``;
* stop sequences: none upstream -> OMEN cuts the text itself (also in streams);
* parallel tool calls: one call per assistant turn -> histories with several calls are replayed one
  call (and its result) at a time;
* legacy text completions: no such endpoint -> 400 ``unsupported_endpoint``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec
import orjson

from omen.api.chat import ChatCompletionRequest
from omen.api.embeddings import EmbeddingRequest
from omen.config.schema import ProviderConfig
from omen.errors import OmenError, bad_request
from omen.providers.base import (
    ChatCall,
    CompletionCall,
    EmbeddingCall,
    Headers,
    ModelInfo,
    Result,
    StreamTranslator,
    UpstreamRequest,
    Usage,
)
from omen.providers.gigachat_auth import DEFAULT_AUTH_URL, DEFAULT_SCOPE, GigaChatTokenFlow
from omen.providers.gigachat_request import chat_body, response_mode
from omen.providers.gigachat_response import GigaChatChatStream, chat_completion
from omen.providers.ollama import _float32_base64, _request, random_id
from omen.providers.upstream_errors import invalid_upstream_body, normalise_error

DEFAULT_BASE_URL = "https://gigachat.devices.sberbank.ru/api/v1"


class _EmbeddingItem(msgspec.Struct):
    embedding: list[float]
    index: int = 0
    usage: dict[str, Any] | None = None  # GigaChat counts tokens per item


class _Embeddings(msgspec.Struct):
    data: list[_EmbeddingItem] = []


class _Models(msgspec.Struct):
    data: list[dict[str, Any]] = []


_embeddings_decoder = msgspec.json.Decoder(_Embeddings)
_models_decoder = msgspec.json.Decoder(_Models)


class GigaChatProvider:
    """``type = "gigachat"``. ``clock`` and ``new_id`` make ids and timestamps deterministic in tests."""

    type: ClassVar[str] = "gigachat"

    def __init__(
        self,
        provider_id: str,
        config: ProviderConfig,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = random_id,
    ) -> None:
        if not config.credentials:
            raise ValueError(f"provider '{provider_id}': set credentials (the GigaChat authorization key)")
        self.id = provider_id
        self.config = config
        self._clock = clock
        self._new_id = new_id
        self._base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.token_flow = GigaChatTokenFlow(
            provider_id,
            config.credentials,
            scope=config.scope or DEFAULT_SCOPE,
            auth_url=config.auth_url or DEFAULT_AUTH_URL,
        )
        self.credential_values = self.token_flow.credential_values  # never quoted in errors
        names = {k.lower() for k in config.headers}
        extra = [(k, v) for k, v in config.headers.items() if k.lower() != "authorization"]
        accept = [] if "accept" in names else [("Accept", "application/json")]
        self._get_headers: Headers = [*accept, *extra]
        self._post_headers: Headers = [("Content-Type", "application/json"), *accept, *extra]
        self._stream_headers: Headers = [
            ("Content-Type", "application/json"),
            ("Accept", "text/event-stream"),
            ("Cache-Control", "no-store"),
            *[h for h in extra if h[0].lower() not in ("accept", "cache-control")],
        ]

    def endpoints(self) -> list[str]:
        return [self._base]

    def authorize(self, request: UpstreamRequest, url: str, token: str | None) -> Headers:
        """The cached OAuth token (the transport fetched it through ``token_flow``)."""
        return [("Authorization", f"Bearer {token}")] if token else []

    def _post(self, path: str, body: dict[str, Any], stream: bool = False) -> UpstreamRequest:
        # a fresh header list per request: the transport adds to it
        headers = list(self._stream_headers if stream else self._post_headers)
        return UpstreamRequest("POST", path, headers, orjson.dumps(body), stream=stream)

    # -- chat --

    def chat_request(self, call: ChatCall) -> UpstreamRequest:
        req = _request(call, ChatCompletionRequest)
        return self._post("/chat/completions", chat_body(req, call.raw, call.upstream_model, call.stream), call.stream)

    def chat_result(self, call: ChatCall, body: bytes) -> Result:
        out, usage = chat_completion(
            self.id,
            body,
            response_mode(_request(call, ChatCompletionRequest)),
            completion_id=f"chatcmpl-{self._new_id()}",
            created=int(self._clock()),
            model=call.upstream_model,
            new_id=self._new_id,
        )
        return Result(body=orjson.dumps(out), usage=usage)

    def chat_stream(self, call: ChatCall) -> GigaChatChatStream:
        return GigaChatChatStream(
            self.id,
            f"chatcmpl-{self._new_id()}",
            int(self._clock()),
            call.upstream_model,
            call.include_usage,
            response_mode(_request(call, ChatCompletionRequest)),
            self._new_id,
        )

    # -- legacy completions: GigaChat has none --

    def _no_completions(self) -> OmenError:
        return OmenError(
            400,
            "This provider (GigaChat) has no text-completion endpoint; use /v1/chat/completions.",
            code="unsupported_endpoint",
            param="model",
        )

    def completion_request(self, call: CompletionCall) -> UpstreamRequest:
        raise self._no_completions()

    def completion_result(self, call: CompletionCall, body: bytes) -> Result:
        raise self._no_completions()

    def completion_stream(self, call: CompletionCall) -> StreamTranslator:
        raise self._no_completions()

    # -- embeddings --

    def embeddings_request(self, call: EmbeddingCall) -> UpstreamRequest:
        req = _request(call, EmbeddingRequest)
        if req.dimensions is not None:
            raise bad_request(
                "This provider (GigaChat) does not support 'dimensions'; its embedding models have a fixed size.",
                param="dimensions",
                code="unsupported_capability",
            )
        return self._post("/embeddings", {"model": call.upstream_model, "input": _embedding_input(req.input)})

    def embeddings_result(self, call: EmbeddingCall, body: bytes) -> Result:
        try:
            parsed = _embeddings_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise invalid_upstream_body(self.id, "an embeddings response", body) from None
        as_base64 = _request(call, EmbeddingRequest).encoding_format == "base64"
        items = sorted(parsed.data, key=lambda item: item.index)
        data = [
            {
                "object": "embedding",
                "index": item.index,
                "embedding": _float32_base64(item.embedding) if as_base64 else item.embedding,
            }
            for item in items
        ]
        tokens = sum(_int((item.usage or {}).get("prompt_tokens")) for item in items)
        out = {
            "object": "list",
            "data": data,
            "model": call.upstream_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Result(body=orjson.dumps(out), usage=Usage(prompt_tokens=tokens, total_tokens=tokens))

    # -- models and errors --

    def models_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", "/models", list(self._get_headers))

    def models_result(self, body: bytes) -> list[ModelInfo]:
        try:
            listing = _models_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise invalid_upstream_body(self.id, "a model list", body) from None
        models = []
        for item in listing.data:
            name = item.get("id")
            if isinstance(name, str) and name:
                extra = {k: item[k] for k in ("type",) if k in item}
                models.append(ModelInfo(id=name, owned_by=self.id, extra=extra))
        return models

    def error(self, status: int, headers: Headers, body: bytes) -> OmenError:
        """GigaChat's ``{"status", "message"}`` (or any other shape) -> OpenAI's error shape."""
        err = normalise_error(self.id, status, body, headers)
        text = err.message.lower()
        if status == 404 and "model" in text:
            err.code, err.param = "model_not_found", "model"
        elif status == 401:
            # only reached after the transport retried with a fresh token
            err.message = f"Upstream provider '{self.id}' refused OMEN's access token: {err.message}"
        elif status == 413:
            err.code = err.code or "request_too_large"
        return err


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _embedding_input(value: str | list[Any]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not value:
        raise bad_request("'input' must not be empty.", param="input")
    if all(isinstance(v, str) for v in value):
        return list(value)
    raise bad_request(
        "This provider (GigaChat) does not accept token-id input for embeddings; send text.", param="input"
    )


__all__ = ["DEFAULT_BASE_URL", "GigaChatProvider"]
