"""xAI (Grok): the OpenAI adapter plus xAI's error shape and two stream quirks.

- Errors come as ``{"code": "<sentence>", "error": "<message>"}``, and a bad API key is HTTP 400.
- Streamed chunks carry a cumulative ``usage`` on every chunk, so usage is kept (undecoded) and
  reported once, from the last one, when the stream finishes.
- After streamed tool calls the final chunk may say ``"finish_reason":""``; OpenAI clients expect
  ``"tool_calls"``, so that one chunk is rewritten.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from omen.errors import OmenError
from omen.providers.base import Chunk, Headers, Result, StreamEvent, Usage
from omen.providers.openai_compat import OpenAIProvider, OpenAIStream, has_usage_object, probe_usage, usage_of_body
from omen.providers.upstream_errors import UpstreamError, normalise_error


def xai_usage(usage: Any) -> Usage | None:
    """OpenAI usage, with reasoning tokens folded into completion_tokens when xAI left them out.

    xAI has been seen reporting reasoning tokens outside ``completion_tokens`` but inside
    ``total_tokens``; the fold happens only when the numbers show exactly that, so a corrected API
    is not double counted.
    """
    result = Usage.from_openai(usage)
    if result is None or not result.reasoning_tokens:
        return result
    total = usage.get("total_tokens")
    if total == result.prompt_tokens + result.completion_tokens + result.reasoning_tokens:
        result.completion_tokens += result.reasoning_tokens
    return result


class XAIStream(OpenAIStream):
    def __init__(self, provider: str, include_usage: bool, usage_injected: bool = False) -> None:
        super().__init__(provider, include_usage, usage_injected)
        self._saw_tool_calls = False
        # xAI repeats usage on every chunk: keep the latest payload undecoded, decode it once at the end
        self._last_usage_payload: bytes | None = None

    def _chunk(self, data: bytes, out: list[StreamEvent]) -> None:
        if b'"tool_calls"' in data:
            self._saw_tool_calls = True
        if self._saw_tool_calls and b'"finish_reason":""' in data:
            data = _fix_finish_reason(data)
        if has_usage_object(data):
            self._last_usage_payload = data
            # only a choices-less usage chunk can be one OMEN asked for; chunks with choices always go
            if not self.include_usage and b'"choices":[]' in data and not probe_usage(data).choices:
                return
        out.append(Chunk(data))

    def _usage(self, usage: Any) -> Usage | None:
        return xai_usage(usage)

    def _before_finish(self, out: list[StreamEvent]) -> None:
        if self._last_usage_payload is not None:
            self._latest_usage = self._usage(probe_usage(self._last_usage_payload).usage)
            self._last_usage_payload = None
        super()._before_finish(out)


def _fix_finish_reason(data: bytes) -> bytes:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    changed = False
    choices = obj.get("choices") if isinstance(obj, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and choice.get("finish_reason") == "":
            choice["finish_reason"] = "tool_calls"
            changed = True
    return orjson.dumps(obj) if changed else data


class XAIProvider(OpenAIProvider):
    """``type = "xai"``: https://api.x.ai/v1, Bearer auth."""

    type: ClassVar[str] = "xai"
    default_base_url: ClassVar[str | None] = "https://api.x.ai/v1"
    stream_class: ClassVar[type[OpenAIStream]] = XAIStream

    def _result(self, body: bytes) -> Result:
        return Result(body=body, usage=usage_of_body(self.id, body, xai_usage))

    def error(self, status: int, headers: Headers, body: bytes) -> OmenError:
        return classify_xai_error(normalise_error(self.id, status, body, headers))


def classify_xai_error(error: UpstreamError) -> UpstreamError:
    """Restore the statuses OpenAI clients branch on, which xAI folds into 400."""
    text = error.message.lower()
    if "incorrect api key" in text or "invalid api key" in text:
        error.status, error.type, error.code = 401, "authentication_error", "invalid_api_key"
    elif "credits" in text and (error.status in (402, 429) or "ran out" in text):
        error.status, error.type, error.code = 429, "insufficient_quota", "insufficient_quota"
    return error
