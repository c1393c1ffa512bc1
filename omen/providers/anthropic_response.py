"""Anthropic Messages responses, streams and errors -> OpenAI format (providers.md §5.3-5.5, §10).

* Content: ``text`` blocks are joined into ``message.content``; ``tool_use`` blocks become
  ``tool_calls`` (``arguments`` = the JSON text of ``input``); ``thinking`` is surfaced as
  ``reasoning_content`` (the field OpenAI-compatible reasoning servers use; its signature is dropped);
  ``redacted_thinking`` and server-tool blocks have no OpenAI form and are dropped.
* ``stop_reason`` -> ``finish_reason``: end_turn/stop_sequence/pause_turn -> stop (a paused server-tool
  turn is a normal end for the client, which may resend to continue), max_tokens and
  model_context_window_exceeded -> length, tool_use -> tool_calls, refusal -> content_filter.
* Usage: ``prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens`` (the
  three are disjoint parts of the prompt), ``cached_tokens = cache_read_input_tokens``,
  ``completion_tokens = output_tokens`` (thinking included), ``reasoning_tokens`` from
  ``output_tokens_details.thinking_tokens`` when reported. In streams the counts arrive split between
  ``message_start`` and ``message_delta`` (whose counts are cumulative) and are combined.
* Errors: Anthropic's ``{"type":"error","error":{"type","message"}}`` keeps its HTTP status, except
  529 ``overloaded_error`` -> 503 (OpenAI SDKs retry either, but 529 is not a status HTTP proxies and
  clients know) and 402 ``billing_error`` -> 429 ``insufficient_quota`` (OpenAI's convention).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from omen.errors import OmenError
from omen.providers.base import Chunk, Headers, StreamEnd, StreamError, StreamEvent, StreamUsage, Usage
from omen.providers.upstream_errors import invalid_upstream_body, normalise_error
from omen.streaming.sse import SSEDecoder

_END = StreamEnd()

# ---- wire types (only the fields read; everything else is skipped while decoding) ------------------------


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: dict[str, Any] | None = None


class _Block(msgspec.Struct):
    type: str = ""
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    thinking: str | None = None


class _Message(msgspec.Struct):
    type: str = ""
    id: str = ""
    model: str = ""
    content: list[_Block] = []
    stop_reason: str | None = None
    usage: _Usage | None = None
    error: Any = None


class _Delta(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    stop_reason: str | None = None


class _Event(msgspec.Struct):
    type: str = ""
    message: _Message | None = None
    index: int | None = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: Any = None


_message_decoder = msgspec.json.Decoder(_Message)
_event_decoder = msgspec.json.Decoder(_Event)

# ---- finish reasons and usage ----------------------------------------------------------------------------

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None, tool_calls: bool) -> str:
    reason = FINISH_REASONS.get(stop_reason or "", "stop")
    if reason == "tool_calls" and not tool_calls:
        return "stop"  # tool_use with no function call left (server tools only): nothing for the client to run
    return reason


class UsageCounts:
    """The four Anthropic counters, merged across stream events (each report is cumulative, so the
    largest value seen is the total; ``message_delta`` may repeat the input counts or leave them out)."""

    __slots__ = ("cache_creation", "cache_read", "input", "output", "thinking")

    def __init__(self) -> None:
        self.input = self.output = self.cache_read = self.cache_creation = self.thinking = 0

    def update(self, u: _Usage | None) -> None:
        if u is None:
            return
        self.input = max(self.input, u.input_tokens or 0)
        self.output = max(self.output, u.output_tokens or 0)
        self.cache_read = max(self.cache_read, u.cache_read_input_tokens or 0)
        self.cache_creation = max(self.cache_creation, u.cache_creation_input_tokens or 0)
        details = u.output_tokens_details
        thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
        if isinstance(thinking, int) and not isinstance(thinking, bool):
            self.thinking = max(self.thinking, thinking)

    def usage(self) -> Usage:
        prompt = self.input + self.cache_read + self.cache_creation
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=self.output,
            total_tokens=prompt + self.output,
            cached_tokens=self.cache_read,
            reasoning_tokens=self.thinking,
        )


# ---- errors ----------------------------------------------------------------------------------------------

_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def translate_error(
    provider: str, status: int, kind: str, message: str | None, headers: Headers, body: bytes
) -> OmenError:
    """One Anthropic error (HTTP status + ``error.type`` + message) -> the OpenAI error OMEN returns.
    ``message`` None: the body is not in Anthropic's shape and is read the generic way."""
    overloaded = status == 529 or (kind == "overloaded_error" and status >= 500)
    billing = status == 402 or kind == "billing_error"
    out_status = 503 if overloaded else 429 if billing else status
    fields = None if message is None else {"message": message}
    err = normalise_error(provider, out_status, body, headers, fields=fields)
    if overloaded:
        err.code = "overloaded"
    elif billing:
        err.type = err.code = "insufficient_quota"
    elif kind == "authentication_error" or status == 401:
        err.code = "invalid_api_key"
    elif kind == "not_found_error" and (message or "").lower().startswith("model"):
        err.code, err.param = "model_not_found", "model"  # Anthropic says "model: <name>"
    elif kind == "request_too_large" or status == 413:
        err.code = "request_too_large"
    elif kind == "timeout_error" or status == 504:
        err.code = "timeout"
    return err


