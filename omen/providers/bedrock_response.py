"""Bedrock answers -> OpenAI: stop reasons, usage, Converse results and AWS errors (providers.md §7.3, §7.5,
§10.2, §10.6, §10.7)."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from omen.errors import OmenError
from omen.providers.base import Headers, Usage
from omen.providers.bedrock_request import JSON_TOOL
from omen.providers.upstream_errors import invalid_upstream_body, normalise_error

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def finish_reason(stop_reason: Any, json_object: bool = False) -> str:
    """``malformed_model_output`` / ``malformed_tool_use`` and unknown future reasons map to "stop"; a
    json_object answer arrives as a forced tool call but is plain content to the client."""
    reason = _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    return "stop" if reason == "tool_calls" and json_object else reason


class TokenUsage(msgspec.Struct):
    inputTokens: int = 0
    outputTokens: int = 0
    cacheReadInputTokens: int = 0
    cacheWriteInputTokens: int = 0

    def to_usage(self) -> Usage:
        # Converse's inputTokens counts only the tokens that were neither read from nor written to the
        # prompt cache; OpenAI's prompt_tokens counts the whole prompt, cached part included.
        prompt = self.inputTokens + self.cacheReadInputTokens + self.cacheWriteInputTokens
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=self.outputTokens,
            total_tokens=prompt + self.outputTokens,
            cached_tokens=self.cacheReadInputTokens,
        )


class _OutputMessage(msgspec.Struct):
    content: list[dict[str, Any]] = []


class _Output(msgspec.Struct):
    message: _OutputMessage | None = None


class ConverseResponse(msgspec.Struct):
    output: _Output | None = None
    stopReason: str | None = None
    usage: TokenUsage | None = None


class TitanEmbedding(msgspec.Struct):
    embedding: list[float]
    inputTextTokenCount: int = 0


_converse_decoder = msgspec.json.Decoder(ConverseResponse)
_titan_decoder = msgspec.json.Decoder(TitanEmbedding)


def decode_converse(provider: str, body: bytes) -> ConverseResponse:
    try:
        return _converse_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise invalid_upstream_body(provider, "a Converse response", body) from None


def decode_titan(provider: str, body: bytes) -> TitanEmbedding:
    try:
        return _titan_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise invalid_upstream_body(provider, "an embeddings response", body) from None


def chat_message(blocks: list[dict[str, Any]], json_object: bool) -> dict[str, Any]:
    """Converse content blocks -> an OpenAI assistant message (text, tool calls, reasoning)."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input") if use.get("input") is not None else {}).decode()
            if json_object and use.get("name") == JSON_TOOL:
                texts.append(arguments)
                continue
            calls.append(
                {
                    "id": use.get("toolUseId") or "",
                    "type": "function",
                    "function": {"name": use.get("name") or "", "arguments": arguments},
                }
            )
        elif isinstance(block.get("reasoningContent"), dict):
            text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            if isinstance(text, str):
                reasoning.append(text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


# ---- errors ------------------------------------------------------------------------------------------

# AWS exception -> (OpenAI status, type, code). AWS sends auth failures as 403; they become 401 here so
# OpenAI clients see an authentication error rather than a permission one.
_AUTH = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)
_ERRORS: dict[str, tuple[int, str, str | None]] = {
    "ValidationException": (400, "invalid_request_error", None),
    "ServiceQuotaExceededException": (429, "insufficient_quota", "insufficient_quota"),
    "AccessDeniedException": (403, "permission_error", "access_denied"),
    "ResourceNotFoundException": (404, "invalid_request_error", "model_not_found"),
    "ModelTimeoutException": (408, "timeout", "upstream_timeout"),
    "ThrottlingException": (429, "rate_limit_error", "rate_limit_exceeded"),
    "ModelNotReadyException": (429, "rate_limit_error", "model_not_ready"),
    "ModelErrorException": (502, "server_error", "upstream_model_error"),
    "ModelStreamErrorException": (502, "server_error", "upstream_model_error"),
    "InternalServerException": (500, "server_error", None),
    "ServiceUnavailableException": (503, "server_error", "overloaded"),
    **{name: (401, "authentication_error", "upstream_auth_failed") for name in _AUTH},
}


def exception_name(value: str | None) -> str:
    """``ThrottlingException:http://internal.amazon.com/coral/...`` or ``com.amazon...#ThrottlingException``
    (or a stream frame's ``throttlingException``) -> ``ThrottlingException``."""
    if not value:
        return ""
    name = value.split(":", 1)[0].rsplit("#", 1)[-1].strip()
    return name[:1].upper() + name[1:]


def _auth_message(provider: str, name: str) -> str:
    # AWS's own text for signature errors quotes the canonical request, signed header values included
    # (the session token): it is never passed on.
    return (
        f"Upstream provider '{provider}' rejected the gateway's AWS credentials ({name}). Check the "
        "access_key_id / secret_access_key / session_token, profile or api_key configured for it."
    )


def aws_error(provider: str, status: int, name: str, message: str | None, headers: Headers | None = None) -> OmenError:
    """One AWS exception (HTTP error or stream exception frame) -> the OpenAI-shaped error."""
    mapped = _ERRORS.get(name)
    out_status, type_, code = mapped if mapped is not None else (status, None, None)
    if name in _AUTH:
        text = _auth_message(provider, name)
    elif message:
        text = f"Bedrock {name}: {message}" if name else message
    else:
        text = f"Upstream provider '{provider}' returned HTTP {status}{f' ({name})' if name else ''}."
    fields: dict[str, Any] = {"message": text, "type": type_, "code": code}
    if code == "model_not_found":
        fields["param"] = "model"
    return normalise_error(provider, out_status, text.encode(), headers, fields=fields)


def http_error(provider: str, status: int, headers: Headers, body: bytes) -> OmenError:
    """An HTTP error: the exception name is in ``x-amzn-ErrorType`` (or the body's ``__type``), the
    text in ``message`` (``Message`` for some exceptions)."""
    try:
        parsed = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        parsed = None
    fields = parsed if isinstance(parsed, dict) else {}
    name = ""
    for key, value in headers:
        if key.lower() == "x-amzn-errortype":
            name = exception_name(value)
            break
    if not name and isinstance(fields.get("__type"), str):
        name = exception_name(fields["__type"])
    if not name and status == 424:  # only model errors use 424; a proxy may have dropped the header
        name = "ModelErrorException"
    message = fields.get("message") or fields.get("Message")
    if not isinstance(message, str) or not message:
        if not name:  # not an AWS error body (a proxy's HTML page, an empty answer)
            return normalise_error(provider, status, body, headers)
        message = None
    return aws_error(provider, status, name, message, headers)


__all__ = [
    "ConverseResponse",
    "TitanEmbedding",
    "TokenUsage",
    "aws_error",
    "chat_message",
    "decode_converse",
    "decode_titan",
    "exception_name",
    "finish_reason",
    "http_error",
]
