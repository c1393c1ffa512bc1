"""``POST /v1/chat/completions`` request schema.

The struct covers the whole documented request so a wrong type is rejected with its exact path
(``$.messages[1].role``). Fields OMEN does not interpret are still forwarded untouched to
OpenAI-compatible upstreams, because those adapters forward the original body bytes, not this struct.
Unknown fields are ignored here (forward compatibility) rather than rejected.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class _Wire(msgspec.Struct, omit_defaults=True):
    pass


# ---- content parts (tagged by "type") ---------------------------------------------------------


class TextPart(_Wire, tag_field="type", tag="text"):
    text: str


class ImageURL(_Wire):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Wire, tag_field="type", tag="image_url"):
    image_url: ImageURL


class InputAudio(_Wire):
    data: str
    format: str


class AudioPart(_Wire, tag_field="type", tag="input_audio"):
    input_audio: InputAudio


class FilePart(_Wire, tag_field="type", tag="file"):
    file: dict[str, Any]


class RefusalPart(_Wire, tag_field="type", tag="refusal"):
    refusal: str


ContentPart = TextPart | ImagePart | AudioPart | FilePart | RefusalPart
Content = str | list[ContentPart] | None


# ---- tool calls --------------------------------------------------------------------------------


class FunctionCall(_Wire):
    name: str
    arguments: str  # a JSON *string* in OpenAI's format


class ToolCall(_Wire):
    id: str
    function: FunctionCall
    type: str = "function"


# ---- messages (tagged by "role") ---------------------------------------------------------------


class SystemMessage(_Wire, tag_field="role", tag="system"):
    content: str | list[ContentPart]
    name: str | None = None


class DeveloperMessage(_Wire, tag_field="role", tag="developer"):
    content: str | list[ContentPart]
    name: str | None = None


class UserMessage(_Wire, tag_field="role", tag="user"):
    content: str | list[ContentPart]
    name: str | None = None


class AssistantMessage(_Wire, tag_field="role", tag="assistant"):
    content: Content = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    audio: dict[str, Any] | None = None


class ToolMessage(_Wire, tag_field="role", tag="tool"):
    content: str | list[ContentPart]
    tool_call_id: str


class FunctionMessage(_Wire, tag_field="role", tag="function"):
    content: str | None
    name: str


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage


# ---- tools and formats -------------------------------------------------------------------------


class FunctionDefinition(_Wire):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Wire):
    type: str = "function"
    function: FunctionDefinition | None = None
    custom: dict[str, Any] | None = None


class StreamOptions(_Wire):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ProviderPreferences(_Wire):
    """OpenRouter's request-level provider preferences."""

    order: list[str] | None = None  # provider ids (or deployment ids) to try first, in this order
    allow_fallbacks: bool = True  # false: only the providers in ``order``
    require_parameters: bool = False  # only providers that support every parameter sent
    ignore: list[str] | None = None  # provider ids never to use


class ChatCompletionRequest(_Wire):
    model: str
    messages: list[Message]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    seed: int | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    response_format: dict[str, Any] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = None
    function_call: str | dict[str, Any] | None = None
    reasoning_effort: str | None = None
    service_tier: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: str | None = None
    # ---- OMEN routing extensions (OpenRouter-style); removed before the body goes upstream ----
    models: list[str] | None = None  # fallback list: tried in order after `model`
    provider: ProviderPreferences | None = None
    tags: dict[str, str] | None = None  # hints: {"intent": "code", "priority": "low-latency" | "low-cost"}


ROUTING_FIELDS = ("models", "provider", "tags")  # what OMEN strips from a forwarded body


def message_text(content: Content) -> str:
    """The text of a message's content: a string, or its text parts joined (other parts skipped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content if isinstance(p, TextPart))
