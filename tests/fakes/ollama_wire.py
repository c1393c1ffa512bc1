"""Ollama's native API (providers.md §4): NDJSON streams by default, tool calls whole, usage at the end."""

from __future__ import annotations

import hashlib
from typing import Any

from .common import (
    DEFAULT_MODELS,
    NDJSON_CT,
    ApiError,
    Ctx,
    Plan,
    content_text,
    count_tokens,
    echo_text,
    embedding_vector,
    json_plan,
    limit_pieces,
    messages_tokens,
    ndjson,
    pick_tools,
    prompt_text,
    reply_text,
    split_words,
    text_plan,
    tool_arguments,
)

CREATED_AT = "2025-01-01T00:00:00.000000Z"
VERSION = "0.12.6"


def full_name(name: str) -> str:
    """``llama3.2`` and ``llama3.2:latest`` are the same model to Ollama."""
    return name if ":" in name else f"{name}:latest"


def _models(ctx: Ctx) -> list[str]:
    return ctx.opts.models if ctx.opts.models is not None else DEFAULT_MODELS["ollama"]


def _body(ctx: Ctx) -> dict[str, Any]:
    if not isinstance(ctx.body, dict):
        raise ApiError(400, "invalid character 'x' looking for beginning of value")
    return ctx.body


def _model(ctx: Ctx, body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required")
    if full_name(model) not in {full_name(m) for m in _models(ctx)}:
        raise ApiError(404, f"model '{model}' not found")
    return model


def _metrics(prompt_tokens: int, eval_tokens: int) -> dict[str, int]:
    """Ollama's timing fields (nanoseconds), derived from the token counts so they are deterministic."""
    load, prompt_ns, eval_ns = 1_000_000, 100_000 * prompt_tokens, 1_000_000 * eval_tokens
    return {
        "total_duration": load + prompt_ns + eval_ns + 500_000,
        "load_duration": load,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": prompt_ns,
        "eval_count": eval_tokens,
        "eval_duration": eval_ns,
    }


def _stream(body: dict[str, Any]) -> bool:
    return body.get("stream", True) is not False


def _ndjson_plan(lines: list[bytes]) -> Plan:
    return Plan(200, [NDJSON_CT], lines, stream=True, ndjson=True)


def _json(obj: dict[str, Any]) -> Plan:
    plan = json_plan(200, obj)
    plan.headers[0] = (b"content-type", b"application/json; charset=utf-8")
    return plan


def chat(ctx: Ctx) -> Plan:
    body = _body(ctx)
    model = _model(ctx, body)
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise ApiError(400, "json: cannot unmarshal into Go struct field ChatRequest.messages")
    head = {"model": model, "created_at": CREATED_AT}
    if not messages:
        return _json({**head, "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": True})
    text = prompt_text(messages)
    calls: list[dict[str, Any]] = []
    if messages[-1].get("role") != "tool":
        for fn in pick_tools(body.get("tools"), None, ctx.opts.tool_calls):
            calls.append({"function": {"name": fn.get("name", ""), "arguments": tool_arguments(fn, text)}})
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    pieces: list[str] = []
    cut = False
    if not calls:
        pieces = split_words(reply_text(ctx.opts, body, echo_text(text)), ctx.opts.chunks)
        pieces, cut = limit_pieces(pieces, options.get("num_predict"))
    eval_count = len(pieces) + len(calls)
    done = {
        "done_reason": ctx.finish_reason or ("length" if cut else "stop"),
        "done": True,
        **_metrics(messages_tokens(messages), eval_count),
    }
    if _stream(body):
        lines = [ndjson({**head, "message": {"role": "assistant", "content": p}, "done": False}) for p in pieces]
        if calls:
            msg = {"role": "assistant", "content": "", "tool_calls": calls}
            lines.append(ndjson({**head, "message": msg, "done": False}))
        lines.append(ndjson({**head, "message": {"role": "assistant", "content": ""}, **done}))
        return _ndjson_plan(lines)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces)}
    if calls:
        message["tool_calls"] = calls
    return _json({**head, "message": message, **done})


def generate(ctx: Ctx) -> Plan:
    """``/api/generate``: ``prompt`` (+ ``suffix`` shown as `` [suffix: ...]``), ``response`` pieces."""
    body = _body(ctx)
    model = _model(ctx, body)
    head = {"model": model, "created_at": CREATED_AT}
    prompt = content_text(body.get("prompt"))
    if not prompt:
        return _json({**head, "response": "", "done": True, "done_reason": "load"})
    suffix = body.get("suffix")
    default = echo_text(prompt) + (f" [suffix: {suffix}]" if isinstance(suffix, str) and suffix else "")
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    pieces = split_words(reply_text(ctx.opts, body, default), ctx.opts.chunks)
    pieces, cut = limit_pieces(pieces, options.get("num_predict"))
    prompt_tokens = count_tokens(prompt)
    done = {
        "done": True,
        "done_reason": ctx.finish_reason or ("length" if cut else "stop"),
        "context": list(range(1, prompt_tokens + len(pieces) + 1)),
        **_metrics(prompt_tokens, len(pieces)),
    }
    if _stream(body):
        lines = [ndjson({**head, "response": p, "done": False}) for p in pieces]
        lines.append(ndjson({**head, "response": "", **done}))
        return _ndjson_plan(lines)
    return _json({**head, "response": "".join(pieces), **done})


def embed(ctx: Ctx) -> Plan:
    body = _body(ctx)
    model = _model(ctx, body)
    value = body.get("input", [])
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        texts = list(value)
    else:
        raise ApiError(400, "invalid input type")
    dims = body.get("dimensions") or ctx.opts.embedding_dims
    if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
        raise ApiError(400, "dimensions must be a positive integer")
    metrics = _metrics(count_tokens(texts), 0)
    return _json(
        {
            "model": model,
            "embeddings": [embedding_vector(t, dims) for t in texts],
            "total_duration": metrics["total_duration"],
            "load_duration": metrics["load_duration"],
            "prompt_eval_count": metrics["prompt_eval_count"],
        }
    )


def tags(ctx: Ctx) -> Plan:
    models = []
    for name in _models(ctx):
        full = full_name(name)
        family = name.split(":")[0].rstrip("0123456789.") or name
        models.append(
            {
                "name": full,
                "model": full,
                "modified_at": "2025-01-01T00:00:00.000000Z",
                "size": 2019393189,
                "digest": hashlib.sha256(full.encode()).hexdigest(),
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": family,
                    "families": [family],
                    "parameter_size": "3.2B",
                    "quantization_level": "Q4_K_M",
                },
            }
        )
    return _json({"models": models})


def version(ctx: Ctx) -> Plan:
    return _json({"version": VERSION})


def root(ctx: Ctx) -> Plan:
    return text_plan(200, "Ollama is running")
