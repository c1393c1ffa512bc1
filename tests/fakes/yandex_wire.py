"""Yandex Foundation Models' native REST API (providers.md §9).

Wire rules: proto3 JSON (camelCase, int64 values such as ``maxTokens`` and usage counts as strings,
enums by name); every answer is wrapped in ``{"result": ...}`` and newline-terminated (REST transcoding
of a server-streaming RPC); streams are newline-separated objects whose text is **cumulative**, the
last one with the final status; errors are ``{"error": {"grpcCode", "httpCode", "message",
"httpStatus", "details"}}`` (unknown paths answer grpc-gateway's plain ``{"code", "message", "details"}``).
Auth: ``Authorization: Api-Key <key>`` or ``Bearer <IAM token>`` (the fake's ``api_key`` option is the
credential either way); a Bearer token also needs ``x-folder-id``.

The fake model echoes like the others. Tools:

* native function calling (``tools`` -> ``toolCallList``, status ``ALTERNATIVE_STATUS_TOOL_CALLS``) for
  ``yandexgpt`` and ``llama``; other models ignore ``tools``, as Yandex documents;
* OMEN's prompt-based protocol (omen/providers/yandex_tools.py): when the system prompt lists tools
  between ``<tools>`` and ``</tools>``, the fake obeys it and answers with the fenced JSON block calling
  ``tool_calls`` of them (after a ``Tool results:`` turn it echoes the results instead). To script any
  other answer — prose around a block, a malformed block — set ``reply`` (see :func:`tool_block`).
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

import orjson

from .common import (
    JSON_CT,
    ApiError,
    Ctx,
    Plan,
    count_tokens,
    echo_text,
    embedding_vector,
    json_plan,
    limit_pieces,
    ndjson,
    pick_tools,
    reply_text,
    split_words,
    tool_arguments,
)

API = "/foundationModels/v1"
MODELS = ["yandexgpt", "yandexgpt-lite", "yandexgpt-32k", "llama", "llama-lite"]
EMBEDDING_MODELS = ["text-search-doc", "text-search-query"]
NATIVE_TOOLS = {"yandexgpt", "llama"}
VERSIONS = {"latest", "rc", "deprecated"}
MODEL_VERSION = "23.10.2024"
REASONING_TOKENS = 3
TOOL_RESULTS_HEADER = "Tool results:"

PARTIAL = "ALTERNATIVE_STATUS_PARTIAL"
FINAL = "ALTERNATIVE_STATUS_FINAL"
_STATUS_FOR_REASON = {
    "stop": FINAL,
    "length": "ALTERNATIVE_STATUS_TRUNCATED_FINAL",
    "content_filter": "ALTERNATIVE_STATUS_CONTENT_FILTER",
    "tool_calls": "ALTERNATIVE_STATUS_TOOL_CALLS",
}
_GRPC_FOR_STATUS = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1, 500: 13, 501: 12, 503: 14, 504: 4}
_DEFAULT_MESSAGES = {
    400: "Invalid argument",
    401: "Unknown api key",
    403: "Permission denied",
    404: "Not found",
    429: "ai.textGenerationCompletionSessionsCount.count gauge quota limit exceed: allowed 10 requests",
    500: "Internal error",
    503: "Service is not available now",
}
_TOOLS = re.compile(r"<tools>\s*(.*?)\s*</tools>", re.S)
_BLOCK = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S)


# ---- routing, auth, errors (the native_wire interface) ------------------------------------------------


def resolve(method: str, path: str, query: dict[str, str]) -> tuple[Any, dict[str, str]]:
    if method == "POST" and path == f"{API}/completion":
        return completion, {}
    if method == "POST" and path == f"{API}/textEmbedding":
        return text_embedding, {}
    raise ApiError(404, body={"code": 5, "message": "Not Found", "details": []})


def _mask(key: str) -> str:
    return f"{key[:4]}***" if len(key) > 8 else "***"


def check_auth(opts: Any, headers: dict[str, str], path: str, query: dict[str, str]) -> None:
    if opts.api_key is None:
        return
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    if scheme == "Api-Key" and credential == opts.api_key:
        return
    if scheme == "Bearer" and credential == opts.api_key:
        if not headers.get("x-folder-id"):
            raise ApiError(403, "Permission denied: an IAM token needs the x-folder-id header")
        return
    if scheme == "Bearer":
        raise ApiError(401, "The token is invalid")
    if scheme == "Api-Key":
        raise ApiError(401, f"Unknown api key '{_mask(credential)}'")
    raise ApiError(401, "The request is not authenticated: use Api-Key or Bearer authorization")


def error_body(err: ApiError, model: str | None) -> Any:
    status = err.status
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    return {
        "error": {
            "grpcCode": _GRPC_FOR_STATUS.get(status, 13 if status >= 500 else 3),
            "httpCode": status,
            "message": err.message or _DEFAULT_MESSAGES.get(status, "Internal error" if status >= 500 else "Error"),
            "httpStatus": phrase,
            "details": [],
        }
    }


def mid_stream_error(message: str) -> bytes:
    return ndjson(error_body(ApiError(500, message), None))


# ---- request checks --------------------------------------------------------------------------------


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _object(ctx: Ctx) -> dict[str, Any]:
    if not isinstance(ctx.body, dict):
        raise _bad("Syntax error: invalid JSON body")
    return ctx.body


def _uri(value: Any, scheme: str, known: list[str]) -> str:
    """``<scheme>://<folder>/<model>[/<version>]`` -> the model name (404 for unknown models)."""
    if not isinstance(value, str) or not value.startswith(f"{scheme}://"):
        raise _bad(f"Invalid model URI {value!r}: expected {scheme}://<folder_id>/<model>/<version>")
    parts = value[len(scheme) + 3 :].split("/")
    if len(parts) not in (2, 3) or not all(parts) or (len(parts) == 3 and parts[2] not in VERSIONS):
        raise _bad(f"Invalid model URI {value!r}")
    if parts[1] not in known:
        raise ApiError(404, f"Model {value} not found")
    return parts[1]


