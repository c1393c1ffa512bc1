"""``:streamGenerateContent?alt=sse`` -> OpenAI chunks (providers.md §6.4).

Each SSE event is a whole ``GenerateContentResponse`` holding only the new parts; function calls
arrive whole; ``usageMetadata`` carries running totals (the last one counts); the stream has no end
marker, it just ends after the chunk with ``finishReason``. Errors may arrive as an ``error`` object
in a ``data:`` event or, as Google's own SDK expects, as bare (possibly pretty-printed, multi-line)
JSON outside any ``data:`` line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec
import orjson

from omen.errors import OmenError
from omen.providers.base import Chunk, StreamEnd, StreamError, StreamEvent, StreamUsage, Usage
from omen.providers.gemini_response import (
    Candidate,
    GenerateContentResponse,
    finish_reason,
    in_band_error,
    openai_tool_call,
    prompt_blocked,
    stream_payload_decoder,
)
from omen.providers.upstream_errors import invalid_upstream_body

_END = StreamEnd()
_BARE_LIMIT = 256 * 1024  # a bare JSON error is small; anything bigger is not one


class GeminiEvents:
    """Bytes -> ``("json", payload)`` for each SSE event or bare JSON object, ``("garbage", line)`` for a
    line that is neither, and at the end ``("partial", payload)`` for an event the stream broke off in
    (or that merely lacked its closing blank line). Any split of the input gives the same items."""

    def __init__(self) -> None:
        self._partial: list[bytes] = []
        self._data: list[bytes] = []  # data lines of the current SSE event
        self._bare: list[bytes] = []  # lines of a bare JSON object being collected
        self._bare_size = 0

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        if b"\n" not in data:
            if data:
                self._partial.append(data)  # joined once a line ends: no quadratic re-joining
            return []
        if self._partial:
            self._partial.append(data)
            data = b"".join(self._partial)
            self._partial = []
        lines = data.split(b"\n")
        tail = lines.pop()
        if tail:
            self._partial.append(tail)
        out: list[tuple[str, bytes]] = []
        for line in lines:
            self._line(line[:-1] if line[-1:] == b"\r" else line, out)
        return out

    def close(self) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        rest = b"".join(self._partial)
        self._partial = []
        if rest:
            self._line(rest[:-1] if rest[-1:] == b"\r" else rest, out)
        if self._data:  # the last event lacked its blank line: let the JSON decide if it is whole
            out.append(("partial", b"\n".join(self._data)))
            self._data = []
        if self._bare:
            out.append(("partial", b"\n".join(self._bare)))
            self._bare = []
        return out

    def _line(self, line: bytes, out: list[tuple[str, bytes]]) -> None:
        if self._bare:
            self._collect(line, out)
        elif not line.strip():
            if self._data:
                out.append(("json", self._data[0] if len(self._data) == 1 else b"\n".join(self._data)))
                self._data = []
        elif line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value[:1] == b" " else value)
        elif line[:1] == b":" or line.startswith((b"event:", b"id:", b"retry:")):
            return  # comments and fields Gemini does not use
        elif line.lstrip()[:1] in (b"{", b"["):
            self._collect(line, out)
        else:
            out.append(("garbage", line))

    def _collect(self, line: bytes, out: list[tuple[str, bytes]]) -> None:
        self._bare.append(line)
        self._bare_size += len(line)
        joined = b"\n".join(self._bare)
        try:
            orjson.loads(joined)
        except orjson.JSONDecodeError:
            if self._bare_size > _BARE_LIMIT:
                out.append(("garbage", joined[:512]))
                self._bare, self._bare_size = [], 0
            return
        out.append(("json", joined))
        self._bare, self._bare_size = [], 0


class _ChoiceState:
    __slots__ = ("finish", "prefix", "started", "tools")

    def __init__(self, index: int) -> None:
        self.prefix = b'{"index":%d,' % index
        self.started = False
        self.tools = 0  # running tool-call index: OpenAI clients merge tool-call deltas by it
        self.finish: str | None = None


class _GeminiStream:
    """Shared parsing and ending; subclasses render candidates as chat or text-completion chunks."""

    object: ClassVar[str]

    def __init__(
        self,
        provider: str,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        new_id: Callable[[], str],
    ) -> None:
        self.provider = provider
        self.include_usage = include_usage
        self._new_id = new_id
        self._events = GeminiEvents()
        self._done = False
        self._usage: Usage | None = None
        self._choices: dict[int, _ChoiceState] = {}
        head = orjson.dumps({"id": completion_id, "object": self.object, "created": created, "model": model})
        self._head = head[:-1] + b',"choices":'

    def feed(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self._done:
            self._handle(self._events.feed(data), out)
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._done:
            return out
        self._handle(self._events.close(), out)
        if self._done:
            return out
        if not self._choices or any(c.finish is None for c in self._choices.values()):
            self._fail(self._truncated(), out)
            return out
        usage = self._usage or Usage()
        if self.include_usage:
            out.append(Chunk(self._head + b'[],"usage":' + orjson.dumps(usage.to_openai()) + b"}"))
        out.append(StreamUsage(usage))
        out.append(_END)
        self._done = True
        return out

    def _truncated(self) -> OmenError:
        return OmenError(
            502,
            f"Upstream provider '{self.provider}' ended the stream early (no chunk with a finishReason).",
            type="server_error",
            code="upstream_stream_truncated",
        )

    def _fail(self, error: OmenError, out: list[StreamEvent]) -> None:
        self._done = True
        out.append(StreamError(error))

    def _handle(self, items: list[tuple[str, bytes]], out: list[StreamEvent]) -> None:
        for kind, payload in items:
            if self._done:
                return
            if kind == "garbage":
                self._fail(invalid_upstream_body(self.provider, "a stream line", payload), out)
                return
            try:
                decoded = stream_payload_decoder.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                if kind == "partial":  # the connection ended inside this event
                    self._fail(self._truncated(), out)
                else:
                    self._fail(invalid_upstream_body(self.provider, "a stream event", payload), out)
                return
            for response in decoded if isinstance(decoded, list) else (decoded,):
                self._response(response, out)
                if self._done:
                    return

    def _response(self, response: GenerateContentResponse, out: list[StreamEvent]) -> None:
        if response.error is not None:
            self._fail(in_band_error(self.provider, response.error), out)
            return
        if not response.candidates and response.prompt_feedback is not None and response.prompt_feedback.block_reason:
            self._fail(prompt_blocked(response.prompt_feedback), out)
            return
        if response.usage_metadata is not None:
            self._usage = response.usage_metadata.usage()  # running totals: the last one counts
        for candidate in response.candidates:
            state = self._choices.get(candidate.index)
            if state is None:
                state = self._choices[candidate.index] = _ChoiceState(candidate.index)
            if state.finish is None:  # nothing after a candidate's finish chunk
                self._candidate(candidate, state, out)

    def _choice(self, state: _ChoiceState, rest: bytes) -> Chunk:
        return Chunk(self._head + b"[" + state.prefix + rest + b"]}")

    def _candidate(self, candidate: Candidate, state: _ChoiceState, out: list[StreamEvent]) -> None:
        raise NotImplementedError


class GeminiChatStream(_GeminiStream):
    object = "chat.completion.chunk"

    def _delta(self, state: _ChoiceState, delta: bytes) -> Chunk:
        return self._choice(state, b'"delta":' + delta + b',"logprobs":null,"finish_reason":null}')

    def _candidate(self, candidate: Candidate, state: _ChoiceState, out: list[StreamEvent]) -> None:
        if not state.started:
            state.started = True
            out.append(self._delta(state, b'{"role":"assistant","content":""}'))
        calls: list[dict[str, Any]] = []
        for part in candidate.content.parts if candidate.content is not None else ():
            if part.function_call is not None:
                calls.append({"index": state.tools, **openai_tool_call(part, self._new_id)})
                state.tools += 1
                continue
            if not part.text:
                continue
            if calls:  # keep the parts' order: calls before this text go out first
                out.append(self._delta(state, orjson.dumps({"tool_calls": calls})))
                calls = []
            key = "reasoning_content" if part.thought else "content"
            out.append(self._delta(state, orjson.dumps({key: part.text})))
        if calls:  # each call arrives whole: one delta carries its id, name and all its arguments
            out.append(self._delta(state, orjson.dumps({"tool_calls": calls})))
        if candidate.finish_reason:
            state.finish = finish_reason(candidate.finish_reason, state.tools > 0)
            out.append(
                self._choice(state, b'"delta":{},"logprobs":null,"finish_reason":"' + state.finish.encode() + b'"}')
            )


class GeminiCompletionStream(_GeminiStream):
    object = "text_completion"

    def _text(self, state: _ChoiceState, text: str, finish: bytes) -> Chunk:
        return self._choice(
            state, b'"text":' + orjson.dumps(text) + b',"logprobs":null,"finish_reason":' + finish + b"}"
        )

    def _candidate(self, candidate: Candidate, state: _ChoiceState, out: list[StreamEvent]) -> None:
        for part in candidate.content.parts if candidate.content is not None else ():
            if part.text and not part.thought and part.function_call is None:
                out.append(self._text(state, part.text, b"null"))
        if candidate.finish_reason:
            state.finish = finish_reason(candidate.finish_reason, False)
            out.append(self._text(state, "", b'"' + state.finish.encode() + b'"'))


__all__ = ["GeminiChatStream", "GeminiCompletionStream", "GeminiEvents"]
