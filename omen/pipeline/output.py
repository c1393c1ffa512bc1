"""The client API an answer is written in.

OpenAI's format is the default and costs nothing: with ``RequestContext.output`` left ``None`` the
relay sends translator bodies and chunks as they are (``relay._Renderer`` adds only the SSE framing
and ``[DONE]``). Another client API (Anthropic Messages, ``omen.pipeline.messages``) sets an
:class:`OutputFormat` on the context; the relay then asks it to render results, streams and errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from omen.errors import OmenError
from omen.providers.base import Result, StreamEvent

if TYPE_CHECKING:
    from omen.pipeline.context import RequestContext


class StreamRenderer(Protocol):
    """Translator events in, the client's stream bytes out (one instance per stream)."""

    done: bool
    """The stream reached its end (normal or error); nothing more is sent."""

    def render(self, events: list[StreamEvent]) -> bytes: ...

    def finish(self, error: OmenError | None) -> bytes:
        """The closing bytes when the events did not end the stream: ``error`` (or a generic
        "ended without finishing" one) as the format's in-stream error. Empty once ``done``."""
        ...


class OutputFormat(Protocol):
    def stream_renderer(self, ctx: RequestContext) -> StreamRenderer: ...

    def result_body(self, result: Result) -> bytes:
        """A non-streamed OpenAI-format result -> the client's response body."""
        ...

    def error_body(self, error: OmenError, request_id: str) -> bytes: ...
