"""Anthropic Messages request -> OpenAI chat request (sans-IO).

The translated :class:`ChatCompletionRequest` goes through the same provider translators as a chat
call, so every configured provider can serve ``/v1/messages``. Alongside it the translator records
where each OpenAI message, content part and tool call came from, so an error a provider translator
or the upstream raises about ``messages[2].content[0]`` can be reported with the path the client
sent (``messages[1].content[3]``): Anthropic's ``system`` becomes a message and one user turn with
tool results becomes several OpenAI messages, so the indexes differ.

Mapping (README "Anthropic-compatible API"): ``system`` -> a system message; ``tool_use`` blocks ->
assistant ``tool_calls`` (``input`` serialised as the arguments string); each ``tool_result`` -> a
``tool`` message, with any images it holds moved into the user message that follows; images ->
``image_url`` parts (base64 as a ``data:`` URI); text documents -> text parts, PDF documents -> a
``file`` part; ``thinking`` blocks are dropped; ``tool_choice`` auto/any/tool/none -> auto/required/
function/none; ``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``; ``stop_sequences``
-> ``stop``; ``metadata.user_id`` -> ``user``; ``output_config.format`` json_schema ->
``response_format``; ``top_k`` and ``thinking`` have no OpenAI equivalent and are not forwarded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from omen.api import anthropic as a
from omen.api.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    ContentPart,
    FilePart,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    Message,
    StreamOptions,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from omen.errors import OmenError, bad_request

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

# OpenAI top-level params -> the Anthropic param they were made from (for error messages)
_TOP_LEVEL = {
    "model": "model",
    "messages": "messages",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "stop": "stop_sequences",
    "temperature": "temperature",
    "top_p": "top_p",
    "tools": "tools",
    "tool_choice": "tool_choice",
    "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
    "user": "metadata.user_id",
    "response_format": "output_config.format",
    "stream": "stream",
    "stream_options": "stream",
}


@dataclass(slots=True)
class Translated:
    request: ChatCompletionRequest
    origins: dict[str, str] = field(default_factory=dict)
    """OpenAI param path prefix (``messages[2].content[0]``) -> the Anthropic path it came from."""

    def anthropic_param(self, param: str | None) -> str | None:
        """The Anthropic path for an OpenAI ``param``, or None when it has no counterpart.

        Walks up the path (``messages[2].content[0].image_url.url`` -> ``messages[2].content[0]``
        -> ...) to the nearest recorded origin: the OpenAI-only tail has no Anthropic spelling.
        """
        key = param
        while key:
            hit = self.origins.get(key) or _TOP_LEVEL.get(key)
            if hit is not None:
                return hit
            cut = max(key.rfind("."), key.rfind("["))
            if cut <= 0:
                return None
            key = key[:cut]
        return None

    def rewrite(self, error: OmenError) -> OmenError:
        """``error`` with its param (if any) translated back to the client's Anthropic path."""
        if error.param:
            error.param = self.anthropic_param(error.param)
        return error


def encode_chat(request: ChatCompletionRequest) -> bytes:
    """The OpenAI-format body for ``request``. The chat structs omit default values, but OpenAI requires
    the ``"type": "function"`` of tools and tool calls, so those are written out."""
    body = msgspec.to_builtins(request)
    if "tools" in body:
        body["tools"] = [{"type": "function", **tool} for tool in body["tools"]]
    for message in body["messages"]:
        calls = message.get("tool_calls")
        if calls:
            message["tool_calls"] = [{"id": c["id"], "type": "function", "function": c["function"]} for c in calls]
    return orjson.dumps(body)


class _Builder:
    __slots__ = ("messages", "origins")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.origins: dict[str, str] = {}

    def add(self, message: Message, origin: str, parts: list[str] | None = None, content: str | None = None) -> str:
        i = len(self.messages)
        self.messages.append(message)
        prefix = f"messages[{i}]"
        self.origins[prefix] = origin
        self.origins[f"{prefix}.content"] = content or f"{origin}.content"
        for j, part_origin in enumerate(parts or ()):
            self.origins[f"{prefix}.content[{j}]"] = part_origin
        return prefix