def _int64(value: Any, name: str) -> int | None:
    """proto3 JSON int64: a string of digits (what Yandex writes) or a number."""
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _bad(f"invalid value for int64 field {name}: {value!r}")


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: must not be empty")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant"):
            raise _bad(f"messages[{i}].role: must be system, user or assistant")
        kinds = [k for k in ("text", "toolCallList", "toolResultList") if k in msg]
        if len(kinds) != 1:
            raise _bad(f"messages[{i}]: exactly one of text, toolCallList, toolResultList is required")
    return messages


def _options(body: dict[str, Any]) -> tuple[bool, int | None, bool]:
    """``(stream, maxTokens, reasoning)`` from ``completionOptions``."""
    options = body.get("completionOptions") or {}
    if not isinstance(options, dict):
        raise _bad("completionOptions: must be an object")
    temperature = options.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 1):
        raise _bad("completionOptions.temperature: must be between 0 and 1")
    limit = _int64(options.get("maxTokens"), "completionOptions.maxTokens")
    if limit is not None and limit < 1:
        raise _bad("completionOptions.maxTokens: must be greater than zero")
    reasoning = (options.get("reasoningOptions") or {}).get("mode") == "ENABLED_HIDDEN"
    return options.get("stream") is True, limit, reasoning


# ---- the model -------------------------------------------------------------------------------------


def tool_block(calls: list[tuple[str, dict[str, Any]]]) -> str:
    """An answer in OMEN's tool protocol (json.dumps spacing, so a stream cuts it into several pieces)."""
    body = {"tool_calls": [{"name": name, "arguments": args} for name, args in calls]}
    return "```json\n" + json.dumps(body, ensure_ascii=False) + "\n```"


