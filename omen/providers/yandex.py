"""YandexGPT through Yandex Foundation Models' native REST API (``/foundationModels/v1/completion``,
``/foundationModels/v1/textEmbedding``).

Auth: ``Authorization: Api-Key <api_key>`` or ``Authorization: Bearer <iam_token>``, plus
``x-folder-id: <folder_id>`` (the folder is also part of every model URI). Model ids are short
(``yandexgpt/rc``, ``yandexgpt-lite``, ``text-search-doc``) and turned into URIs here (yandex_models);
the documented ones are listed in /v1/models without any request, since Yandex has no listing endpoint.

Translation: request mapping in yandex_request, cumulative-text streams in yandex_stream, tool calling
native for YandexGPT Pro / Llama 70B and prompt-emulated for the other models (yandex_tools), wire types
and errors in yandex_protocol. Images are refused (text-only models); stop sequences are applied by OMEN.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec
import orjson

from omen.api.chat import ChatCompletionRequest
from omen.api.completions import CompletionRequest
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
from omen.providers.ollama import _float32_base64, random_id
from omen.providers.upstream_errors import invalid_upstream_body
from omen.providers.yandex_models import (
    DEFAULT_BASE_URL,
    chat_uri,
    embedding_uri,
    static_model_ids,
)
from omen.providers.yandex_protocol import (
    FINISH_REASONS,
    Alternative,
    CompletionResult,
    embedding_decoder,
    envelope_decoder,
    stream_error,
    to_int,
    upstream_error,
)
from omen.providers.yandex_request import chat_body, completion_body, decoded, emulated_tools, stop_list
from omen.providers.yandex_stream import YandexStream, complete_answer, first_stop

COMPLETION_PATH = "/foundationModels/v1/completion"
EMBEDDING_PATH = "/foundationModels/v1/textEmbedding"


class YandexProvider:
    """``type = "yandex"``. ``clock`` and ``new_id`` make ids and timestamps deterministic in tests."""

    type: ClassVar[str] = "yandex"
    # No listing endpoint: models_result returns the documented ids without a request, and the gateway
    # lists them at startup (omen/pipeline/discovery.py).
    static_models: ClassVar[bool] = True

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
        self._endpoint = base.removesuffix("/foundationModels/v1")  # tolerate a pasted API prefix
        auth: Headers = []
        if config.api_key:
            auth.append(("Authorization", f"Api-Key {config.api_key}"))
        elif config.iam_token:
            auth.append(("Authorization", f"Bearer {config.iam_token}"))
        if config.folder_id:
            auth.append(("x-folder-id", config.folder_id))
        names = {k.lower() for k in config.headers}
        auth = [h for h in auth if h[0].lower() not in names] + list(config.headers.items())
        self._post_headers = [("Content-Type", "application/json"), *auth]
        self._secrets = [s for s in (config.api_key, config.iam_token) if s]

    def endpoints(self) -> list[str]:
        return [self._endpoint]

    def _redact(self, text: str) -> str:
        """Errors are relayed to clients: never let them quote the provider's own credentials."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _post(self, path: str, body: dict[str, Any], stream: bool = False) -> UpstreamRequest:
        return UpstreamRequest("POST", path, list(self._post_headers), orjson.dumps(body), stream=stream)

    def _decode(self, body: bytes) -> CompletionResult:
        """A non-streamed answer: one ``{"result": …}`` object (if several arrive, the last is final)."""
        try:
            env = envelope_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            lines = [line for line in body.split(b"\n") if line.strip()]
            try:
                env = envelope_decoder.decode(lines[-1]) if len(lines) > 1 else None
            except (msgspec.DecodeError, msgspec.ValidationError):
                env = None
            if env is None:
                raise invalid_upstream_body(self.id, "a response", body) from None
        if env.error is not None:
            raise stream_error(self.id, env.error, self._redact)
        result = env.body()
        if not result.alternatives:
            raise invalid_upstream_body(self.id, "a response without alternatives", body)
        return result

    @staticmethod
    def _stopped(alt: Alternative, stops: list[str]) -> tuple[str, str]:
        """The alternative's text and finish reason, cut at the first stop sequence."""
        text, reason = alt.text, FINISH_REASONS.get(alt.status_name, "stop")
        cut = first_stop(text, stops) if stops else -1
        return (text[:cut], "stop") if cut != -1 else (text, reason)

    # -- chat --

    def chat_request(self, call: ChatCall) -> UpstreamRequest:
        req = decoded(call, ChatCompletionRequest)
        uri = chat_uri(call.upstream_model, self.config.folder_id)
        return self._post(COMPLETION_PATH, chat_body(req, uri, call.stream), call.stream)

    def chat_result(self, call: ChatCall, body: bytes) -> Result:
        result = self._decode(body)
        req = decoded(call, ChatCompletionRequest)
        tools = emulated_tools(req, chat_uri(call.upstream_model, self.config.folder_id))
        alt = result.alternatives[0]
        text, reason = self._stopped(alt, stop_list(req.stop))
        single = req.parallel_tool_calls is False
        text, calls, reason = complete_answer(text, reason, alt.calls(), tools, single, self._new_id)
        message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
        if calls:
            message["tool_calls"] = calls
        usage = result.usage.to_usage() if result.usage is not None else Usage()
        out = {
            "id": f"chatcmpl-{self._new_id()}",
            "object": "chat.completion",
            "created": int(self._clock()),
            "model": call.upstream_model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reason}],
            "usage": usage.to_openai(),
        }
        return Result(body=orjson.dumps(out), usage=usage)

    def chat_stream(self, call: ChatCall) -> YandexStream:
        req = decoded(call, ChatCompletionRequest)
        return YandexStream(
            self.id,
            self._redact,
            f"chatcmpl-{self._new_id()}",
            int(self._clock()),
            call.upstream_model,
            call.include_usage,
            self._new_id,
            stops=stop_list(req.stop),
            tool_names=emulated_tools(req, chat_uri(call.upstream_model, self.config.folder_id)),
            single_call=req.parallel_tool_calls is False,
        )

    # -- legacy completions: the prompt as one user message --

    def completion_request(self, call: CompletionCall) -> UpstreamRequest:
        req = decoded(call, CompletionRequest)
        uri = chat_uri(call.upstream_model, self.config.folder_id)
        return self._post(COMPLETION_PATH, completion_body(req, uri, call.stream), call.stream)

    def completion_result(self, call: CompletionCall, body: bytes) -> Result:
        result = self._decode(body)
        req = decoded(call, CompletionRequest)
        text, reason = self._stopped(result.alternatives[0], stop_list(req.stop))
        reason = "stop" if reason == "tool_calls" else reason
        usage = result.usage.to_usage() if result.usage is not None else Usage()
        out = {
            "id": f"cmpl-{self._new_id()}",
            "object": "text_completion",
            "created": int(self._clock()),
            "model": call.upstream_model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}],
            "usage": usage.to_openai(),
        }
        return Result(body=orjson.dumps(out), usage=usage)

    def completion_stream(self, call: CompletionCall) -> YandexStream:
        req = decoded(call, CompletionRequest)
        return YandexStream(
            self.id,
            self._redact,
            f"cmpl-{self._new_id()}",
            int(self._clock()),
            call.upstream_model,
            call.include_usage,
            self._new_id,
            chat=False,
            stops=stop_list(req.stop),
        )

    # -- embeddings: one text per call --

    def embeddings_request(self, call: EmbeddingCall) -> UpstreamRequest:
        req = decoded(call, EmbeddingRequest)
        body: dict[str, Any] = {
            "modelUri": embedding_uri(call.upstream_model, self.config.folder_id),
            "text": _embedding_text(req.input),
        }
        if req.dimensions is not None:
            if req.dimensions < 1:
                raise bad_request("'dimensions' must be at least 1.", param="dimensions")
            body["dim"] = str(req.dimensions)  # int64: a string in proto3 JSON
        return self._post(EMBEDDING_PATH, body)

    def embeddings_result(self, call: EmbeddingCall, body: bytes) -> Result:
        try:
            parsed = embedding_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise invalid_upstream_body(self.id, "an embeddings response", body) from None
        as_base64 = decoded(call, EmbeddingRequest).encoding_format == "base64"
        tokens = to_int(parsed.num_tokens)
        vector = _float32_base64(parsed.embedding) if as_base64 else parsed.embedding
        out = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": call.upstream_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Result(body=orjson.dumps(out), usage=Usage(prompt_tokens=tokens, total_tokens=tokens))

    # -- models and errors --

    def models_request(self) -> UpstreamRequest | None:
        return None  # Yandex has no model listing; see models_result

    def models_result(self, body: bytes) -> list[ModelInfo]:
        """The documented models (``body`` is not used: there is no listing request)."""
        return [ModelInfo(id=model, owned_by=self.id) for model in static_model_ids()]

    def error(self, status: int, headers: Headers, body: bytes) -> OmenError:
        return upstream_error(self.id, status, body, headers, self._redact)


def _embedding_text(value: str | list[Any]) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        raise bad_request(
            "This provider (Yandex) embeds one text per request: send 'input' as a single string "
            f"(got a list of {len(value)}).",
            param="input",
        )
    raise bad_request("This provider (Yandex) does not accept token-id input for embeddings; send text.", param="input")


__all__ = ["YandexProvider"]