def to_chat_request(
    req: a.CountTokensRequest,
    upstream_model: str,
    *,
    stream: bool = False,
    max_tokens_field: str = "max_tokens",
) -> Translated:
    """Translate ``req`` for ``upstream_model``. ``max_tokens_field`` is ``max_completion_tokens`` for
    upstreams that refuse ``max_tokens`` on reasoning models (OpenAI, Azure), else ``max_tokens``."""
    b = _Builder()
    _system(req.system, b)
    for i, message in enumerate(req.messages):
        if isinstance(message, a.UserMessage):
            _user(message, f"messages[{i}]", b)
        else:
            _assistant(message, f"messages[{i}]", b)
    if not b.messages:
        raise bad_request("'messages' must contain at least one message.", param="messages")
    out = ChatCompletionRequest(model=upstream_model, messages=b.messages)
    if req.max_tokens is not None:
        if req.max_tokens < 1:
            raise bad_request("'max_tokens' must be at least 1.", param="max_tokens")
        setattr(out, max_tokens_field, req.max_tokens)
    if stream:
        out.stream = True
        # usage arrives on the last chunk; Anthropic's message_delta must carry output_tokens
        out.stream_options = StreamOptions(include_usage=True)
    if req.stop_sequences:
        out.stop = list(req.stop_sequences)
    out.temperature = req.temperature
    out.top_p = req.top_p
    if req.metadata is not None and req.metadata.user_id:
        out.user = req.metadata.user_id
    if req.tools:
        out.tools = _tools(req.tools, b.origins)
        _tool_choice(req.tool_choice, req.tools, out)
    if req.output_config is not None and req.output_config.format is not None:
        out.response_format = _response_format(req.output_config.format)
    return Translated(out, b.origins)


# ---- system and messages -----------------------------------------------------------------------------


def _system(system: str | list[a.TextBlock] | None, b: _Builder) -> None:
    if not system:
        return
    if isinstance(system, str):
        b.add(SystemMessage(content=system), "system", content="system")
    else:
        parts: list[ContentPart] = [TextPart(text=block.text) for block in system]
        b.add(SystemMessage(content=parts), "system", [f"system[{k}]" for k in range(len(system))], "system")


def _user(message: a.UserMessage, path: str, b: _Builder) -> None:
    if isinstance(message.content, str):
        b.add(UserMessage(content=message.content), path)
        return
    if not message.content:
        raise bad_request("A user message must have non-empty content.", param=f"{path}.content")
    parts: list[ContentPart] = []
    origins: list[str] = []
    moved: list[ContentPart] = []  # images found inside tool results
    moved_origins: list[str] = []
    for k, block in enumerate(message.content):
        where = f"{path}.content[{k}]"
        if isinstance(block, a.ToolResultBlock):
            content = _tool_result(block, where, moved, moved_origins)
            b.add(ToolMessage(content=content, tool_call_id=block.tool_use_id), where)
        elif isinstance(block, a.TextBlock | a.ImageBlock | a.DocumentBlock):
            for part in _parts(block, where):
                parts.append(part)
                origins.append(where)
        else:
            raise bad_request(
                f"A '{_block_type(block)}' block is not allowed in a user message.", param=f"{where}.type"
            )
    # OpenAI wants tool messages right after the assistant's tool_calls, so they go first (Anthropic
    # also asks for tool_result blocks before any other content of the turn).
    if moved or parts:
        b.add(UserMessage(content=moved + parts), path, moved_origins + origins)


def _assistant(message: a.AssistantMessage, path: str, b: _Builder) -> None:
    if isinstance(message.content, str):
        b.add(AssistantMessage(content=message.content), path)
        return
    texts: list[str] = []
    calls: list[ToolCall] = []
    call_origins: list[str] = []
    for k, block in enumerate(message.content):
        where = f"{path}.content[{k}]"
        if isinstance(block, a.TextBlock):
            texts.append(block.text)
        elif isinstance(block, a.ToolUseBlock):
            arguments = orjson.dumps(block.input).decode()
            calls.append(ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=arguments)))
            call_origins.append(where)
        elif isinstance(block, a.ThinkingBlock | a.RedactedThinkingBlock):
            continue  # the upstream model did not produce them and cannot verify their signature
        else:
            raise bad_request(
                f"A '{_block_type(block)}' block is not allowed in an assistant message.", param=f"{where}.type"
            )
    if not texts and not calls:
        return  # an empty (prefill) turn, or thinking only: nothing for the upstream to see
    msg = AssistantMessage(content="".join(texts) if texts else None, tool_calls=calls or None)
    prefix = b.add(msg, path)
    for c, origin in enumerate(call_origins):
        b.origins[f"{prefix}.tool_calls[{c}]"] = origin


def _tool_result(
    block: a.ToolResultBlock, path: str, moved: list[ContentPart], moved_origins: list[str]
) -> str | list[ContentPart]:
    content = block.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[ContentPart] = []
    for k, item in enumerate(content):
        where = f"{path}.content[{k}]"
        for part in _parts(item, where):
            if isinstance(part, TextPart):
                texts.append(part)
            else:  # OpenAI tool messages carry text only: the image follows in the next user message
                moved.append(part)
                moved_origins.append(where)
    return texts if texts else ""


