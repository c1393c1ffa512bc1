"""Google Gemini through the Generative Language API (providers.md §6), ``type = "gemini"``.

``[providers.gemini] api_key, base_url`` (default https://generativelanguage.googleapis.com; a base URL
ending in ``/v1beta`` or ``/v1`` picks that API version). The key travels in the ``x-goog-api-key``
header, never in the URL, so it cannot end up in access logs or proxies' URL logs.

Mapping (helpers in ``gemini_request``, ``gemini_response``, ``gemini_stream``, ``gemini_schema``):
chat -> ``:generateContent`` / ``:streamGenerateContent?alt=sse``; legacy completions -> the prompt as
one user turn (no ``suffix``/``echo``/``best_of``: refused with a 400); embeddings -> ``:embedContent``
for one string, ``:batchEmbedContents`` for a list; models -> ``GET /v1beta/models`` (one page of the
API's maximum size, 1000, which holds the whole catalogue), ``models/`` prefix stripped.

Images: ``inline_images = True`` — the pipeline fetches http(s) image URLs (with SSRF checks) and hands
this translator ``data:`` URIs, which become ``inlineData`` parts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import msgspec
import orjson

from omen.api.chat import ChatCompletionRequest
from omen.api.completions import CompletionRequest
from omen.api.decode import decode_body
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
    UpstreamRequest,
    Usage,
)
from omen.providers.gemini_request import chat_body, completion_body, embedding_texts
from omen.providers.gemini_response import (
    chat_choices,
    completion_choices,
    decode_response,
    embed_decoder,
    gemini_error,
    models_decoder,
)
from omen.providers.gemini_stream import GeminiChatStream, GeminiCompletionStream
from omen.providers.ollama import _float32_base64, random_id
from omen.providers.upstream_errors import invalid_upstream_body

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"
_VERSIONS = ("v1beta", "v1alpha", "v1")
_USABLE_METHODS = frozenset({"generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents"})
T = TypeVar("T")


def _request(call: Any, type_: type[T]) -> T:
    return call.request if call.request is not None else decode_body(call.raw, type_)


def model_path(model: str) -> str:
    """``gemini-2.5-flash`` / ``models/gemini-2.5-flash`` -> ``models/gemini-2.5-flash``;
    ``tunedModels/x`` stays. The name is percent-encoded so it cannot change the URL's path or query."""
    if model.startswith("tunedModels/"):
        collection, name = "tunedModels", model[len("tunedModels/") :]
    else:
        collection, name = "models", model.removeprefix("models/")
    if not name:
        raise bad_request("The upstream model name is empty.", param="model")
    return f"{collection}/{quote(name, safe='')}"


