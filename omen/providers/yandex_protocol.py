"""Yandex Foundation Models wire types (REST = proto3 JSON, camelCase) and error mapping.

Proto3 JSON writes int64 values as strings (``"inputTextTokens": "19"``) and enums as names
(``"ALTERNATIVE_STATUS_FINAL"``); parsers must also accept numbers for both, so every such field is read
either way. Errors come in grpc-gateway's shape ``{"error": {"grpcCode", "httpCode", "message",
"httpStatus", "details"}}`` or the plain ``{"code", "message", "details"}`` one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from omen.errors import OmenError
from omen.providers.base import Headers, Usage
from omen.providers.upstream_errors import UpstreamError, normalise_error

PARTIAL = "ALTERNATIVE_STATUS_PARTIAL"
_STATUS_NAMES = (
    "ALTERNATIVE_STATUS_UNSPECIFIED",
    PARTIAL,
    "ALTERNATIVE_STATUS_TRUNCATED_FINAL",
    "ALTERNATIVE_STATUS_FINAL",
    "ALTERNATIVE_STATUS_CONTENT_FILTER",
    "ALTERNATIVE_STATUS_TOOL_CALLS",
)
FINISH_REASONS = {
    "ALTERNATIVE_STATUS_FINAL": "stop",
    "ALTERNATIVE_STATUS_TRUNCATED_FINAL": "length",
    "ALTERNATIVE_STATUS_CONTENT_FILTER": "content_filter",
    "ALTERNATIVE_STATUS_TOOL_CALLS": "tool_calls",
}

# gRPC status code -> (HTTP status, OpenAI-style error code) — grpc-gateway's own mapping.
_GRPC: dict[int, tuple[int, str | None]] = {
    1: (499, "cancelled"),
    2: (500, None),
    3: (400, "invalid_argument"),
    4: (504, "deadline_exceeded"),
    5: (404, "not_found"),
    6: (409, "already_exists"),
    7: (403, "permission_denied"),
    8: (429, "rate_limit_exceeded"),
    9: (400, "failed_precondition"),
    10: (409, "aborted"),
    11: (400, "out_of_range"),
    12: (501, "unimplemented"),
    13: (500, None),
    14: (503, None),
    15: (500, None),
    16: (401, "unauthenticated"),
}


def to_int(value: Any) -> int:
    """An int64 from proto3 JSON: a string of digits or a number; anything else counts as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0


def status_name(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(_STATUS_NAMES):
        return _STATUS_NAMES[value]
    return value if isinstance(value, str) else _STATUS_NAMES[0]


# ---- wire types (only the fields OMEN reads) -----------------------------------------------------------


class FunctionCall(msgspec.Struct):
    name: str = ""
    arguments: Any = None


class ToolCall(msgspec.Struct, rename="camel"):
    function_call: FunctionCall | None = None


class ToolCallList(msgspec.Struct, rename="camel"):
    tool_calls: list[ToolCall] = []


class WireMessage(msgspec.Struct, rename="camel"):
    role: str = ""
    text: str = ""
    tool_call_list: ToolCallList | None = None


class Alternative(msgspec.Struct):
    message: WireMessage | None = None
    status: Any = None

    @property
    def status_name(self) -> str:
        return status_name(self.status)

    @property
    def text(self) -> str:
        return self.message.text if self.message is not None else ""

    def calls(self) -> list[FunctionCall]:
        tcl = self.message.tool_call_list if self.message is not None else None
        return [c.function_call for c in tcl.tool_calls if c.function_call is not None] if tcl else []


class TokensDetails(msgspec.Struct, rename="camel"):
    reasoning_tokens: Any = None


class WireUsage(msgspec.Struct, rename="camel"):
    input_text_tokens: Any = None
    completion_tokens: Any = None
    total_tokens: Any = None
    completion_tokens_details: TokensDetails | None = None

    def to_usage(self) -> Usage:
        prompt, completion = to_int(self.input_text_tokens), to_int(self.completion_tokens)
        details = self.completion_tokens_details
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            reasoning_tokens=to_int(details.reasoning_tokens) if details is not None else 0,
        )


class CompletionResult(msgspec.Struct, rename="camel"):
    alternatives: list[Alternative] = []
    usage: WireUsage | None = None
    model_version: str = ""


class Envelope(CompletionResult):
    """One response object: ``{"result": {...}}`` (REST transcoding of the server-streaming RPC), the
    result's fields at the top level (tolerated), or ``{"error": {...}}``."""

    result: CompletionResult | None = None
    error: Any = None

    def body(self) -> CompletionResult:
        return self.result if self.result is not None else self


class Embedding(msgspec.Struct, rename="camel"):
    embedding: list[float] = []
    num_tokens: Any = None
    model_version: str = ""


envelope_decoder = msgspec.json.Decoder(Envelope)
embedding_decoder = msgspec.json.Decoder(Embedding)


# ---- errors ------------------------------------------------------------------------------------------


def error_fields(obj: Any) -> dict[str, Any] | None:
    """The error object of either Yandex shape, or None."""
    if not isinstance(obj, dict):
        return None
    err = obj.get("error")
    if isinstance(err, dict):
        return err
    if isinstance(err, str):
        return {"message": err}
    if "message" in obj and ("code" in obj or "details" in obj):
        return obj
    return None


def _grpc_code(fields: dict[str, Any]) -> int | None:
    for key in ("grpcCode", "code"):
        value = fields.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def upstream_error(
    provider: str,
    status: int,
    body: bytes,
    headers: Headers | None,
    redact: Callable[[str], str],
    *,
    fields: Any = None,
) -> UpstreamError:
    """A Yandex error -> the OpenAI-shaped error OMEN returns. ``status`` is the HTTP status; 0 for an
    error object inside a 200 stream, whose status then comes from its ``httpCode`` / gRPC code.
    ``redact`` masks the provider's own credentials should an error message quote them."""
    if fields is None:
        try:
            fields = error_fields(orjson.loads(body)) if body.strip() else None
        except orjson.JSONDecodeError:
            fields = None
    grpc = _grpc_code(fields) if fields else None
    mapped_status, code = _GRPC.get(grpc, (0, None)) if grpc is not None else (0, None)
    if not status:
        http = to_int(fields.get("httpCode")) if fields else 0
        status = http if 400 <= http <= 599 else mapped_status or 502
    message = fields.get("message") if fields else None
    # normalise_error would read Yandex's numeric "code" as an OpenAI code: give it only the message
    plain = {"message": message} if isinstance(message, str) and message else None
    err = normalise_error(provider, status, body, headers, fields=plain)
    err.message = redact(err.message)
    if err.code is None and code is not None and mapped_status == status:
        err.code = code
    if status == 404 and "model" in err.message.lower():
        err.code, err.param = "model_not_found", "model"
    return err


def stream_error(provider: str, error: Any, redact: Callable[[str], str]) -> OmenError:
    """An ``{"error": …}`` object in the middle of a 200 stream."""
    fields = error if isinstance(error, dict) else {"message": str(error)}
    err = upstream_error(provider, 0, b"", None, redact, fields=fields)
    err.message = f"Upstream provider '{provider}' reported: {err.message}"
    return err