def _protocol_tools(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tools OMEN listed in the system prompt for prompt-based calling."""
    for msg in messages:
        if msg.get("role") == "system" and isinstance(msg.get("text"), str):
            found = _TOOLS.search(msg["text"])
            if found:
                tools = orjson.loads(found.group(1))
                return [t for t in tools if isinstance(t, dict)]
    return []


def _protocol_results(text: str) -> list[str] | None:
    """The contents of a ``Tool results:`` turn, or None when ``text`` is not one."""
    if not text.startswith(TOOL_RESULTS_HEADER):
        return None
    found = _BLOCK.search(text)
    if not found:
        return []
    return [str(r.get("content", "")) for r in orjson.loads(found.group(1)).get("tool_results", [])]


def _prompt(messages: list[dict[str, Any]]) -> tuple[str, bool]:
    """``(what to echo, whether the last turn carries tool results)``."""
    last = messages[-1]
    results = last.get("toolResultList")
    if isinstance(results, dict):
        contents = [
            str((r.get("functionResult") or {}).get("content", ""))
            for r in results.get("toolResults", [])
            if isinstance(r, dict)
        ]
        return " ".join(contents), True
    if isinstance(last.get("text"), str):
        emulated = _protocol_results(last["text"])
        if emulated is not None:
            return " ".join(emulated), True
    for msg in reversed(messages):
        if msg.get("role") == "user" and isinstance(msg.get("text"), str):
            return msg["text"], False
    return "", False


def _native_calls(ctx: Ctx, body: dict[str, Any], model: str, text: str) -> list[dict[str, Any]]:
    tools = body.get("tools")
    if model not in NATIVE_TOOLS or not isinstance(tools, list) or not tools:
        return []
    choice = body.get("toolChoice") or {}
    if choice.get("mode") == "NONE":
        return []
    forced = {"function": {"name": choice["functionName"]}} if "functionName" in choice else None
    count = 1 if body.get("parallelToolCalls") is False else ctx.opts.tool_calls
    openai_tools = [{"type": "function", "function": t.get("function")} for t in tools if isinstance(t, dict)]
    return [
        {"functionCall": {"name": fn.get("name", ""), "arguments": tool_arguments(fn, text)}}
        for fn in pick_tools(openai_tools, forced, count)
    ]


def _input_tokens(messages: list[dict[str, Any]]) -> int:
    total = 0
    for msg in messages:
        if isinstance(msg.get("text"), str):
            total += count_tokens(msg["text"])
        for result in (msg.get("toolResultList") or {}).get("toolResults", []):
            total += count_tokens(str((result.get("functionResult") or {}).get("content", "")))
    return total


def _usage(prompt: int, completion: int, reasoning: bool) -> dict[str, Any]:
    if reasoning:
        completion += REASONING_TOKENS
    usage: dict[str, Any] = {
        "inputTextTokens": str(prompt),
        "completionTokens": str(completion),
        "totalTokens": str(prompt + completion),
    }
    if reasoning:
        usage["completionTokensDetails"] = {"reasoningTokens": str(REASONING_TOKENS)}
    return usage


def _result(message: dict[str, Any], status: str, usage: dict[str, Any]) -> bytes:
    alternative = {"message": {"role": "assistant", **message}, "status": status}
    return ndjson({"result": {"alternatives": [alternative], "usage": usage, "modelVersion": MODEL_VERSION}})


def completion(ctx: Ctx) -> Plan:
    body = _object(ctx)
    model = _uri(body.get("modelUri"), "gpt", ctx.opts.models if ctx.opts.models is not None else MODELS)
    messages = _messages(body)
    stream, limit, reasoning = _options(body)
    if "jsonObject" in body and "jsonSchema" in body:
        raise _bad("only one of jsonObject, jsonSchema may be set")
    text, after_tools = _prompt(messages)
    calls = [] if after_tools else _native_calls(ctx, body, model, text)
    if calls:
        status = _STATUS_FOR_REASON.get(ctx.finish_reason or "tool_calls", ctx.finish_reason or "")
        usage = _usage(_input_tokens(messages), len(calls), reasoning)
        lines = [_result({"toolCallList": {"toolCalls": calls}}, status, usage)]
        if stream:
            lines.insert(0, _result({"text": ""}, PARTIAL, _usage(_input_tokens(messages), 0, reasoning)))
            return Plan(200, [JSON_CT], lines, stream=True, ndjson=True)
        return json_plan(200, lines[0])
    default = echo_text(text)
    protocol = _protocol_tools(messages)
    if protocol and not after_tools:
        chosen = pick_tools([{"type": "function", "function": t} for t in protocol], None, ctx.opts.tool_calls)
        default = tool_block([(fn.get("name", ""), tool_arguments(fn, text)) for fn in chosen])
    elif "jsonObject" in body or "jsonSchema" in body:
        default = json.dumps({"answer": default}, ensure_ascii=False)
    pieces = split_words(reply_text(ctx.opts, body, default), ctx.opts.chunks)
    pieces, cut = limit_pieces(pieces, limit)
    reason = ctx.finish_reason or ("length" if cut else "stop")
    status = _STATUS_FOR_REASON.get(reason, reason)
    prompt_tokens = _input_tokens(messages)
    if not stream:
        return json_plan(200, _result({"text": "".join(pieces)}, status, _usage(prompt_tokens, len(pieces), reasoning)))
    lines = []
    for k in range(1, len(pieces) + 1):
        text_so_far = "".join(pieces[:k])  # cumulative, as Yandex streams it
        final = k == len(pieces)
        usage = _usage(prompt_tokens, k, reasoning)
        lines.append(_result({"text": text_so_far}, status if final else PARTIAL, usage))
    if not lines:
        lines.append(_result({"text": ""}, status, _usage(prompt_tokens, 0, reasoning)))
    return Plan(200, [JSON_CT], lines, stream=True, ndjson=True)


def text_embedding(ctx: Ctx) -> Plan:
    body = _object(ctx)
    known = ctx.opts.models if ctx.opts.models is not None else EMBEDDING_MODELS
    _uri(body.get("modelUri"), "emb", known)
    text = body.get("text")
    if not isinstance(text, str):
        raise _bad("text: invalid value for string field")
    dims = _int64(body.get("dim"), "dim") or ctx.opts.embedding_dims
    return json_plan(
        200,
        {
            "embedding": embedding_vector(text, dims),
            "numTokens": str(count_tokens(text)),
            "modelVersion": MODEL_VERSION,
        },
    )
