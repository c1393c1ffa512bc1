"""Anthropic's Messages API (providers.md §5): ``x-api-key`` + ``anthropic-version`` headers, named SSE
events with ``input_json_delta`` argument pieces, usage with prompt-cache counters, errors in
``{"type":"error","error":{"type","message"}}``, and a paged ``/v1/models``.

The fake validates requests about as strictly as Anthropic does (roles must alternate, every
``tool_use`` needs its ``tool_result`` first in the next user turn, no unknown top-level keys, no
empty text blocks), so a translator bug shows up as a 400 rather than as a quietly wrong answer.

Prompt caching is emulated: blocks up to the last ``cache_control`` breakpoint (the whole prompt for a
top-level ``cache_control``) form the cached prefix; the first request with a given prefix reports it
as ``cache_creation_input_tokens``, later ones as ``cache_read_input_tokens``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from .common import (
    SSE_CT,
    ApiError,
    Ctx,
    Plan,
    count_tokens,
    echo_text,
    json_plan,
    limit_pieces,
    reply_text,
    split_arguments,
    split_words,
    tool_arguments,
)

VERSION_HEADER = "anthropic-version"
DEFAULT_MODELS: list[tuple[str, str, str]] = [
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
]
_TOP_LEVEL = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "cache_control",
        "service_tier",
        "container",
        "inference_geo",
    }
)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {
    400: "Invalid request (fake upstream fault).",
    401: "invalid x-api-key",
    402: "Your credit balance is too low to access the Anthropic API.",
    403: "Your API key does not have permission to use the specified resource.",
    404: "The requested resource could not be found.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error",
    503: "Service unavailable",
    504: "Request timed out",
    529: "Overloaded",
}
REQUEST_ID = "req_011CFakeUpstreamRequest"


def _bad(message: str) -> ApiError:
    return ApiError(400, message, type="invalid_request_error")


# ---- routing, auth, error shapes (the native-kind interface, see routes.native_wire) ------------------


def resolve(method: str, path: str, query: dict[str, str]) -> tuple[Any, dict[str, str]]:
    if method == "POST" and path == "/v1/messages":
        return messages, {}
    if method == "GET" and path == "/v1/models":
        return list_models, {}
    if method == "GET" and path.startswith("/v1/models/"):
        return get_model, {"model": path[len("/v1/models/") :]}
    raise ApiError(404, "Not Found", type="not_found_error")


def check_auth(opts: Any, headers: dict[str, str], path: str, query: dict[str, str]) -> None:
    if opts.api_key is not None:
        key = headers.get("x-api-key")
        if not key:
            raise ApiError(401, "x-api-key header is required", type="authentication_error")
        if key != opts.api_key:
            raise ApiError(401, "invalid x-api-key", type="authentication_error")
    if not headers.get(VERSION_HEADER):
        raise _bad("anthropic-version: header is required")


def error_body(err: ApiError, model: str | None) -> dict[str, Any]:
    status = err.status
    kind = err.type or _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    message = err.message or _ERROR_MESSAGES.get(status, "Internal server error" if status >= 500 else "Bad request")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": REQUEST_ID}


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def mid_stream_error(message: str) -> bytes:
    return event("error", {"error": {"type": "overloaded_error", "message": message}})


# ---- request validation -------------------------------------------------------------------------------


def _check_text(block: dict[str, Any], where: str) -> None:
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad(f"{where}.text: Field required")
    if not text.strip():
        raise _bad(f"{where}: text content blocks must contain non-whitespace text")


def _check_image(block: dict[str, Any], where: str) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _bad(f"{where}.source: Field required")
    if source.get("type") == "base64":
        if source.get("media_type") not in _IMAGE_TYPES:
            raise _bad(
                f"{where}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
            )
        if not isinstance(source.get("data"), str) or not source["data"]:
            raise _bad(f"{where}.source.data: Field required")
    elif source.get("type") == "url":
        if not isinstance(source.get("url"), str) or not source["url"].startswith(("http://", "https://")):
            raise _bad(f"{where}.source.url: Input should be a valid URL")
    else:
        raise _bad(f"{where}.source.type: Input should be 'base64' or 'url'")


def _blocks(content: Any, where: str, role: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content:
            raise _bad(f"{where}: messages must have non-empty content")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise _bad(f"{where}: messages must have non-empty content")
    for k, block in enumerate(content):
        here = f"{where}.{k}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            _check_text(block, here)
        elif kind == "image" and role == "user":
            _check_image(block, here)
        elif kind == "document" and role == "user":
            if not isinstance(block.get("source"), dict):
                raise _bad(f"{here}.source: Field required")
        elif kind == "tool_use" and role == "assistant":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(f"{here}: tool_use blocks need an id and a name")
            if not isinstance(block.get("input"), dict):
                raise _bad(f"{here}.input: Input should be a valid dictionary")
        elif kind == "tool_result" and role == "user":
            if not isinstance(block.get("tool_use_id"), str):
                raise _bad(f"{here}.tool_use_id: Field required")
            inner = block.get("content")
            if isinstance(inner, list):
                for m, part in enumerate(inner):
                    if not isinstance(part, dict) or part.get("type") not in ("text", "image"):
                        raise _bad(f"{here}.content.{m}: Input tag is not one of 'text', 'image'")
                    (_check_text if part["type"] == "text" else _check_image)(part, f"{here}.content.{m}")
            elif inner is not None and not isinstance(inner, str):
                raise _bad(f"{here}.content: Input should be a valid string or list")
        else:
            raise _bad(f"{here}: Input tag '{kind}' is not allowed in {role} messages")
    return content


def _check_messages(messages: Any) -> list[tuple[str, list[dict[str, Any]]]]:
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: at least one message is required")
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ("user", "assistant"):
            raise _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if turns and turns[-1][0] == role:
            raise _bad(
                f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" '
                "roles in a row"
            )
        turns.append((role, _blocks(msg.get("content"), f"messages.{i}.content", role)))
    for i, (role, blocks) in enumerate(turns):
        if role != "user":
            continue
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        uses = [b["id"] for b in turns[i - 1][1] if b["type"] == "tool_use"] if i else []
        stray = [r for r in results if r not in uses]
        if stray:
            raise _bad(
                f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {stray[0]}. "
                "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            )
        missing = [u for u in uses if u not in results]
        if missing:
            raise _bad(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                "in the next message."
            )
        kinds = [b["type"] for b in blocks]
        if results and kinds[: len(results)] != ["tool_result"] * len(results):
            raise _bad(f"messages.{i}.content: tool_result blocks must come first in the message")
    if turns[-1][0] == "assistant" and any(b["type"] == "tool_use" for b in turns[-1][1]):
        raise _bad("messages: the final assistant message cannot contain tool_use blocks without results")
    return turns


def _check_body(ctx: Ctx) -> dict[str, Any]:
    body = ctx.body
    if not isinstance(body, dict):
        raise _bad("There was an issue with your request body: it is not a JSON object.")
    for key in body:
        if key not in _TOP_LEVEL:
            raise _bad(f"{key}: Extra inputs are not permitted")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: Field required")
    if ctx.opts.models is not None and model not in ctx.opts.models:
        raise ApiError(404, f"model: {model}", type="not_found_error")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("max_tokens: Field required")
    system = body.get("system")
    if isinstance(system, list):
        for k, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _bad(f"system.{k}: Input tag is not 'text'")
            _check_text(block, f"system.{k}")
    elif system is not None and not isinstance(system, str):
        raise _bad("system: Input should be a valid string or list")
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= 1):
        raise _bad("temperature: Input should be less than or equal to 1")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise _bad("stop_sequences: Input should be a valid list of strings")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
        raise _bad("metadata: Extra inputs are not permitted")
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools: Input should be a valid list")
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise _bad(f"tools.{k}.name: Field required")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise _bad(f"tools.{k}.input_schema: Input should be an object schema with type 'object'")
            names.append(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise _bad("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise _bad(f"tool_choice.name: tool '{choice.get('name')}' was not found in tools")
    output = body.get("output_config")
    if output is not None:
        fmt = output.get("format") if isinstance(output, dict) else None
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise _bad("output_config.format: Input should be a json_schema format with a schema object")
    return body


# ---- the fake model -----------------------------------------------------------------------------------


def _text_of(blocks: list[dict[str, Any]], kinds: tuple[str, ...] = ("text",)) -> str:
    out = []
    for block in blocks:
        if block.get("type") in kinds and block.get("type") == "text":
            out.append(block["text"])
        elif block.get("type") == "tool_result" and "tool_result" in kinds:
            inner = block.get("content")
            if isinstance(inner, str):
                out.append(inner)
            elif isinstance(inner, list):
                out.append(_text_of(inner))
    return " ".join(t for t in out if t)


def _prompt(turns: list[tuple[str, list[dict[str, Any]]]]) -> tuple[str, bool]:
    """What the fake echoes (the trailing tool results, else the last user text) and whether the last
    user turn carries tool results (then the fake answers instead of calling tools again)."""
    for role, blocks in reversed(turns):
        if role == "user":
            if any(b["type"] == "tool_result" for b in blocks):
                return _text_of(blocks, ("tool_result",)), True
            return _text_of(blocks), False
    return "", False


def _segments(body: dict[str, Any], turns: list[tuple[str, list[dict[str, Any]]]]) -> list[tuple[int, bool, Any]]:
    """``(tokens, is_breakpoint, identity)`` for every prompt block, in Anthropic's cache order
    (tools, system, messages)."""
    segs: list[tuple[int, bool, Any]] = []
    for tool in body.get("tools") or []:
        words = count_tokens(f"{tool.get('name', '')} {tool.get('description', '')}")
        segs.append((words, "cache_control" in tool, tool))
    system = body.get("system")
    if isinstance(system, str):
        segs.append((count_tokens(system), False, system))
    elif isinstance(system, list):
        segs.extend((count_tokens(b["text"]), "cache_control" in b, b) for b in system)
    for role, blocks in turns:
        for block in blocks:
            tokens = count_tokens(_text_of([block], ("text", "tool_result")))
            segs.append((tokens, "cache_control" in block, (role, block)))
    return segs


def _usage(ctx: Ctx, body: dict[str, Any], turns: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    segs = _segments(body, turns)
    total = sum(s[0] for s in segs)
    marks = [i for i, s in enumerate(segs) if s[1]]
    if body.get("cache_control") is not None and segs:
        marks.append(len(segs) - 1)
    prefix = creation = read = 0
    if marks:
        end = max(marks) + 1
        prefix = sum(s[0] for s in segs[:end])
        key = hashlib.sha256(orjson.dumps([s[2] for s in segs[:end]], option=orjson.OPT_SORT_KEYS)).hexdigest()
        cache: set[str] = vars(ctx.opts).setdefault("_anthropic_prompt_cache", set())
        if key in cache:
            read = prefix
        else:
            cache.add(key)
            creation = prefix
    return {
        "input_tokens": total - prefix,
        "cache_creation_input_tokens": creation,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": creation, "ephemeral_1h_input_tokens": 0},
        "service_tier": "standard",
    }


def _tool_calls(body: dict[str, Any], text: str, count: int) -> list[tuple[str, str, str]]:
    """``(id, name, arguments-json)`` for each call the fake makes."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return []
    if choice.get("type") == "tool":
        chosen = [t for t in tools if t["name"] == choice["name"]][:1]
    else:
        limit = 1 if choice.get("disable_parallel_tool_use") else max(1, count)
        chosen = tools[:limit]
    calls = []
    for i, tool in enumerate(chosen):
        args = orjson.dumps(tool_arguments({"parameters": tool["input_schema"]}, text)).decode()
        digest = hashlib.md5(f"{i}:{tool['name']}:{args}".encode()).hexdigest()[:24]
        calls.append((f"toolu_{digest}", tool["name"], args))
    return calls