def error_fields(obj: Any) -> tuple[str, str] | None:
    """``(type, message)`` of Anthropic's error object (``obj`` is the body or its ``error`` member)."""
    err = obj.get("error") if isinstance(obj, dict) and obj.get("type") == "error" else obj
    if not isinstance(err, dict) or not isinstance(err.get("type"), str):
        return None
    message = err.get("message")
    return err["type"], message if isinstance(message, str) else ""


def http_error(provider: str, status: int, headers: Headers, body: bytes) -> OmenError:
    try:
        fields = error_fields(orjson.loads(body)) if body.strip() else None
    except orjson.JSONDecodeError:
        fields = None
    kind, message = fields if fields is not None else ("", None)
    return translate_error(provider, status, kind, message, headers, body)


def stream_error(provider: str, error: Any, raw: bytes) -> OmenError:
    """An ``event: error`` after the 200 (typically ``overloaded_error``): its type gives the status."""
    fields = error_fields(error)
    if fields is None:
        return invalid_upstream_body(provider, "an error event", raw)
    kind, message = fields
    status = _STATUS_BY_TYPE.get(kind, 500)
    return translate_error(provider, status, kind, message, [], raw)


# ---- complete responses ----------------------------------------------------------------------------------


def decode_message(provider: str, body: bytes) -> _Message:
    try:
        msg = _message_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise invalid_upstream_body(provider, "a response", body) from None
    if msg.type == "error":
        raise stream_error(provider, msg.error, body)
    return msg


def _arguments_text(value: Any) -> str:
    return orjson.dumps(value if value is not None else {}).decode()


def chat_completion(msg: _Message, completion_id: str, created: int, model: str) -> tuple[bytes, Usage]:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in msg.content:
        if block.type == "text" and block.text:
            texts.append(block.text)
        elif block.type == "tool_use":
            calls.append(
                {
                    "id": block.id or "",
                    "type": "function",
                    "function": {"name": block.name or "", "arguments": _arguments_text(block.input)},
                }
            )
        elif block.type == "thinking" and block.thinking:
            thinking.append(block.thinking)
    content = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else ""), "refusal": None}
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    counts = UsageCounts()
    counts.update(msg.usage)
    usage = counts.usage()
    out = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(msg.stop_reason, bool(calls)),
            }
        ],
        "usage": usage.to_openai(),
    }
    return orjson.dumps(out), usage


# ---- streams ---------------------------------------------------------------------------------------------

_ROLE_DELTA = b'{"role":"assistant","content":""}'


