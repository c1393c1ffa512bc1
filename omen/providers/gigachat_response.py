"""GigaChat answers -> OpenAI chat completions and chunks (providers.md §8.3-8.4, §10.2, §10.6).

A GigaChat answer is OpenAI-like, but has no ``id``, reports function calls in the older
``function_call`` shape (one per message, ``arguments`` an object) and ``finish_reason``
``function_call``/``blacklist``. The stream is SSE ``data:`` JSON ending with ``data: [DONE]``; a function
call arrives whole in one delta and usage on the last chunk. GigaChat has no stop sequences, so OMEN
applies the request's ``stop`` itself (:class:`StopFilter`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from omen.errors import OmenError
from omen.providers.base import Chunk, StreamEnd, StreamError, StreamEvent, StreamUsage, Usage
from omen.providers.gigachat_request import Mode
from omen.providers.upstream_errors import (
    default_error_type,
    invalid_upstream_body,
    redact,
    redact_body,
    snippet,
    status_hint,
)
from omen.streaming.sse import SSEDecoder

_FINISH = {
    "stop": "stop",
    "length": "length",
    "function_call": "tool_calls",
    "blacklist": "content_filter",  # GigaChat's topic restrictions / censor
    "error": "stop",  # invalid user-function arguments; the text so far is the answer
}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_END = StreamEnd()
_DONE = b"[DONE]"


# ---- GigaChat wire types (only the fields OMEN reads) ----------------------------------------------------


class _FunctionCall(msgspec.Struct):
    name: str = ""
    arguments: Any = None


class _Message(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    function_call: _FunctionCall | None = None
    functions_state_id: str | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    message: _Message | None = None  # whole answers
    delta: _Message | None = None  # stream chunks
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    precached_prompt_tokens: int | None = None

    def to_usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            cached_tokens=self.precached_prompt_tokens or 0,
        )


class _Answer(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    status: Any = None  # an error object in place of an answer: {"status", "message"}
    message: Any = None


_answer_decoder = msgspec.json.Decoder(_Answer)


def decode_answer(provider: str, body: bytes, what: str = "a response") -> _Answer:
    try:
        return _answer_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise invalid_upstream_body(provider, what, body) from None


def in_band_error(provider: str, answer: _Answer, body: bytes) -> OmenError | None:
    """An error object where an answer was expected (GigaChat's ``{"status", "message"}``)."""
    if answer.choices is not None or (answer.status is None and answer.message is None):
        return None
    status = status_hint({"status": answer.status}, 502)
    if isinstance(answer.message, str) and answer.message:
        message = redact(provider, answer.message)
    else:
        message = snippet(redact_body(provider, body))
    return OmenError(status, f"Upstream provider '{provider}' reported: {message}", type=default_error_type(status))


# ---- pieces shared by whole answers and streams ---------------------------------------------------------


def finish_reason(reason: str | None, mode: Mode) -> str:
    mapped = _FINISH.get(reason or "stop", "stop")
    if mapped == "tool_calls" and mode.legacy_functions:
        return "function_call"
    return mapped


def tool_call_id(state_id: str | None, new_id: Callable[[], str]) -> str:
    """``call_<functions_state_id>`` when GigaChat gave one, so replaying the call in a later request gives
    it back (see gigachat_request); else a random id (GigaChat's calls have none)."""
    if state_id and _UUID.fullmatch(state_id):
        return f"call_{state_id}"
    return f"call_{new_id()}"


def arguments_text(arguments: Any) -> str:
    """GigaChat's arguments object -> the JSON string OpenAI clients expect."""
    if isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments if arguments is not None else {}).decode()


class StopFilter:
    """Cuts text at the first stop sequence. Streamed text is held back only while its end could still
    be the start of a stop sequence, so ordinary text is not delayed."""

    __slots__ = ("_pending", "hit", "stops")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self._pending = ""
        self.hit = False

    def cut(self, text: str) -> tuple[str, bool]:
        """Whole text -> (text before the first stop sequence, whether one was found). "First" is the one
        that is complete first, as generation would have stopped there (then the longest of those)."""
        found = [(i + len(s), i) for i, s in ((text.find(s), s) for s in self.stops) if i >= 0]
        return (text[: min(found)[1]], True) if found else (text, False)

    def feed(self, text: str) -> str:
        if self.hit:
            return ""
        text, self.hit = self.cut(self._pending + text)
        if self.hit:
            self._pending = ""
            return text
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:n]):
                    keep = n
                    break
        self._pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return text


# ---- whole answers ----------------------------------------------------------------------------------------


def chat_completion(
    provider: str,
    body: bytes,
    mode: Mode,
    *,
    completion_id: str,
    created: int,
    model: str,
    new_id: Callable[[], str],
) -> tuple[dict[str, Any], Usage]:
    answer = decode_answer(provider, body)
    error = in_band_error(provider, answer, body)
    if error is not None:
        raise error
    choices = []
    for choice in answer.choices or ():
        msg = choice.message or _Message()
        content, stopped = StopFilter(mode.stop).cut(msg.content or "") if mode.stop else (msg.content or "", False)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if msg.reasoning_content:
            message["reasoning_content"] = msg.reasoning_content
        fc = msg.function_call
        if fc is not None:
            call = {"name": fc.name, "arguments": arguments_text(fc.arguments)}
            if mode.legacy_functions:
                message["function_call"] = call
            else:
                tool = {"id": tool_call_id(msg.functions_state_id, new_id), "type": "function", "function": call}
                message["tool_calls"] = [tool]
            message["content"] = content or None
        reason = "stop" if stopped and fc is None else finish_reason(choice.finish_reason, mode)
        choices.append({"index": choice.index, "message": message, "logprobs": None, "finish_reason": reason})
    usage = answer.usage.to_usage() if answer.usage is not None else Usage()
    out = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage.to_openai(),
    }
    return out, usage


