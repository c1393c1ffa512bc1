"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` request schema (Anthropic Messages API).

Decoded in one pass with msgspec, like ``omen.api.chat``: a wrong type or an unknown block type is
rejected with its exact path (``messages[1].content[0].type``). Unknown fields are ignored (forward
compatibility); fields OMEN cannot honour are listed in the README ("Anthropic-compatible API").
Content blocks and image/document sources are tagged unions on ``type``, messages on ``role``.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Wire(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


# ---- sources (tagged by "type") ------------------------------------------------------------------


class Base64Source(_Wire, tag_field="type", tag="base64"):
    media_type: str
    data: str


class URLSource(_Wire, tag_field="type", tag="url"):
    url: str


class FileSource(_Wire, tag_field="type", tag="file"):
    file_id: str


class TextSource(_Wire, tag_field="type", tag="text"):
    data: str
    media_type: str = "text/plain"


# ---- content blocks (tagged by "type") -------------------------------------------------------------


class TextBlock(_Wire, tag_field="type", tag="text"):
    text: str
    cache_control: dict[str, Any] | None = None
    citations: Any = None


class ImageBlock(_Wire, tag_field="type", tag="image"):
    source: Base64Source | URLSource | FileSource
    cache_control: dict[str, Any] | None = None


class ContentSource(_Wire, tag_field="type", tag="content"):
    """A custom-content document: its own text (and image) blocks."""

    content: str | list[TextBlock | ImageBlock]


class DocumentBlock(_Wire, tag_field="type", tag="document"):
    source: Base64Source | URLSource | FileSource | TextSource | ContentSource
    title: str | None = None
    context: str | None = None
    cache_control: dict[str, Any] | None = None
    citations: Any = None


class ToolUseBlock(_Wire, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: dict[str, Any] | None = None


class ToolResultBlock(_Wire, tag_field="type", tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock | DocumentBlock] | None = None
    is_error: bool | None = None
    cache_control: dict[str, Any] | None = None


class ThinkingBlock(_Wire, tag_field="type", tag="thinking"):
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(_Wire, tag_field="type", tag="redacted_thinking"):
    data: str


Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock


# ---- messages (tagged by "role") -------------------------------------------------------------------


class UserMessage(_Wire, tag_field="role", tag="user"):
    content: str | list[Block]


class AssistantMessage(_Wire, tag_field="role", tag="assistant"):
    content: str | list[Block]


Message = UserMessage | AssistantMessage


# ---- tools, tool choice, the rest --------------------------------------------------------------------


class Tool(_Wire):
    name: str
    # required for custom tools; Anthropic's own tools (web_search_..., bash_...) have a dated ``type``
    # and no schema, and are refused by the translator with the param named
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    type: str | None = None
    strict: bool | None = None
    cache_control: dict[str, Any] | None = None


class ToolChoiceAuto(_Wire, tag_field="type", tag="auto"):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Wire, tag_field="type", tag="any"):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Wire, tag_field="type", tag="tool"):
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Wire, tag_field="type", tag="none"):
    pass


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class Metadata(_Wire):
    user_id: str | None = None


class Thinking(_Wire):
    """``{"type": "enabled", "budget_tokens": N}`` | ``{"type": "disabled"}`` | ``{"type": "adaptive"}``."""

    type: str
    budget_tokens: int | None = None


class OutputFormat(_Wire):
    type: str
    schema: dict[str, Any] | None = None


class OutputConfig(_Wire):
    format: OutputFormat | None = None
    effort: str | None = None


class CountTokensRequest(_Wire):
    """The body of ``/v1/messages/count_tokens``: a Messages request without ``max_tokens``/``stream``."""

    model: str
    messages: list[Message]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    metadata: Metadata | None = None
    output_config: OutputConfig | None = None
    service_tier: str | None = None
    stream: bool | None = None
    max_tokens: int | None = None


class MessagesRequest(CountTokensRequest, kw_only=True):
    """The body of ``/v1/messages``; ``max_tokens`` is required, as Anthropic requires it."""

    max_tokens: int  # type: ignore[assignment]