class AnthropicChatStream:
    """Anthropic's named SSE events -> OpenAI ``chat.completion.chunk`` payloads.

    Anthropic numbers content blocks (text, thinking and tool_use together); OpenAI numbers tool calls
    only, so each ``tool_use`` block gets the next tool index when it starts. Its first chunk carries
    id/type/name (``arguments: ""``), each ``input_json_delta`` then adds an ``arguments`` piece.
    """

    def __init__(
        self,
        provider: str,
        created: int,
        model: str,
        include_usage: bool,
        new_id: Callable[[], str],
    ) -> None:
        self.provider = provider
        self.include_usage = include_usage
        self._created = created
        self._model = model
        self._new_id = new_id
        self._sse = SSEDecoder()
        self._head: bytes | None = None
        self._finished = False
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self._tool_args: dict[int, bool] = {}  # block index -> an arguments piece was sent
        self._stop_reason: str | None = None
        self._usage = UsageCounts()

    # -- framing --

    def feed(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self._finished:
            for event in self._sse.feed(data):
                self._event(event.data, event.event, out)
                if self._finished:
                    break
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._finished:
            return out
        self._sse.close()
        self._fail(
            OmenError(
                502,
                f"Upstream provider '{self.provider}' ended the stream early (no message_stop event).",
                type="server_error",
                code="upstream_stream_truncated",
            ),
            out,
        )
        return out

    def _fail(self, error: OmenError, out: list[StreamEvent]) -> None:
        self._finished = True
        out.append(StreamError(error))

    def _start(self, message_id: str, model: str) -> None:
        head = orjson.dumps(
            {
                "id": message_id or f"chatcmpl-{self._new_id()}",
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": model or self._model,
            }
        )
        self._head = head[:-1] + b',"choices":'

    def _delta(self, delta: bytes, out: list[StreamEvent], finish: bytes = b"null") -> None:
        if self._head is None:  # content before message_start: not Anthropic's order, but keep going
            self._start("", "")
            out.append(self._chunk(_ROLE_DELTA, b"null"))
        out.append(self._chunk(delta, finish))

    def _chunk(self, delta: bytes, finish: bytes) -> Chunk:
        assert self._head is not None
        return Chunk(
            self._head + b'[{"index":0,"delta":' + delta + b',"logprobs":null,"finish_reason":' + finish + b"}]}"
        )

    # -- events --

    def _event(self, data: bytes, name: str, out: list[StreamEvent]) -> None:
        try:
            ev = _event_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._fail(invalid_upstream_body(self.provider, "a stream event", data), out)
            return
        kind = ev.type or name
        if kind == "content_block_delta":
            self._block_delta(ev, out)
        elif kind == "content_block_start":
            self._block_start(ev, out)
        elif kind == "content_block_stop":
            self._block_stop(ev, out)
        elif kind == "message_start":
            msg = ev.message or _Message()
            self._usage.update(msg.usage)
            if self._head is None:
                self._start(msg.id, msg.model)
                out.append(self._chunk(_ROLE_DELTA, b"null"))
        elif kind == "message_delta":
            if ev.delta is not None and ev.delta.stop_reason:
                self._stop_reason = ev.delta.stop_reason
            self._usage.update(ev.usage)
        elif kind == "message_stop":
            self._finish(out)
        elif kind == "error":
            self._fail(stream_error(self.provider, ev.error, data), out)
        # "ping" and event types added later are ignored (Anthropic's versioning policy)

    def _block_start(self, ev: _Event, out: list[StreamEvent]) -> None:
        block = ev.content_block
        if block is None or ev.index is None:
            return
        if block.type == "tool_use":
            index = self._tools[ev.index] = len(self._tools)
            args = "" if not block.input else _arguments_text(block.input)
            self._tool_args[ev.index] = bool(args)
            call = {
                "index": index,
                "id": block.id or f"call_{self._new_id()}",
                "type": "function",
                "function": {"name": block.name or "", "arguments": args},
            }
            self._delta(b'{"tool_calls":[' + orjson.dumps(call) + b"]}", out)
        elif block.type == "text" and block.text:
            self._delta(b'{"content":' + orjson.dumps(block.text) + b"}", out)
        elif block.type == "thinking" and block.thinking:
            self._delta(b'{"reasoning_content":' + orjson.dumps(block.thinking) + b"}", out)

    def _block_delta(self, ev: _Event, out: list[StreamEvent]) -> None:
        delta = ev.delta
        if delta is None:
            return
        if delta.type == "text_delta":
            if delta.text:
                self._delta(b'{"content":' + orjson.dumps(delta.text) + b"}", out)
        elif delta.type == "input_json_delta":
            index = self._tools.get(ev.index) if ev.index is not None else None
            if index is not None and delta.partial_json:  # the first fragment is often ""
                self._tool_args[ev.index] = True  # type: ignore[index]
                self._arguments(index, delta.partial_json, out)
        elif delta.type == "thinking_delta" and delta.thinking:
            self._delta(b'{"reasoning_content":' + orjson.dumps(delta.thinking) + b"}", out)
        # signature_delta, citations_delta: no OpenAI equivalent

    def _block_stop(self, ev: _Event, out: list[StreamEvent]) -> None:
        index = self._tools.get(ev.index) if ev.index is not None else None
        if index is not None and not self._tool_args.get(ev.index):  # type: ignore[arg-type]
            # a call without arguments streams no fragment; "" would not parse as JSON, "{}" does
            self._tool_args[ev.index] = True  # type: ignore[index]
            self._arguments(index, "{}", out)

    def _arguments(self, index: int, piece: str, out: list[StreamEvent]) -> None:
        call = b'{"index":%d,"function":{"arguments":' % index + orjson.dumps(piece) + b"}}"
        self._delta(b'{"tool_calls":[' + call + b"]}", out)

    def _finish(self, out: list[StreamEvent]) -> None:
        reason = finish_reason(self._stop_reason, bool(self._tools)).encode()
        self._delta(b"{}", out, b'"' + reason + b'"')
        usage = self._usage.usage()
        if self.include_usage:
            assert self._head is not None
            out.append(Chunk(self._head + b'[],"usage":' + orjson.dumps(usage.to_openai()) + b"}"))
        out.append(StreamUsage(usage))
        out.append(_END)
        self._finished = True


__all__ = [
    "FINISH_REASONS",
    "AnthropicChatStream",
    "UsageCounts",
    "chat_completion",
    "decode_message",
    "finish_reason",
    "http_error",
    "stream_error",
    "translate_error",
]
