"""Gemini ``GenerateContentResponse`` -> OpenAI results, plus usage, finish reasons and errors
(providers.md §6.3, §6.6, §10.2, §10.6, §10.7)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from omen.errors import OmenError
from omen.providers.base import Headers, Usage
from omen.providers.gemini_request import encode_call_id
from omen.providers.upstream_errors import invalid_upstream_body, normalise_error, status_hint

# ---- wire types (REST JSON is camelCase; only the fields OMEN reads are decoded) ---------------------


class FunctionCallPart(msgspec.Struct, rename="camel"):
    name: str = ""
    args: Any = None


class Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False
    thought_signature: str | None = None
    function_call: FunctionCallPart | None = None


class Content(msgspec.Struct, rename="camel"):
    parts: list[Part] = []


class Candidate(msgspec.Struct, rename="camel"):
    content: Content | None = None
    finish_reason: str | None = None
    index: int = 0  # proto3 JSON omits zero values: the first candidate often has no "index"


class PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None
    block_reason_message: str | None = None


class UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    cached_content_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0

    def usage(self) -> Usage:
        """§10.6: prompt = prompt (+ tool-use prompt); completion = candidates + thoughts, because Gemini
        counts thinking outside ``candidatesTokenCount`` while OpenAI counts reasoning inside
        ``completion_tokens``. ``cachedContentTokenCount`` is part of ``promptTokenCount``, as OpenAI's
        ``cached_tokens`` is part of ``prompt_tokens``."""
        prompt = self.prompt_token_count + self.tool_use_prompt_token_count
        completion = self.candidates_token_count + self.thoughts_token_count
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cached_tokens=self.cached_content_token_count,
            reasoning_tokens=self.thoughts_token_count,
        )


class GenerateContentResponse(msgspec.Struct, rename="camel"):
    candidates: list[Candidate] = []
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    error: Any = None  # Google's error object, when one arrives in a 200 body or a stream

    def usage(self) -> Usage:
        return self.usage_metadata.usage() if self.usage_metadata is not None else Usage()


class Embedding(msgspec.Struct):
    values: list[float] = []


class EmbedResponse(msgspec.Struct):
    embedding: Embedding | None = None  # :embedContent
    embeddings: list[Embedding] | None = None  # :batchEmbedContents


class ModelList(msgspec.Struct, rename="camel"):
    models: list[dict[str, Any]] = []
    next_page_token: str | None = None


response_decoder = msgspec.json.Decoder(GenerateContentResponse)
# a stream body without alt=sse is one JSON array of responses: accepted too
stream_payload_decoder = msgspec.json.Decoder(GenerateContentResponse | list[GenerateContentResponse])
embed_decoder = msgspec.json.Decoder(EmbedResponse)
models_decoder = msgspec.json.Decoder(ModelList)


# ---- finish reasons -----------------------------------------------------------------------------------

_CONTENT_FILTER = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "LANGUAGE",
    }
)


def finish_reason(reason: str | None, tool_calls: bool) -> str:
    """§10.2. Gemini has no tool-call reason: a candidate with functionCall parts ends with STOP.
    MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, TOO_MANY_TOOL_CALLS, OTHER and unknown values end
    the answer without a better OpenAI equivalent: "stop"."""
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _CONTENT_FILTER:
        return "content_filter"
    return "tool_calls" if tool_calls else "stop"


# ---- tool calls ---------------------------------------------------------------------------------------


def openai_tool_call(part: Part, new_id: Callable[[], str]) -> dict[str, Any]:
    fc = part.function_call
    assert fc is not None
    return {
        "id": encode_call_id(new_id(), part.thought_signature),
        "type": "function",
        "function": {"name": fc.name, "arguments": orjson.dumps(fc.args if fc.args is not None else {}).decode()},
    }


# ---- errors -------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


def _google_error(body: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, list) and obj:  # the JSON-array stream form wraps the error in a list
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    return err if isinstance(err, dict) else None


def _reasons(err: dict[str, Any]) -> tuple[list[str], str | None]:
    """ErrorInfo reasons and the RetryInfo delay from Google's ``details``."""
    reasons: list[str] = []
    delay: str | None = None
    for detail in err.get("details") or ():
        if not isinstance(detail, dict):
            continue
        if isinstance(detail.get("reason"), str):
            reasons.append(detail["reason"])
        if isinstance(detail.get("retryDelay"), str):
            delay = detail["retryDelay"]
    return reasons, delay