def _cut_at_stop(text: str, stops: list[str]) -> tuple[str, str | None]:
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if not hits:
        return text, None
    at, seq = min(hits)
    return text[:at], seq


def messages(ctx: Ctx) -> Plan:
    body = _check_body(ctx)
    turns = _check_messages(body.get("messages"))
    text, answering = _prompt(turns)
    calls = [] if answering else _tool_calls(body, text, ctx.opts.tool_calls)
    stop_sequence = None
    cut = False
    if calls:
        pieces = split_words(f"Let me call {', '.join(name for _, name, _ in calls)}.")
    else:
        fmt = (body.get("output_config") or {}).get("format")
        default = echo_text(text)
        if fmt is not None:
            default = orjson.dumps(tool_arguments({"parameters": fmt["schema"]}, text)).decode()
        reply, stop_sequence = _cut_at_stop(reply_text(ctx.opts, body, default), body.get("stop_sequences") or [])
        pieces = split_words(reply, ctx.opts.chunks) if reply else []
        pieces, cut = limit_pieces(pieces, body["max_tokens"])
    stop_reason = ctx.finish_reason or (
        "tool_use" if calls else "max_tokens" if cut else "stop_sequence" if stop_sequence else "end_turn"
    )
    arg_pieces = [split_arguments(args) for _, _, args in calls]
    usage = _usage(ctx, body, turns)
    output_tokens = len(pieces) + sum(len(p) for p in arg_pieces)
    model = body["model"]
    msg_id = f"msg_fake{ctx.seq:08d}"
    rid = (b"request-id", REQUEST_ID.encode())

    if body.get("stream") is True:
        start = {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": []}
        start |= {"stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
        events = [event("message_start", {"message": start})]
        index = 0
        if pieces:
            events.append(event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
            events.append(event("ping", {}))
            for piece in pieces:
                delta = {"type": "text_delta", "text": piece}
                events.append(event("content_block_delta", {"index": 0, "delta": delta}))
            events.append(event("content_block_stop", {"index": 0}))
            index = 1
        for (cid, name, _), frags in zip(calls, arg_pieces, strict=True):
            block = {"type": "tool_use", "id": cid, "name": name, "input": {}}
            events.append(event("content_block_start", {"index": index, "content_block": block}))
            for frag in ["", *frags]:  # Anthropic's first fragment is usually empty
                delta = {"type": "input_json_delta", "partial_json": frag}
                events.append(event("content_block_delta", {"index": index, "delta": delta}))
            events.append(event("content_block_stop", {"index": index}))
            index += 1
        stop = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
        events.append(event("message_delta", {"delta": stop, "usage": {"output_tokens": output_tokens}}))
        events.append(event("message_stop", {}))
        return Plan(200, [SSE_CT, (b"cache-control", b"no-cache"), rid], events, stream=True)

    content: list[dict[str, Any]] = []
    if pieces:
        content.append({"type": "text", "text": "".join(pieces)})
    for cid, name, args in calls:
        content.append({"type": "tool_use", "id": cid, "name": name, "input": orjson.loads(args)})
    resp = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {**usage, "output_tokens": output_tokens},
    }
    return json_plan(200, resp, [rid])


# ---- models -------------------------------------------------------------------------------------------


def _model_objs(ctx: Ctx) -> list[dict[str, Any]]:
    models = DEFAULT_MODELS if ctx.opts.models is None else [(m, m, "2025-01-01T00:00:00Z") for m in ctx.opts.models]
    return [{"type": "model", "id": m, "display_name": d, "created_at": c} for m, d, c in models]


def list_models(ctx: Ctx) -> Plan:
    models = _model_objs(ctx)
    try:
        limit = int(ctx.query.get("limit", "20"))
    except ValueError:
        raise _bad("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise _bad("limit: Input should be between 1 and 1000")
    after = ctx.query.get("after_id")
    if after:
        ids = [m["id"] for m in models]
        models = models[ids.index(after) + 1 :] if after in ids else []
    page = models[:limit]
    return json_plan(
        200,
        {
            "data": page,
            "has_more": len(models) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        },
    )


def get_model(ctx: Ctx) -> Plan:
    model = ctx.params.get("model", "")
    for obj in _model_objs(ctx):
        if obj["id"] == model:
            return json_plan(200, obj)
    raise ApiError(404, f"model: {model}", type="not_found_error")