class GeminiProvider:
    """``clock`` and ``new_id`` make ids and timestamps deterministic in tests."""

    type: ClassVar[str] = "gemini"
    inline_images: ClassVar[bool] = True

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
        self._version = DEFAULT_API_VERSION
        for version in _VERSIONS:
            if base.endswith("/" + version):
                base, self._version = base[: -len(version) - 1], version
                break
        self._endpoint = base
        auth: Headers = [("x-goog-api-key", config.api_key)] if config.api_key else []
        names = {k.lower() for k in config.headers}
        self._auth = [h for h in auth if h[0].lower() not in names] + list(config.headers.items())
        self._post_headers = [("Content-Type", "application/json"), *self._auth]

    def endpoints(self) -> list[str]:
        return [self._endpoint]

    def _post(self, model: str, method: str, body: dict[str, Any], stream: bool = False) -> UpstreamRequest:
        path = f"/{self._version}/{model_path(model)}:{method}"
        if stream:
            path += "?alt=sse"  # without it the stream is one progressively sent JSON array
        # a fresh header list per request: the transport may add to it
        return UpstreamRequest("POST", path, list(self._post_headers), orjson.dumps(body), stream=stream)

    def _generate(self, model: str, body: dict[str, Any], stream: bool) -> UpstreamRequest:
        return self._post(model, "streamGenerateContent" if stream else "generateContent", body, stream)

    def _envelope(self, call: Any, prefix: str, kind: str, choices: list[Any], usage: Usage) -> Result:
        out = {
            "id": f"{prefix}-{self._new_id()}",
            "object": kind,
            "created": int(self._clock()),
            "model": call.upstream_model,
            "choices": choices,
            "usage": usage.to_openai(),
        }
        return Result(body=orjson.dumps(out), usage=usage)

    # -- chat --

    def chat_request(self, call: ChatCall) -> UpstreamRequest:
        req = _request(call, ChatCompletionRequest)
        return self._generate(call.upstream_model, chat_body(req), call.stream)

    def chat_result(self, call: ChatCall, body: bytes) -> Result:
        response = decode_response(self.id, body)
        choices = chat_choices(response, self._new_id)
        return self._envelope(call, "chatcmpl", "chat.completion", choices, response.usage())

    def chat_stream(self, call: ChatCall) -> GeminiChatStream:
        return GeminiChatStream(
            self.id,
            f"chatcmpl-{self._new_id()}",
            int(self._clock()),
            call.upstream_model,
            call.include_usage,
            self._new_id,
        )

    # -- legacy completions: the prompt as one user turn --

    def completion_request(self, call: CompletionCall) -> UpstreamRequest:
        req = _request(call, CompletionRequest)
        return self._generate(call.upstream_model, completion_body(req), call.stream)

    def completion_result(self, call: CompletionCall, body: bytes) -> Result:
        response = decode_response(self.id, body)
        return self._envelope(call, "cmpl", "text_completion", completion_choices(response), response.usage())

    def completion_stream(self, call: CompletionCall) -> GeminiCompletionStream:
        return GeminiCompletionStream(
            self.id,
            f"cmpl-{self._new_id()}",
            int(self._clock()),
            call.upstream_model,
            call.include_usage,
            self._new_id,
        )

    # -- embeddings --

    def embeddings_request(self, call: EmbeddingCall) -> UpstreamRequest:
        req = _request(call, EmbeddingRequest)
        texts = embedding_texts(req.input)
        extra: dict[str, Any] = {}
        if req.dimensions is not None:
            if req.dimensions < 1:
                raise bad_request("'dimensions' must be at least 1.", param="dimensions")
            extra["outputDimensionality"] = req.dimensions
        if isinstance(req.input, str):
            return self._post(call.upstream_model, "embedContent", {"content": _text_content(texts[0]), **extra})
        model = model_path(call.upstream_model)
        requests = [{"model": model, "content": _text_content(t), **extra} for t in texts]
        return self._post(call.upstream_model, "batchEmbedContents", {"requests": requests})

    def embeddings_result(self, call: EmbeddingCall, body: bytes) -> Result:
        try:
            parsed = embed_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise invalid_upstream_body(self.id, "an embeddings response", body) from None
        if parsed.embeddings is not None:
            vectors = [e.values for e in parsed.embeddings]
        elif parsed.embedding is not None:
            vectors = [parsed.embedding.values]
        else:
            raise invalid_upstream_body(self.id, "an embeddings response", body)
        as_base64 = _request(call, EmbeddingRequest).encoding_format == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _float32_base64(v) if as_base64 else v}
            for i, v in enumerate(vectors)
        ]
        # The Gemini API reports no token usage for embeddings
        out = {
            "object": "list",
            "data": data,
            "model": call.upstream_model,
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }
        return Result(body=orjson.dumps(out), usage=Usage())

    # -- models and errors --

    def models_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", f"/{self._version}/models?pageSize=1000", list(self._auth))

    def models_result(self, body: bytes) -> list[ModelInfo]:
        try:
            listing = models_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise invalid_upstream_body(self.id, "a model list", body) from None
        models = []
        for item in listing.models:
            name = item.get("name")
            if not isinstance(name, str) or not name:
                continue
            methods = item.get("supportedGenerationMethods")
            if isinstance(methods, list) and not _USABLE_METHODS.intersection(methods):
                continue  # e.g. Imagen (predict) or Live (bidiGenerateContent): not reachable through OMEN
            extra = {
                k: item[k]
                for k in ("displayName", "description", "inputTokenLimit", "outputTokenLimit", "version")
                if k in item
            }
            if isinstance(methods, list):
                extra["supportedGenerationMethods"] = methods
            models.append(ModelInfo(id=name.removeprefix("models/"), owned_by=self.id, extra=extra))
        return models

    def error(self, status: int, headers: Headers, body: bytes) -> OmenError:
        return gemini_error(self.id, status, body, headers)


def _text_content(text: str) -> dict[str, Any]:
    return {"parts": [{"text": text}]}


__all__ = ["DEFAULT_BASE_URL", "GeminiProvider", "model_path"]
