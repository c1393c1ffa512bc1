"""AWS Bedrock Runtime through Converse / ConverseStream (chat) and InvokeModel (Titan embeddings).

Requests are translated here (helpers in ``bedrock_request``, ``bedrock_response``, ``bedrock_stream``)
and signed by :meth:`BedrockProvider.authorize` once the transport has the final URL, with botocore's
SigV4 signer (``bedrock_auth``). Bedrock cannot fetch image URLs, so ``inline_images`` asks the gateway
to hand over http(s) images as ``data:`` URIs.

Not served: legacy ``/v1/completions`` (Converse is chat only) and the model list (Bedrock's
ListFoundationModels is on the control-plane host ``bedrock.{region}.amazonaws.com``, not this one).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

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
    UpstreamRequest,
    Usage,
)
from omen.providers.bedrock_auth import BearerKey, resolve_credentials, sigv4_headers
from omen.providers.bedrock_request import converse_body
from omen.providers.bedrock_response import chat_message, decode_converse, decode_titan, finish_reason, http_error
from omen.providers.bedrock_stream import BedrockChatStream
from omen.providers.credentials import require_header_safe
from omen.providers.ollama import _float32_base64, _request, random_id


def default_endpoint(region: str) -> str:
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def model_path(model: str, operation: str) -> str:
    """``/model/{modelId}/{operation}``. Model ids, inference-profile ids and ARNs contain ':' and '/',
    so the id is percent-encoded as one path segment (SigV4 then signs the encoded form, re-encoded)."""
    return f"/model/{quote(model, safe='')}/{operation}"


class BedrockProvider:
    """``type = "bedrock"``. ``environ`` (default ``os.environ``) is where the AWS variables and shared
    files are looked up; ``clock`` and ``new_id`` make ids and timestamps deterministic in tests."""

    type: ClassVar[str] = "bedrock"
    inline_images: ClassVar[bool] = True

    def __init__(
        self,
        provider_id: str,
        config: ProviderConfig,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = random_id,
    ) -> None:
        self.id = provider_id
        self.config = config
        self._clock = clock
        self._new_id = new_id
        if not config.region:
            raise ValueError(f"provider '{provider_id}': set region (or AWS_REGION); SigV4 signs for one region")
        self.region = config.region
        self._endpoint = (config.base_url or default_endpoint(config.region)).rstrip("/")
        self._credentials = resolve_credentials(provider_id, config, os.environ if environ is None else environ)
        if isinstance(self._credentials, BearerKey):
            require_header_safe(provider_id, "the Bedrock API key", self._credentials.key)
        else:  # from the environment or a profile too: a stray newline would otherwise be quoted in errors
            frozen = self._credentials.get_frozen_credentials()
            require_header_safe(provider_id, "the AWS access key id", frozen.access_key)
            require_header_safe(provider_id, "the AWS session token", frozen.token)
        # What botocore sends: Content-Type always, Accept only for InvokeModel (there it is a modelled
        # parameter naming the response body's type); Converse and ConverseStream get none.
        names = {k.lower() for k in config.headers}
        content_type = [] if "content-type" in names else [("Content-Type", "application/json")]
        accept = [] if "accept" in names else [("Accept", "application/json")]
        self._headers = [*content_type, *config.headers.items()]
        self._invoke_headers = [*content_type, *accept, *config.headers.items()]

    @property
    def credential_values(self) -> tuple[str, ...]:
        """What errors must never quote (omen.providers.credentials), wherever the keys were found."""
        if isinstance(self._credentials, BearerKey):
            return (self._credentials.key,)
        creds = self._credentials.get_frozen_credentials()
        return tuple(v for v in (creds.access_key, creds.secret_key, creds.token) if v)

    def endpoints(self) -> list[str]:
        return [self._endpoint]

    def authorize(self, request: UpstreamRequest, url: str, token: str | None) -> Headers:
        """Sign the final URL and body: ``X-Amz-Content-SHA256``, ``X-Amz-Date``, ``X-Amz-Security-Token``
        (session credentials) and ``Authorization``; or the ``Bearer`` header of a Bedrock API key."""
        if isinstance(self._credentials, BearerKey):
            return [("Authorization", f"Bearer {self._credentials.key}")]
        return sigv4_headers(self._credentials, self.region, request.method, url, request.headers, request.body or b"")

    def _post(self, model: str, operation: str, body: dict[str, Any], stream: bool = False) -> UpstreamRequest:
        # a fresh list per request: the transport may add to it
        headers = list(self._invoke_headers if operation == "invoke" else self._headers)
        return UpstreamRequest("POST", model_path(model, operation), headers, orjson.dumps(body), stream=stream)

    # -- chat --

    def chat_request(self, call: ChatCall) -> UpstreamRequest:
        body, _ = converse_body(_request(call, ChatCompletionRequest))
        return self._post(call.upstream_model, "converse-stream" if call.stream else "converse", body, call.stream)

    def _json_object(self, call: ChatCall) -> bool:
        format_ = _request(call, ChatCompletionRequest).response_format or {}
        return format_.get("type") == "json_object"

    def chat_result(self, call: ChatCall, body: bytes) -> Result:
        parsed = decode_converse(self.id, body)
        json_object = self._json_object(call)
        blocks = parsed.output.message.content if parsed.output and parsed.output.message else []
        usage = parsed.usage.to_usage() if parsed.usage is not None else None
        out: dict[str, Any] = {
            "id": f"chatcmpl-{self._new_id()}",
            "object": "chat.completion",
            "created": int(self._clock()),
            "model": call.upstream_model,
            "choices": [
                {
                    "index": 0,
                    "message": chat_message(blocks, json_object),
                    "logprobs": None,
                    "finish_reason": finish_reason(parsed.stopReason, json_object),
                }
            ],
        }
        if usage is not None:
            out["usage"] = usage.to_openai()
        return Result(body=orjson.dumps(out), usage=usage)

    def chat_stream(self, call: ChatCall) -> BedrockChatStream:
        return BedrockChatStream(
            self.id,
            f"chatcmpl-{self._new_id()}",
            int(self._clock()),
            call.upstream_model,
            call.include_usage,
            self._json_object(call),
        )

    # -- legacy completions: not a Converse operation --

    def _no_completions(self) -> OmenError:
        return OmenError(
            400,
            "This provider (Bedrock) serves chat models through Converse; use /v1/chat/completions.",
            code="unsupported_endpoint",
            param="model",
        )

    def completion_request(self, call: CompletionCall) -> UpstreamRequest:
        raise self._no_completions()

    def completion_result(self, call: CompletionCall, body: bytes) -> Result:
        raise self._no_completions()

    def completion_stream(self, call: CompletionCall) -> BedrockChatStream:
        raise self._no_completions()

    # -- embeddings (Titan Text Embeddings through InvokeModel: one input per call) --

    def embeddings_request(self, call: EmbeddingCall) -> UpstreamRequest:
        req = _request(call, EmbeddingRequest)
        value = req.input
        if isinstance(value, list):
            if len(value) != 1 or not isinstance(value[0], str):
                raise bad_request(
                    "This provider (Bedrock Titan embeddings) embeds one text per request; "
                    "send 'input' as a string or a list of one string.",
                    param="input",
                )
            value = value[0]
        if not value:
            raise bad_request("'input' must not be empty.", param="input")
        body: dict[str, Any] = {"inputText": value}
        if req.dimensions is not None:
            body["dimensions"] = req.dimensions
        return self._post(call.upstream_model, "invoke", body)

    def embeddings_result(self, call: EmbeddingCall, body: bytes) -> Result:
        parsed = decode_titan(self.id, body)
        as_base64 = _request(call, EmbeddingRequest).encoding_format == "base64"
        vector: Any = _float32_base64(parsed.embedding) if as_base64 else parsed.embedding
        tokens = parsed.inputTextTokenCount
        out = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": call.upstream_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Result(body=orjson.dumps(out), usage=Usage(prompt_tokens=tokens, total_tokens=tokens))

    # -- models and errors --

    def models_request(self) -> UpstreamRequest | None:
        return None  # ListFoundationModels lives on the control-plane host, not bedrock-runtime

    def models_result(self, body: bytes) -> list[ModelInfo]:
        return []

    def error(self, status: int, headers: Headers, body: bytes) -> OmenError:
        return http_error(self.id, status, headers, body)


__all__ = ["BedrockProvider", "default_endpoint", "model_path"]
