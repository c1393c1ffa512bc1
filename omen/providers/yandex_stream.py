"""Yandex streamed completions -> OpenAI chunks.

With ``completionOptions.stream`` the body is a sequence of newline-separated JSON objects, each a whole
``{"result": {...}}`` whose alternative text is **cumulative** (everything generated so far) with status
``ALTERNATIVE_STATUS_PARTIAL``; the last object carries the final status (and, for native function
calling, the ``toolCallList``). OpenAI clients want deltas, so only the part beyond what was already
sent goes out. Text that was sent cannot be taken back: should the upstream shorten or rewrite it, the
rewritten part is not sent, and sending resumes only where a later text extends what was sent.

Held back until it is settled: a tail that may be the start of a stop sequence (Yandex has no stop
sequences, so OMEN cuts the text itself and ends the stream) and, with emulated tools, a possible tool
block (see yandex_tools).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from omen.errors import OmenError
from omen.providers.base import Chunk, StreamEnd, StreamError, StreamEvent, StreamUsage, Usage
from omen.providers.upstream_errors import invalid_upstream_body
from omen.providers.yandex_protocol import FINISH_REASONS, PARTIAL, envelope_decoder, stream_error
from omen.providers.yandex_tools import hold_point, openai_calls, parse_answer
from omen.streaming.sse import LineSplitter

_NOT_FINAL = frozenset({PARTIAL, "ALTERNATIVE_STATUS_UNSPECIFIED"})
_END = StreamEnd()


def first_stop(text: str, stops: list[str]) -> int:
    """Index of the earliest stop sequence in ``text``, or -1."""
    found = [i for i in (text.find(s) for s in stops) if i != -1]
    return min(found) if found else -1


def stop_overlap(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that is the beginning of a stop sequence."""
    held = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), held, -1):
            if text.endswith(stop[:k]):
                held = k
                break
    return held


def native_calls(calls: list[Any], new_id: Callable[[], str]) -> list[dict[str, Any]]:
    """Yandex ``functionCall``s (arguments as an object) -> OpenAI tool calls (arguments as a string)."""
    out = []
    for fn in calls:
        args = fn.arguments
        if not isinstance(args, str):
            args = orjson.dumps(args if args is not None else {}).decode()
        out.append({"id": f"call_{new_id()}", "type": "function", "function": {"name": fn.name, "arguments": args}})
    return out


def complete_answer(
    text: str,
    reason: str,
    native: list[Any],
    tools: frozenset[str] | None,
    single_call: bool,
    new_id: Callable[[], str],
) -> tuple[str, list[dict[str, Any]], str]:
    """``(content, OpenAI tool_calls, finish_reason)`` of a finished answer: native ``functionCall``s,
    or with emulated ``tools`` the tool block parsed out of the text."""
    calls = native_calls(native, new_id)
    if tools is not None and not calls:
        parsed = parse_answer(text, tools)
        if parsed is not None:
            text, found = parsed
            calls = openai_calls(found[:1] if single_call else found, new_id)
    if calls:
        return text, calls, "tool_calls"
    # a TOOL_CALLS status without any call would send clients looking for tool_calls that are not there
    return text, calls, "stop" if reason == "tool_calls" else reason