# ---- streams ------------------------------------------------------------------------------------------------


class _ChoiceState:
    __slots__ = ("call", "finished", "state_id", "stop")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.finished = False
        self.stop = StopFilter(stops) if stops else None
        self.call: _FunctionCall | None = None  # sent with the choice's finish
        self.state_id: str | None = None


class GigaChatChatStream:
    """GigaChat SSE -> OpenAI chunks, built from precomputed byte prefixes (see OllamaChatStream)."""

    def __init__(
        self,
        provider: str,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        mode: Mode,
        new_id: Callable[[], str],
    ) -> None:
        self.provider = provider
        self.include_usage = include_usage
        self._mode = mode
        self._new_id = new_id
        self._sse = SSEDecoder()
        self._choices: dict[int, _ChoiceState] = {}
        self._usage: Usage | None = None
        self._finished = False
        self._tail = b""  # the last bytes seen: "data: [DONE]" without its blank line still ends the stream
        head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._head = orjson.dumps(head)[:-1] + b',"choices":'

    def feed(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._finished:
            return out
        self._tail = (self._tail + data)[-32:]
        for event in self._sse.feed(data):
            self._event(event.data, out)
            if self._finished:
                break
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._finished:
            return out
        self._sse.close()
        if self._tail.rstrip().endswith(b"data: " + _DONE) or self._tail.rstrip().endswith(b"data:" + _DONE):
            self._done(out)
            return out
        self._fail(
            OmenError(
                502,
                f"Upstream provider '{self.provider}' ended the stream early (no final data: [DONE]).",
                type="server_error",
                code="upstream_stream_truncated",
            ),
            out,
        )
        return out

    # -- events --

    def _fail(self, error: OmenError, out: list[StreamEvent]) -> None:
        self._finished = True
        out.append(StreamError(error))

    def _event(self, data: bytes, out: list[StreamEvent]) -> None:
        if data.strip() == _DONE:
            self._done(out)
            return
        try:
            answer = _answer_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._fail(invalid_upstream_body(self.provider, "a stream event", data), out)
            return
        error = in_band_error(self.provider, answer, data)
        if error is not None:
            self._fail(error, out)
            return
        for choice in answer.choices or ():
            self._choice(choice, out)
        if answer.usage is not None:
            self._usage = answer.usage.to_usage()

    def _done(self, out: list[StreamEvent]) -> None:
        for index, state in self._choices.items():
            if not state.finished:  # no finish_reason came: release what was held back
                if state.stop is not None:
                    self._content(index, state.stop.flush(), out)
                self._call(index, state, out)
        if self._usage is not None:
            if self.include_usage:
                out.append(Chunk(self._head + b'[],"usage":' + orjson.dumps(self._usage.to_openai()) + b"}"))
            out.append(StreamUsage(self._usage))
        out.append(_END)
        self._finished = True

    def _chunk(self, index: int, delta: bytes, finish: bytes = b"null") -> Chunk:
        return Chunk(
            self._head + b'[{"index":%d,"delta":%b,"logprobs":null,"finish_reason":%b}]}' % (index, delta, finish)
        )

    def _content(self, index: int, text: str, out: list[StreamEvent]) -> None:
        if text:
            out.append(self._chunk(index, orjson.dumps({"content": text})))

    def _call(self, index: int, state: _ChoiceState, out: list[StreamEvent]) -> None:
        """The choice's function call as one OpenAI delta: all of it, at tool-call index 0 (one per turn)."""
        fc, state.call = state.call, None
        if fc is None:
            return
        call = {"name": fc.name, "arguments": arguments_text(fc.arguments)}
        if self._mode.legacy_functions:
            out.append(self._chunk(index, orjson.dumps({"function_call": call})))
            return
        tool = {"index": 0, "id": tool_call_id(state.state_id, self._new_id), "type": "function", "function": call}
        out.append(self._chunk(index, orjson.dumps({"tool_calls": [tool]})))

    def _choice(self, choice: _Choice, out: list[StreamEvent]) -> None:
        index = choice.index
        state = self._choices.get(index)
        if state is None:
            state = self._choices[index] = _ChoiceState(self._mode.stop)
            out.append(self._chunk(index, b'{"role":"assistant","content":""}'))
        if state.finished:
            return  # cut by a stop sequence: the rest is not the answer (usage still counts it)
        delta = choice.delta or _Message()
        if delta.functions_state_id:
            state.state_id = delta.functions_state_id
        if delta.reasoning_content:
            out.append(self._chunk(index, orjson.dumps({"reasoning_content": delta.reasoning_content})))
        if delta.content:
            if state.stop is None:
                self._content(index, delta.content, out)
            else:
                self._content(index, state.stop.feed(delta.content), out)
                if state.stop.hit:
                    state.finished = True
                    out.append(self._chunk(index, b"{}", b'"stop"'))
                    return
        if delta.function_call is not None:
            # GigaChat sends a call whole (arguments are an object, never fragments), in the delta that
            # finishes the choice; were it ever repeated, the last snapshot is the call
            state.call = delta.function_call
        if choice.finish_reason is not None:
            if state.stop is not None:
                self._content(index, state.stop.flush(), out)
            self._call(index, state, out)
            state.finished = True
            reason = finish_reason(choice.finish_reason, self._mode)
            out.append(self._chunk(index, b"{}", b'"' + reason.encode() + b'"'))


__all__ = ["GigaChatChatStream", "StopFilter", "chat_completion", "decode_answer", "finish_reason", "tool_call_id"]
