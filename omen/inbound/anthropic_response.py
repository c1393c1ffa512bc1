"""OpenAI chat result -> Anthropic ``Message`` JSON, and OMEN errors in Anthropic's error shape (sans-IO).

Shared by the non-streamed answer and the stream writer: the id (``msg_`` + the upstream id's
suffix, so a message can be traced to the upstream completion), ``stop_reason`` from
``finish_reason`` and ``usage`` (Anthropic's ``input_tokens`` excludes cache reads, which OpenAI
counts inside ``prompt_tokens``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from omen.errors import OmenError
from omen.providers.base import Usage
from omen.providers.upstream_errors import invalid_upstream_body

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_SAFE_ID = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def random_id() -> str:
    return secrets.token_hex(12)


def message_id(upstream_id: str, new_id: Callable[[], str] = random_id) -> str:
    """``msg_`` + the upstream id without its ``chatcmpl-`` prefix when it is plain, else a new one (an
    Anthropic upstream's ``msg_`` id is kept as it is)."""
    rest = upstream_id.removeprefix("chatcmpl-").removeprefix("msg_")
    if rest and len(rest) <= 64 and all(c in _SAFE_ID for c in rest):
        return "msg_" + rest
    return "msg_" + new_id()


def stop_reason(finish_reason: str | None, tool_use: bool) -> str:
    reason = STOP_REASONS.get(finish_reason or "stop", "end_turn")
    # Some servers finish with "stop" after tool calls; Anthropic clients run tools on "tool_use".
    if tool_use and reason == "end_turn":
        return "tool_use"
    return reason


def usage_json(usage: Usage | None) -> bytes:
    if usage is None:
        return b'{"input_tokens":0,"output_tokens":0}'
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return b'{"input_tokens":%d,"cache_creation_input_tokens":0,"cache_read_input_tokens":%d,"output_tokens":%d}' % (
        usage.prompt_tokens - cached,
        cached,
        usage.completion_tokens,
    )


def tool_input(arguments: Any) -> dict[str, Any]:
    """OpenAI's arguments string -> Anthropic's ``input`` object. Arguments that are not a JSON object
    (a model's broken JSON) are kept, not dropped, under ``_raw_arguments``."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        value = None
    if isinstance(value, dict):
        return value
    return {"_raw_arguments": arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()}


def error_body(error: OmenError, request_id: str | None = None) -> bytes:
    """``{"type":"error","error":{"type","message"},"request_id"}``; the type follows the status, as
    Anthropic's SDKs expect. Anthropic errors have no ``param``: it is named in the message."""
    kind = ERROR_TYPES.get(error.status) or ("api_error" if error.status >= 500 else "invalid_request_error")
    message = error.message
    if error.param and error.param not in message:
        message = f"{error.param}: {message}"
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


# ---- non-streamed result -----------------------------------------------------------------------------


class _Function(msgspec.Struct):
    name: str = ""
    arguments: Any = None


class _ToolCall(msgspec.Struct):
    function: _Function
    id: str | None = None


class _Message(msgspec.Struct):
    content: Any = None
    refusal: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _Completion(msgspec.Struct):
    id: str = ""
    choices: list[_Choice] = []
    usage: Any = None


_completion = msgspec.json.Decoder(_Completion)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # a few servers answer with parts
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def message_from_openai(
    body: bytes,
    usage: Usage | None,
    model: str,
    *,
    provider: str = "upstream",
    thinking: bool = False,
    new_id: Callable[[], str] = random_id,
) -> bytes:
    """An OpenAI ``chat.completion`` body -> an Anthropic ``Message`` body. ``usage`` is the translator's
    normalised usage (read from the body when None). ``thinking``: the client enabled extended thinking,
    so reasoning text the upstream returned is shown as a ``thinking`` block."""
    try:
        completion = _completion.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise invalid_upstream_body(provider, "a response", body) from None
    if not completion.choices:
        raise invalid_upstream_body(provider, "a response without choices", body)
    choice = completion.choices[0]
    msg = choice.message
    content: list[dict[str, Any]] = []
    if thinking and msg.reasoning_content:
        content.append({"type": "thinking", "thinking": msg.reasoning_content, "signature": ""})
    text = _text(msg.content) or msg.refusal or ""
    if text:
        content.append({"type": "text", "text": text})
    calls = msg.tool_calls or []
    for call in calls:
        content.append(
            {
                "type": "tool_use",
                "id": call.id or f"toolu_{new_id()}",
                "name": call.function.name,
                "input": tool_input(call.function.arguments),
            }
        )
    finish = "content_filter" if msg.refusal and not msg.content else choice.finish_reason
    if usage is None:
        usage = Usage.from_openai(completion.usage)
    head = orjson.dumps(
        {
            "id": message_id(completion.id, new_id),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason(finish, bool(calls)),
            "stop_sequence": None,
        }
    )
    return head[:-1] + b',"usage":' + usage_json(usage) + b"}"