class YandexStream:
    """One streamed call. ``chat``: chat.completion.chunk deltas, else text_completion chunks.
    ``tool_names``: the offered tools when they are emulated (None: no emulation)."""

    def __init__(
        self,
        provider: str,
        redact: Callable[[str], str],
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        new_id: Callable[[], str],
        *,
        chat: bool = True,
        stops: list[str] | None = None,
        tool_names: frozenset[str] | None = None,
        single_call: bool = False,
    ) -> None:
        self.provider = provider
        self.include_usage = include_usage
        self._redact = redact
        self._new_id = new_id
        self._chat = chat
        self._stops = stops or []
        self._tools = tool_names
        self._single_call = single_call
        self._lines = LineSplitter()
        self._finished = False
        self._started = False
        self._sent = ""
        self._usage = Usage()
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = orjson.dumps({"id": completion_id, "object": obj, "created": created, "model": model})
        self._head = head[:-1] + b',"choices":'

    # -- StreamTranslator --

    def feed(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self._finished:
            for line in self._lines.feed(data):
                self._line(line, out)
                if self._finished:
                    break
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._finished:
            return out
        for line in self._lines.close():
            self._line(line, out)
            if self._finished:
                return out
        self._fail(
            OmenError(
                502,
                f"Upstream provider '{self.provider}' ended the stream early (no object with a final status).",
                type="server_error",
                code="upstream_stream_truncated",
            ),
            out,
        )
        return out

    # -- one object --

    def _fail(self, error: OmenError, out: list[StreamEvent]) -> None:
        self._finished = True
        out.append(StreamError(error))

    def _line(self, line: bytes, out: list[StreamEvent]) -> None:
        try:
            env = envelope_decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._fail(invalid_upstream_body(self.provider, "a stream line", line), out)
            return
        if env.error is not None:
            self._fail(stream_error(self.provider, env.error, self._redact), out)
            return
        result = env.body()
        if result.usage is not None:
            self._usage = result.usage.to_usage()  # running totals: the last one counts
        if self._chat and not self._started:
            self._started = True
            out.append(self._delta(b'{"role":"assistant","content":""}'))
        if not result.alternatives:
            return
        alt = result.alternatives[0]
        text, status = alt.text, alt.status_name
        stopped = False
        if self._stops:
            cut = first_stop(text, self._stops)
            if cut != -1:
                text, stopped = text[:cut], True
        if not stopped and status in _NOT_FINAL:
            ready = len(text) - stop_overlap(text, self._stops) if self._stops else len(text)
            if self._tools is not None:
                ready = min(ready, hold_point(text, self._tools))
            self._text(text[:ready], out)
            return
        reason = "stop" if stopped else FINISH_REASONS.get(status, "stop")
        native = alt.calls() if self._chat else []
        text, calls, reason = complete_answer(text, reason, native, self._tools, self._single_call, self._new_id)
        self._text(text, out)
        if calls:
            indexed = [{"index": i, **call} for i, call in enumerate(calls)]
            out.append(self._delta(orjson.dumps({"tool_calls": indexed})))
        self._finish(reason, out)

    def _text(self, text: str, out: list[StreamEvent]) -> None:
        """Send what ``text`` adds to what was sent (nothing if it does not extend it)."""
        if len(text) > len(self._sent) and text.startswith(self._sent):
            piece = text[len(self._sent) :]
            self._sent = text
            if self._chat:
                out.append(self._delta(b'{"content":' + orjson.dumps(piece) + b"}"))
            else:
                out.append(Chunk(self._choice(self._completion_text(piece, b"null"))))

    def _finish(self, reason: str, out: list[StreamEvent]) -> None:
        finish = b'"' + reason.encode() + b'"'
        if self._chat:
            out.append(Chunk(self._choice(b'{"index":0,"delta":{},"logprobs":null,"finish_reason":' + finish + b"}")))
        else:
            out.append(Chunk(self._choice(self._completion_text("", finish))))
        if self.include_usage:
            out.append(Chunk(self._head + b'[],"usage":' + orjson.dumps(self._usage.to_openai()) + b"}"))
        out.append(StreamUsage(self._usage))
        out.append(_END)
        self._finished = True

    # -- chunk bytes --

    def _choice(self, choice: bytes) -> bytes:
        return self._head + b"[" + choice + b"]}"

    def _delta(self, delta: bytes) -> Chunk:
        return Chunk(self._choice(b'{"index":0,"delta":' + delta + b',"logprobs":null,"finish_reason":null}'))

    @staticmethod
    def _completion_text(text: str, finish: bytes) -> bytes:
        return b'{"text":' + orjson.dumps(text) + b',"index":0,"logprobs":null,"finish_reason":' + finish + b"}"