def gemini_error(provider: str, status: int, body: bytes, headers: Headers | None = None) -> OmenError:
    """Google's ``{"error":{"code","message","status","details"}}`` -> the OpenAI error (§10.7)."""
    err = _google_error(body)
    fields = {"message": err.get("message")} if err is not None else None
    out = normalise_error(provider, status, body, headers, fields=fields)
    if err is None:
        return out
    google_status = err.get("status") if isinstance(err.get("status"), str) else ""
    reasons, delay = _reasons(err)
    if "API_KEY_INVALID" in reasons or (status == 400 and "API key not valid" in out.message):
        # Google answers a bad key with 400 INVALID_ARGUMENT; clients branch on 401 for that
        out.status, out.type, out.code = 401, "authentication_error", "invalid_api_key"
    elif google_status == "UNAUTHENTICATED":
        out.type = "authentication_error"
    elif google_status == "PERMISSION_DENIED":
        out.type, out.code = "permission_error", "permission_denied"
    elif google_status == "NOT_FOUND" and "models/" in out.message:
        out.code, out.param = "model_not_found", "model"
    elif google_status == "FAILED_PRECONDITION":
        out.code = "failed_precondition"  # billing / region: retrying will not help
    elif google_status == "UNAVAILABLE":
        out.code = "overloaded"
    if status in (429, 503) and delay is not None and "retry-after" not in out.headers:
        match = _DURATION.match(delay)
        if match:  # RetryInfo "37.5s" -> Retry-After: 38 (OpenAI SDKs honour the header)
            out.headers["retry-after"] = str(math.ceil(float(match[1])))
    return out


def in_band_error(provider: str, error: Any) -> OmenError:
    """An error object inside a 200 body or a stream: its ``code`` names the HTTP status."""
    body = orjson.dumps({"error": error})
    status = status_hint(error if isinstance(error, dict) else None, 502)
    return gemini_error(provider, status, body)


def prompt_blocked(feedback: PromptFeedback) -> OmenError:
    """No candidates because the prompt itself was blocked: the request is refused, as Azure does."""
    reason = feedback.block_reason or "unknown"
    detail = f": {feedback.block_reason_message}" if feedback.block_reason_message else "."
    return OmenError(
        400,
        f"The prompt was blocked by the upstream's content filter (Gemini blockReason {reason}){detail}",
        type="invalid_request_error",
        code="content_filter",
        param="messages",
    )


def decode_response(provider: str, body: bytes) -> GenerateContentResponse:
    try:
        response = response_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise invalid_upstream_body(provider, "a response", body) from None
    if response.error is not None:
        raise in_band_error(provider, response.error)
    if not response.candidates:
        if response.prompt_feedback is not None and response.prompt_feedback.block_reason:
            raise prompt_blocked(response.prompt_feedback)
        raise OmenError(
            502,
            f"Upstream provider '{provider}' returned no candidates.",
            type="server_error",
            code="upstream_invalid_response",
        )
    return response


# ---- complete results ---------------------------------------------------------------------------------


def _split_parts(candidate: Candidate) -> tuple[list[str], list[str], list[Part]]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[Part] = []
    for part in candidate.content.parts if candidate.content is not None else ():
        if part.function_call is not None:
            calls.append(part)
        elif part.text is not None:
            (thoughts if part.thought else texts).append(part.text)
    return texts, thoughts, calls


def chat_choices(response: GenerateContentResponse, new_id: Callable[[], str]) -> list[dict[str, Any]]:
    choices = []
    for candidate in sorted(response.candidates, key=lambda c: c.index):
        texts, thoughts, call_parts = _split_parts(candidate)
        calls = [openai_tool_call(p, new_id) for p in call_parts]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts or not calls else None,
            "refusal": None,
        }
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": candidate.index,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(candidate.finish_reason, bool(calls)),
            }
        )
    return choices


def completion_choices(response: GenerateContentResponse) -> list[dict[str, Any]]:
    choices = []
    for candidate in sorted(response.candidates, key=lambda c: c.index):
        texts, _, _ = _split_parts(candidate)
        choices.append(
            {
                "text": "".join(texts),
                "index": candidate.index,
                "logprobs": None,
                "finish_reason": finish_reason(candidate.finish_reason, False),
            }
        )
    return choices


__all__ = [
    "Candidate",
    "GenerateContentResponse",
    "Part",
    "UsageMetadata",
    "chat_choices",
    "completion_choices",
    "decode_response",
    "embed_decoder",
    "finish_reason",
    "gemini_error",
    "in_band_error",
    "models_decoder",
    "openai_tool_call",
    "prompt_blocked",
    "stream_payload_decoder",
]
