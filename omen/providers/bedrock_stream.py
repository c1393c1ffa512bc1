"""ConverseStream (``application/vnd.amazon.eventstream``) -> OpenAI chat chunks (providers.md §7.4).

The binary framing (prelude, headers, payload, both CRC32s) is parsed by botocore's
``EventStreamBuffer``; this module only interprets the events. Text and tool-input deltas become
OpenAI deltas as they arrive; each tool-use block gets the next OpenAI tool-call index when its
``contentBlockStart`` names it, and its input pieces follow under that index. ``messageStop`` gives
the finish reason and ``metadata`` (which follows it) the usage, after which the stream ends.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import orjson
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from omen.errors import OmenError
from omen.providers.base import Chunk, StreamEnd, StreamError, StreamEvent, StreamUsage
from omen.providers.bedrock_request import JSON_TOOL
from omen.providers.bedrock_response import TokenUsage, aws_error, exception_name, finish_reason
from omen.providers.upstream_errors import invalid_upstream_body, redact, snippet

_END = StreamEnd()


def _text(value: Any) -> str:
    """A header value as text: AWS sends strings, but the framing allows bytes, numbers and booleans."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return ""


class BedrockChatStream:
    """One ConverseStream response; any split of its bytes gives the same events."""

    def __init__(
        self,
        provider: str,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        json_object: bool = False,
    ) -> None:
        self.provider = provider
        self.include_usage = include_usage
        self.json_object = json_object
        self._frames = EventStreamBuffer()
        self._started = False
        self._finished = False
        self._stopped = False  # messageStop seen (the finish chunk was sent)
        self._usage: TokenUsage | None = None
        self._tools: dict[int, int] = {}  # Converse contentBlockIndex -> OpenAI tool_calls index
        self._json_blocks: set[int] = set()  # json_object mode: the forced tool's blocks are content
        head = orjson.dumps(
            {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        )
        self._head = head[:-1] + b',"choices":'

    # -- feeding --

    def feed(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._finished:
            return out
        self._frames.add_data(data)
        try:
            for message in self._frames:
                self._message(message, out)
                if self._finished:
                    break
        except (ParserError, struct.error, ValueError, KeyError, IndexError) as exc:
            # a CRC mismatch or a malformed prelude/header: the framing is lost, nothing after it is trusted
            self._fail(
                OmenError(
                    502,
                    f"Upstream provider '{self.provider}' sent a malformed event-stream frame ({type(exc).__name__}).",
                    type="server_error",
                    code="upstream_invalid_response",
                ),
                out,
            )
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self._finished:
            what = "metadata event" if self._stopped else "messageStop event"
            self._fail(
                OmenError(
                    502,
                    f"Upstream provider '{self.provider}' ended the stream early (no {what}).",
                    type="server_error",
                    code="upstream_stream_truncated",
                ),
                out,
            )
        return out

    def _fail(self, error: OmenError, out: list[StreamEvent]) -> None:
        self._finished = True
        out.append(StreamError(error))

    # -- frames --

    def _message(self, message: EventStreamMessage, out: list[StreamEvent]) -> None:
        headers = message.headers
        kind = _text(headers.get(":message-type"))
        if kind == "exception":
            name = exception_name(_text(headers.get(":exception-type")))
            fields = self._payload(message.payload, out, strict=False) or {}
            text = fields.get("message") or fields.get("Message")
            self._fail(aws_error(self.provider, 502, name, text if isinstance(text, str) else None), out)
        elif kind == "error":
            code = _text(headers.get(":error-code")) or "error"
            text = _text(headers.get(":error-message"))
            error = OmenError(
                502,
                redact(self.provider, f"Upstream provider '{self.provider}' reported {code}: {text}"),
                type="server_error",
                code="upstream_error",
            )
            self._fail(error, out)
        elif kind == "event":
            payload = self._payload(message.payload, out)
            if payload is not None:
                self._event(_text(headers.get(":event-type")), payload, out)

    def _payload(self, payload: bytes, out: list[StreamEvent], strict: bool = True) -> dict[str, Any] | None:
        try:
            value = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
        if strict:
            self._fail(invalid_upstream_body(self.provider, "a stream event", payload), out)
        return None

    def _event(self, event: Any, payload: dict[str, Any], out: list[StreamEvent]) -> None:
        index = payload.get("contentBlockIndex", 0)
        if not isinstance(index, int):
            index = -1  # not a block anything can refer to
        if event == "contentBlockDelta":
            self._delta(index, payload.get("delta"), out)
        elif event == "contentBlockStart":
            self._block_start(index, payload.get("start"), out)
        elif event == "messageStart":
            self._start(out)
        elif event == "messageStop":
            self._start(out)
            if not self._stopped:
                self._stopped = True
                reason = finish_reason(payload.get("stopReason"), self.json_object)
                out.append(Chunk(self._choice(b'{},"logprobs":null,"finish_reason":"' + reason.encode() + b'"}')))
            self._maybe_end(out)
        elif event == "metadata":
            try:
                self._usage = msgspec.convert(payload.get("usage") or {}, TokenUsage)
            except msgspec.ValidationError:
                self._fail(invalid_upstream_body(self.provider, "a metadata event", orjson.dumps(payload)), out)
                return
            self._maybe_end(out)
        # contentBlockStop and event types added later carry nothing a chat chunk needs

    def _block_start(self, index: int, start: Any, out: list[StreamEvent]) -> None:
        use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(use, dict):
            return
        self._start(out)
        name = use.get("name") or ""
        if self.json_object and name == JSON_TOOL:
            self._json_blocks.add(index)
            return
        position = self._tools[index] = len(self._tools)
        call = {"index": position, "id": use.get("toolUseId") or "", "type": "function"}
        call["function"] = {"name": name, "arguments": ""}
        out.append(self._delta_chunk({"tool_calls": [call]}))

    def _delta(self, index: int, delta: Any, out: list[StreamEvent]) -> None:
        if not isinstance(delta, dict):
            return
        self._start(out)
        text = delta.get("text")
        if isinstance(text, str):
            if text:
                out.append(self._delta_chunk({"content": text}))
            return
        use = delta.get("toolUse")
        if isinstance(use, dict):
            piece = use.get("input")
            if not isinstance(piece, str):
                piece = ""
            if index in self._json_blocks:
                if piece:
                    out.append(self._delta_chunk({"content": piece}))
            elif index in self._tools:
                if piece:
                    call = {"index": self._tools[index], "function": {"arguments": piece}}
                    out.append(self._delta_chunk({"tool_calls": [call]}))
            else:
                self._fail(
                    OmenError(
                        502,
                        f"Upstream provider '{self.provider}' sent tool input for content block {index} "
                        f"before its contentBlockStart: {snippet(orjson.dumps(delta))}",
                        type="server_error",
                        code="upstream_invalid_response",
                    ),
                    out,
                )
            return
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str) and reasoning["text"]:
            out.append(self._delta_chunk({"reasoning_content": reasoning["text"]}))

    # -- chunks --

    def _start(self, out: list[StreamEvent]) -> None:
        if not self._started:
            self._started = True
            out.append(Chunk(self._choice(b'{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}')))

    def _choice(self, delta_and_rest: bytes) -> bytes:
        return self._head + b'[{"index":0,"delta":' + delta_and_rest + b"]}"

    def _delta_chunk(self, delta: dict[str, Any]) -> Chunk:
        return Chunk(self._choice(orjson.dumps(delta) + b',"logprobs":null,"finish_reason":null}'))

    def _maybe_end(self, out: list[StreamEvent]) -> None:
        if not (self._stopped and self._usage is not None):
            return
        usage = self._usage.to_usage()
        if self.include_usage:
            out.append(Chunk(self._head + b'[],"usage":' + orjson.dumps(usage.to_openai()) + b"}"))
        out.append(StreamUsage(usage))
        out.append(_END)
        self._finished = True


__all__ = ["BedrockChatStream"]
