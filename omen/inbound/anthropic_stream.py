"""OpenAI stream events -> Anthropic Messages SSE (sans-IO).

:class:`AnthropicStreamWriter` takes what any provider's stream translator emits (Chunk, StreamUsage,
StreamEnd, StreamError) and returns the bytes of Anthropic's event sequence::

    message_start
    content_block_start / content_block_delta* / content_block_stop   (per text / tool_use block)
    message_delta   (stop_reason, usage)
    message_stop

Text deltas become ``text_delta`` in a text block; each OpenAI tool call (by its ``index``) becomes
a ``tool_use`` block whose argument fragments are relayed as ``input_json_delta``; reasoning text
becomes a ``thinking`` block when the client enabled thinking (and is dropped otherwise). Block
indexes count all blocks, as Anthropic's do. Usage arrives at the end of OpenAI streams, so
``message_start`` carries zeros and ``message_delta`` the final (cumulative) counts, which Anthropic's
SDKs copy over. A mid-stream failure ends the stream with ``event: error`` (no ``message_stop``).
Output depends only on the events, never on how the upstream bytes were split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from omen.errors import OmenError
from omen.inbound.anthropic_response import (
    error_body,
    message_id,
    random_id,
    stop_reason,
    usage_json,
)
from omen.providers.base import Chunk, StreamEnd, StreamError, StreamEvent, StreamUsage, Usage
from omen.providers.upstream_errors import invalid_upstream_body


class _FunctionDelta(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolDelta(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: _FunctionDelta | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolDelta] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _ChunkBody(msgspec.Struct):
    id: str = ""
    choices: list[_Choice] = []
    usage: Any = None


_chunk_decoder = msgspec.json.Decoder(_ChunkBody)

_BLOCK_START = b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,"content_block":%b}\n\n'
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":'
_TEXT_DELTA = b'"text_delta","text":'
_JSON_DELTA = b'"input_json_delta","partial_json":'
_THINKING_DELTA = b'"thinking_delta","thinking":'
_TEXT_START = b'{"type":"text","text":""}'
_THINKING_START = b'{"type":"thinking","thinking":"","signature":""}'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'

_TEXT, _THINKING, _TOOL = 1, 2, 3


class AnthropicStreamWriter:
    """One stream's state. ``render(events)`` -> bytes; ``finish(error)`` -> the closing bytes when the
    events did not end the stream (an error event); ``usage`` is the latest usage seen."""

    __slots__ = (
        "_block",
        "_finish",
        "_kind",
        "_model",
        "_new_id",
        "_next",
        "_refusal",
        "_tool_ids",
        "_tools",
        "done",
        "error",
        "provider",
        "started",
        "thinking",
        "usage",
    )

    def __init__(
        self,
        model: str,
        *,
        thinking: bool = False,
        provider: str = "upstream",
        new_id: Callable[[], str] = random_id,
    ) -> None:
        self._model = orjson.dumps(model)
        self.thinking = thinking
        self.provider = provider
        self._new_id = new_id
        self.started = False
        self.done = False
        self.usage: Usage | None = None
        self.error: OmenError | None = None
        self._block = -1  # index of the open content block, -1 when none is open
        self._kind = 0
        self._next = 0
        self._tools: dict[int, int] = {}  # OpenAI tool-call index -> Anthropic block index
        self._tool_ids: dict[str, int] = {}  # for servers that omit the tool-call index
        self._finish: str | None = None
        self._refusal = False

    # ---- public ----------------------------------------------------------------------------------

    def render(self, events: list[StreamEvent]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if self.done:
                break
            kind = type(event)
            if kind is Chunk:
                self._chunk(event.data, out)  # type: ignore[union-attr]
            elif kind is StreamUsage:
                self.usage = event.usage  # type: ignore[union-attr]
            elif kind is StreamEnd:
                self._end(out)
            elif kind is StreamError:
                self._fail(event.error, out)  # type: ignore[union-attr]
        return b"".join(out)

    def finish(self, error: OmenError | None) -> bytes:
        if self.done:
            return b""
        out: list[bytes] = []
        self._fail(
            error
            or OmenError(
                502, "The upstream stream ended without finishing.", type="server_error", code="upstream_error"
            ),
            out,
        )
        return b"".join(out)

    # ---- events ----------------------------------------------------------------------------------

    def _chunk(self, data: bytes, out: list[bytes]) -> None:
        try:
            chunk = _chunk_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._fail(invalid_upstream_body(self.provider, "a stream chunk", data), out)
            return
        if chunk.usage is not None:
            usage = Usage.from_openai(chunk.usage)
            if usage is not None:
                self.usage = usage
        if not chunk.choices:
            return  # the usage chunk, or Azure's prompt-filter chunk
        if not self.started:
            self._start(chunk.id, out)
        choice = chunk.choices[0]
        delta = choice.delta
        if delta is not None:
            if delta.reasoning_content and self.thinking:
                if self._kind != _THINKING:
                    self._open(_THINKING, _THINKING_START, out)
                out.append(self._delta(_THINKING_DELTA, delta.reasoning_content))
            text = delta.content or delta.refusal
            if text:
                if delta.refusal and not delta.content:
                    self._refusal = True
                if self._kind != _TEXT:
                    self._open(_TEXT, _TEXT_START, out)
                out.append(self._delta(_TEXT_DELTA, text))
            if delta.tool_calls:
                for call in delta.tool_calls:
                    self._tool(call, out)
        if choice.finish_reason:
            self._finish = choice.finish_reason
            self._close(out)

    def _tool(self, call: _ToolDelta, out: list[bytes]) -> None:
        index = call.index
        if index is None:  # no index: a new id starts a new call, else it continues the last one
            if call.id and call.id not in self._tool_ids:
                index = len(self._tools)
            else:
                index = self._tool_ids.get(call.id or "", len(self._tools) - 1)
        block = self._tools.get(index)
        fn = call.function
        if block is None:
            tool_id = call.id or f"toolu_{self._new_id()}"
            start = orjson.dumps(
                {"type": "tool_use", "id": tool_id, "name": (fn.name if fn else None) or "", "input": {}}
            )
            block = self._open(_TOOL, start, out)
            self._tools[index] = block
            self._tool_ids[tool_id] = index
        if fn is not None and fn.arguments:
            out.append(_DELTA % block + _JSON_DELTA + orjson.dumps(fn.arguments) + b"}}\n\n")

    def _end(self, out: list[bytes]) -> None:
        if not self.started:
            self._start("", out)
        self._close(out)
        reason = stop_reason(self._finish, bool(self._tools))
        if self._refusal and reason == "end_turn":
            reason = "refusal"
        out.append(
            b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"'
            + reason.encode()
            + b'","stop_sequence":null},"usage":'
            + usage_json(self.usage)
            + b"}\n\n"
        )
        out.append(_MESSAGE_STOP)
        self.done = True

    def _fail(self, error: OmenError, out: list[bytes]) -> None:
        self.error = error
        out.append(b"event: error\ndata: " + error_body(error) + b"\n\n")
        self.done = True

    # ---- blocks ----------------------------------------------------------------------------------

    def _start(self, upstream_id: str, out: list[bytes]) -> None:
        self.started = True
        out.append(
            b'event: message_start\ndata: {"type":"message_start","message":{"id":"'
            + message_id(upstream_id, self._new_id).encode()
            + b'","type":"message","role":"assistant","model":'
            + self._model
            + b',"content":[],"stop_reason":null,"stop_sequence":null,'
            b'"usage":{"input_tokens":0,"output_tokens":0}}}\n\n'
        )

    def _open(self, kind: int, start: bytes, out: list[bytes]) -> int:
        self._close(out)
        index = self._next
        self._next += 1
        self._block = index
        self._kind = kind
        out.append(_BLOCK_START % (index, start))
        return index

    def _close(self, out: list[bytes]) -> None:
        if self._block >= 0:
            out.append(_BLOCK_STOP % self._block)
            self._block = -1
            self._kind = 0

    def _delta(self, kind: bytes, text: str) -> bytes:
        return _DELTA % self._block + kind + orjson.dumps(text) + b"}}\n\n"
