"""Pure checks of OMEN's responses (bytes in, problems out), shared by the locustfile and unit-tested
in tests/test_load_short.py without importing locust (which monkey-patches the process with gevent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class StreamReport:
    problems: list[str] = field(default_factory=list)
    events: int = 0
    done: bool = False
    content: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage_chunks: list[dict[str, Any]] = field(default_factory=list)
    usage_on_choice_chunks: int = 0
    usage_null_chunks: int = 0
    """Chunks with a ``"usage": null`` member (OpenAI sends those only when include_usage is set)."""
    last_json_is_usage: bool = False


def parse_sse(body: bytes, *, complete: bool = True) -> StreamReport:
    """Validate an OpenAI chat SSE stream: every event is ``data: <JSON>`` or ``data: [DONE]``,
    [DONE] is last (when ``complete``), and chunks are ``chat.completion.chunk`` objects."""
    rep = StreamReport()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        rep.problems.append(f"stream is not UTF-8: {exc}")
        return rep
    text = text.replace("\r\n", "\n")
    blocks = text.split("\n\n")
    tail = blocks.pop()  # text after the last blank line: must be empty for a complete stream
    if complete and tail.strip():
        rep.problems.append(f"stream does not end with a blank line: {tail[-120:]!r}")
    for block in blocks:
        data_lines: list[str] = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue  # comment / keep-alive
            if line.startswith("data:"):
                data_lines.append(line[5:].removeprefix(" "))
            else:
                rep.problems.append(f"unexpected SSE line: {line[:120]!r}")
        if not data_lines:
            continue
        data = "\n".join(data_lines)
        rep.events += 1
        if rep.done:
            rep.problems.append(f"event after [DONE]: {data[:120]!r}")
            continue
        if data == "[DONE]":
            rep.done = True
            continue
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            rep.problems.append(f"data line is neither JSON nor [DONE]: {data[:120]!r}")
            continue
        _chunk(obj, rep)
    if complete and not rep.done:
        rep.problems.append("stream did not end with data: [DONE]")
    return rep


def _chunk(obj: Any, rep: StreamReport) -> None:
    if not isinstance(obj, dict):
        rep.problems.append(f"chunk is not an object: {str(obj)[:120]}")
        return
    if "error" in obj:
        rep.problems.append(f"in-stream error: {orjson.dumps(obj['error']).decode()[:300]}")
        return
    if obj.get("object") != "chat.completion.chunk":
        rep.problems.append(f"chunk object is {obj.get('object')!r}")
    choices = obj.get("choices")
    if not isinstance(choices, list):
        rep.problems.append("chunk without a choices list")
        return
    usage = obj.get("usage")
    rep.last_json_is_usage = not choices and isinstance(usage, dict)
    if not choices:
        if isinstance(usage, dict):
            rep.usage_chunks.append(usage)
        else:
            rep.problems.append("chunk with empty choices and no usage")
        return
    if usage is not None:
        rep.usage_on_choice_chunks += 1
    elif "usage" in obj:
        rep.usage_null_chunks += 1
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("index") != 0:
            rep.problems.append(f"unexpected choice: {str(choice)[:120]}")
            continue
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            rep.problems.append("choice without a delta object")
            continue
        content = delta.get("content")
        if isinstance(content, str):
            rep.content += content
        elif content is not None:
            rep.problems.append(f"delta content is {type(content).__name__}")
        for call in delta.get("tool_calls") or ():
            _tool_delta(call, rep)
        reason = choice.get("finish_reason")
        if reason is not None:
            rep.finish_reasons.append(reason)


def _tool_delta(call: Any, rep: StreamReport) -> None:
    if not isinstance(call, dict) or not isinstance(call.get("index"), int):
        rep.problems.append(f"tool_calls delta without an index: {str(call)[:120]}")
        return
    slot = rep.tool_calls.setdefault(call["index"], {"id": None, "type": None, "name": "", "arguments": ""})
    if call.get("id"):
        if slot["id"] is not None and slot["id"] != call["id"]:
            rep.problems.append("tool call id changed mid-stream")
        slot["id"] = call["id"]
    if call.get("type"):
        slot["type"] = call["type"]
    fn = call.get("function") or {}
    if fn.get("name"):
        slot["name"] += fn["name"]
    if isinstance(fn.get("arguments"), str):
        slot["arguments"] += fn["arguments"]


def usage_problems(usage: Any, prompt: int | None, completion: int | None) -> list[str]:
    """``usage`` must be a well-formed OpenAI usage object with these counts (None: any count)."""
    if not isinstance(usage, dict):
        return [f"usage missing ({usage!r})"]
    p, c, t = usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (p, c, t)):
        return [f"usage counts are not integers: {usage}"]
    out = []
    if t != p + c:
        out.append(f"usage total_tokens {t} != {p} + {c}")
    if prompt is not None and p != prompt:
        out.append(f"usage prompt_tokens {p}, expected {prompt}")
    if completion is not None and c != completion:
        out.append(f"usage completion_tokens {c}, expected {completion}")
    return out


def tool_call_problems(calls: list[dict[str, Any]], tool: dict[str, Any], text: str) -> list[str]:
    """Exactly one call of ``tool`` whose arguments are JSON ``{<first parameter>: text}``."""
    if len(calls) != 1:
        return [f"expected 1 tool call, got {len(calls)}"]
    call = calls[0]
    fn = tool["function"]
    out = []
    if not isinstance(call.get("id"), str) or not call["id"]:
        out.append("tool call without an id")
    if call.get("type") != "function":
        out.append(f"tool call type {call.get('type')!r}")
    if call.get("name") != fn["name"]:
        out.append(f"tool call name {call.get('name')!r}, expected {fn['name']!r}")
    try:
        args = orjson.loads(call.get("arguments") or "")
    except orjson.JSONDecodeError:
        return [*out, f"tool call arguments are not JSON: {str(call.get('arguments'))[:200]!r}"]
    first = next(iter(fn["parameters"]["properties"]))
    if args != {first: text}:
        out.append(f"tool call arguments {str(args)[:200]}, expected {{{first!r}: <prompt>}}")
    return out


def stream_usage_problems(
    rep: StreamReport, provider_kind: str, include_usage: bool, prompt: int | None, completion: int | None
) -> list[str]:
    """With ``include_usage``: exactly one usage chunk (``choices: []``), last before [DONE], with these
    counts. Without: no usage chunk, and no usage on content chunks either, except from xAI, which
    repeats a cumulative usage on every chunk itself (OMEN passes those chunks through)."""
    out: list[str] = []
    if include_usage:
        if len(rep.usage_chunks) != 1:
            out.append(f"include_usage stream has {len(rep.usage_chunks)} usage chunks, expected 1")
        elif not rep.last_json_is_usage:
            out.append("usage chunk is not the last chunk before [DONE]")
        else:
            out += usage_problems(rep.usage_chunks[0], prompt, completion)
    else:
        if rep.usage_chunks:
            out.append(f"usage chunk in a stream that did not ask for one: {rep.usage_chunks[0]}")
        if rep.usage_on_choice_chunks and provider_kind != "xai":
            out.append(f"{rep.usage_on_choice_chunks} chunks carry usage though the client did not ask")
    return out


def usage_pair(usage: Any) -> list[int] | None:
    """``[prompt_tokens, completion_tokens]`` of a usage object, for the ledger."""
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        return [usage["prompt_tokens"], usage.get("completion_tokens") or 0]
    return None