def _parts(block: a.TextBlock | a.ImageBlock | a.DocumentBlock, path: str) -> list[ContentPart]:
    if isinstance(block, a.TextBlock):
        return [TextPart(text=block.text)]
    if isinstance(block, a.ImageBlock):
        return [_image(block.source, f"{path}.source")]
    return _document(block, path)


def _image(source: a.Base64Source | a.URLSource | a.FileSource, path: str) -> ImagePart:
    if isinstance(source, a.Base64Source):
        if source.media_type not in IMAGE_MEDIA_TYPES:
            raise bad_request(
                f"Unsupported image media_type '{source.media_type}'; use one of {', '.join(IMAGE_MEDIA_TYPES)}.",
                param=f"{path}.media_type",
            )
        if not source.data:
            raise bad_request("The image data must not be empty.", param=f"{path}.data")
        return ImagePart(image_url=ImageURL(url=f"data:{source.media_type};base64,{source.data}"))
    if isinstance(source, a.URLSource):
        if not source.url.startswith(("http://", "https://")):
            raise bad_request("An image URL must be an http(s) URL.", param=f"{path}.url")
        return ImagePart(image_url=ImageURL(url=source.url))
    raise _file_source(path)


def _document(block: a.DocumentBlock, path: str) -> list[ContentPart]:
    source = block.source
    where = f"{path}.source"
    if isinstance(source, a.TextSource):
        return [TextPart(text=source.data)]
    if isinstance(source, a.ContentSource):
        if isinstance(source.content, str):
            return [TextPart(text=source.content)]
        out: list[ContentPart] = []
        for k, item in enumerate(source.content):
            out.extend(_parts(item, f"{where}.content[{k}]"))
        return out
    if isinstance(source, a.Base64Source):
        if source.media_type != "application/pdf":
            raise bad_request(
                f"Unsupported document media_type '{source.media_type}'; base64 documents must be "
                "application/pdf (send plain text with a 'text' source).",
                param=f"{where}.media_type",
            )
        name = block.title or "document.pdf"
        return [FilePart(file={"filename": name, "file_data": f"data:application/pdf;base64,{source.data}"})]
    if isinstance(source, a.URLSource):
        raise bad_request(
            "Documents by URL are not fetched by the gateway; send the PDF as base64 or the text as a 'text' source.",
            param=f"{where}.type",
        )
    raise _file_source(where)


def _file_source(path: str) -> OmenError:
    return bad_request(
        "Files API sources (file_id) are not available through the gateway; send the content as base64 or as a URL.",
        param=f"{path}.type",
    )


def _block_type(block: Any) -> str:
    return type(block).__struct_config__.tag  # the "type" the client sent


# ---- tools and the rest ------------------------------------------------------------------------------


def _tools(tools: list[a.Tool], origins: dict[str, str]) -> list[Tool]:
    out: list[Tool] = []
    for k, tool in enumerate(tools):
        path = f"tools[{k}]"
        if tool.type not in (None, "custom"):
            raise bad_request(
                f"Anthropic's built-in tool '{tool.type}' is not available through the gateway; declare a custom "
                "tool with 'name', 'description' and 'input_schema'.",
                param=f"{path}.type",
            )
        if tool.input_schema is None:
            raise bad_request(f"Missing required field '{path}.input_schema'.", param=f"{path}.input_schema")
        fn = FunctionDefinition(
            name=tool.name, description=tool.description, parameters=tool.input_schema, strict=tool.strict
        )
        out.append(Tool(type="function", function=fn))
        origins[path] = path
        origins[f"{path}.function.parameters"] = f"{path}.input_schema"
        origins[f"{path}.function.name"] = f"{path}.name"
        origins[f"{path}.function.description"] = f"{path}.description"
    return out


def _tool_choice(choice: a.ToolChoice | None, tools: list[a.Tool], out: ChatCompletionRequest) -> None:
    if choice is None:
        return
    if isinstance(choice, a.ToolChoiceAuto):
        out.tool_choice = "auto"
    elif isinstance(choice, a.ToolChoiceAny):
        out.tool_choice = "required"
    elif isinstance(choice, a.ToolChoiceNone):
        out.tool_choice = "none"
        return
    else:
        if not any(tool.name == choice.name for tool in tools):
            raise bad_request(
                f"tool_choice names the tool '{choice.name}', which is not in 'tools'.", param="tool_choice.name"
            )
        out.tool_choice = {"type": "function", "function": {"name": choice.name}}
    if choice.disable_parallel_tool_use:
        out.parallel_tool_calls = False


def _response_format(fmt: a.OutputFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        raise bad_request(
            f"Unsupported output_config.format type '{fmt.type}'; use 'json_schema'.", param="output_config.format.type"
        )
    if fmt.schema is None:
        raise bad_request("Missing required field 'output_config.format.schema'.", param="output_config.format.schema")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt.schema}}
