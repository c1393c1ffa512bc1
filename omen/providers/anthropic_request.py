"""OpenAI chat request -> Anthropic Messages request body (providers.md §5.2, §10.3-10.5).

Choices made here, each because Anthropic has no direct equivalent:

* ``system``/``developer`` messages are hoisted, in order, into the top-level ``system`` (a string
  joined with blank lines, or text blocks when a part carries ``cache_control``).
* ``tool`` results become ``tool_result`` blocks in a user turn; consecutive turns of one role are
  merged (Anthropic wants user/assistant alternation), with ``tool_result`` blocks first in the turn.
* Images: ``data:`` URIs become base64 sources (png/jpeg/gif/webp); http(s) URLs are sent as ``url``
  sources, since Anthropic fetches them itself. ``file`` parts with inline PDF or plain text become
  ``document`` blocks. ``temperature`` must be within Anthropic's 0-1 (OpenAI allows up to 2).
* ``max_tokens`` is required by Anthropic: ``max_completion_tokens``, else ``max_tokens``, else
  :data:`DEFAULT_MAX_TOKENS`.
* ``response_format``: ``json_schema`` becomes Anthropic's native structured output
  (``output_config.format``, constrained decoding, the documented replacement of prefill and of the
  forced-tool trick; models without structured outputs answer with their own 400). ``json_object``
  has no schema to constrain to, so it becomes a system instruction.
* ``cache_control`` (Anthropic prompt caching) is not an OpenAI field, but clients send it as an extra
  key on content parts, messages, tools or the top level (the convention other gateways follow); it
  is forwarded to the matching Anthropic block. ``top_k``, sent the same way, is forwarded too.
  Other Anthropic-only parameters are not: ``thinking`` in particular would need the signed thinking
  blocks sent back on the next turn, which OpenAI messages cannot carry.
* Parameters Anthropic cannot honour and that would change the answer (``n`` > 1, logprobs,
  logit_bias, non-zero penalties, audio output, reasoning_effort, web search) are refused with a 400;
  ``seed`` is dropped (OpenAI documents it as best effort), as are OpenAI-only hints (``store``,
  ``service_tier``, ``prompt_cache_key``, ``prediction``, ``verbosity``, ``stream_options``).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from omen.api.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    ContentPart,
    DeveloperMessage,
    FilePart,
    FunctionDefinition,
    FunctionMessage,
    ImagePart,
    RefusalPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)
from omen.errors import bad_request
from omen.providers.ollama import _arguments

DEFAULT_MAX_TOKENS = 4096
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else: no prose, no Markdown code fences."
_IMAGE_TYPES = {"image/png": "image/png", "image/jpeg": "image/jpeg", "image/jpg": "image/jpeg"}
_IMAGE_TYPES |= {"image/gif": "image/gif", "image/webp": "image/webp"}
_BAD_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_NAME = "This provider (Anthropic)"

Block = dict[str, Any]


# ---- small helpers ---------------------------------------------------------------------------------------


def tool_use_id(call_id: str) -> str:
    """Anthropic ids must match ``^[a-zA-Z0-9_-]+$``; ids minted by other providers may not. The same
    mapping is applied to the ``tool_use`` and its ``tool_result``, so the pair still matches."""
    return _BAD_ID_CHARS.sub("_", call_id) or "call"


def _cache_control(raw: Any) -> dict[str, Any] | None:
    value = raw.get("cache_control") if isinstance(raw, dict) else None
    return value if isinstance(value, dict) else None


def _raw_part(raw_msg: Any, j: int) -> Any:
    content = raw_msg.get("content") if isinstance(raw_msg, dict) else None
    return content[j] if isinstance(content, list) and j < len(content) else None


def _with_cache(block: Block, raw: Any) -> Block:
    cc = _cache_control(raw)
    if cc is not None:
        block["cache_control"] = cc
    return block


def _text_block(text: str, raw: Any = None) -> Block | None:
    # Anthropic rejects empty and whitespace-only text blocks; they carry nothing, so drop them.
    if not text.strip():
        return None
    return _with_cache({"type": "text", "text": text}, raw)


def _data_uri(url: str, param: str) -> tuple[str, str]:
    """``data:<media>;base64,<payload>`` -> (media type, payload); 400 unless it is valid base64."""
    header, comma, payload = url[5:].partition(",")
    media, *attrs = header.split(";")
    if not comma or "base64" not in (a.strip().lower() for a in attrs):
        raise bad_request("A data: URI must be base64-encoded (data:image/png;base64,...).", param=param)
    try:
        if not base64.b64decode(payload, validate=True):
            raise ValueError("empty")
    except (binascii.Error, ValueError):
        raise bad_request("The data: URI does not contain valid base64 data.", param=param) from None
    return media.strip().lower(), payload


def _image_block(url: str, param: str, raw: Any) -> Block:
    if url.startswith(("http://", "https://")):
        # Anthropic fetches image URLs itself: nothing to download here.
        return _with_cache({"type": "image", "source": {"type": "url", "url": url}}, raw)
    if not url.startswith("data:"):
        raise bad_request(
            "An image URL must be an http(s) URL or a data: URI (data:image/png;base64,...).", param=param
        )
    media, payload = _data_uri(url, param)
    if media not in _IMAGE_TYPES:
        raise bad_request(
            f"Unsupported image type '{media or 'none'}'; {_NAME} accepts image/png, image/jpeg, image/gif "
            "and image/webp.",
            param=param,
        )
    source = {"type": "base64", "media_type": _IMAGE_TYPES[media], "data": payload}
    return _with_cache({"type": "image", "source": source}, raw)


def _document_block(part: FilePart, param: str, raw: Any) -> Block:
    """OpenAI ``file`` parts with inline ``file_data``: PDF and plain text become Anthropic documents.
    OpenAI file ids name files stored at OpenAI, which Anthropic cannot read."""
    data = part.file.get("file_data")
    if not isinstance(data, str) or not data.startswith("data:"):
        raise bad_request(
            f"{_NAME} needs files inline as 'file_data' data: URIs (data:application/pdf;base64,...); "
            "OpenAI file ids are not supported.",
            param=param,
        )
    media, payload = _data_uri(data, param)
    if media == "application/pdf":
        source: dict[str, Any] = {"type": "base64", "media_type": media, "data": payload}
    elif media == "text/plain":
        text = base64.b64decode(payload).decode("utf-8", "replace")
        source = {"type": "text", "media_type": media, "data": text}
    else:
        raise bad_request(
            f"Unsupported file type '{media or 'none'}'; {_NAME} accepts application/pdf and text/plain.",
            param=param,
        )
    block: Block = {"type": "document", "source": source}
    filename = part.file.get("filename")
    if isinstance(filename, str) and filename:
        block["title"] = filename
    return _with_cache(block, raw)


def _unsupported_part(part: ContentPart, param: str, where: str) -> Exception:
    kind = type(part).__name__.removesuffix("Part").lower()
    return bad_request(f"{_NAME} does not accept '{kind}' content parts in {where}.", param=param)


def _part_blocks(content: str | list[ContentPart], i: int, raw_msg: Any, *, files: bool) -> list[Block]:
    """User (and tool result) content -> text/image/document blocks."""
    if isinstance(content, str):
        block = _text_block(content)
        return [block] if block else []
    blocks: list[Block] = []
    for j, part in enumerate(content):
        param = f"messages[{i}].content[{j}]"
        raw = _raw_part(raw_msg, j)
        if isinstance(part, TextPart):
            block = _text_block(part.text, raw)
            if block:
                blocks.append(block)
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part.image_url.url, f"{param}.image_url.url", raw))
        elif isinstance(part, FilePart) and files:
            blocks.append(_document_block(part, f"{param}.file", raw))
        else:
            raise _unsupported_part(part, param, "this message")
    return blocks


def _text_only(content: str | list[ContentPart] | None, i: int, raw_msg: Any, where: str) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        block = _text_block(content)
        return [block] if block else []
    blocks: list[Block] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            text = part.text
        elif isinstance(part, RefusalPart) and where == "assistant messages":
            text = part.refusal
        else:
            raise _unsupported_part(part, f"messages[{i}].content[{j}]", where)
        block = _text_block(text, _raw_part(raw_msg, j))
        if block:
            blocks.append(block)
    return blocks


def _mark_last(blocks: list[Block], raw_msg: Any) -> None:
    """A ``cache_control`` on the message itself marks its last block (the breakpoint ends there)."""
    cc = _cache_control(raw_msg)
    if cc is not None and blocks:
        blocks[-1]["cache_control"] = cc


# ---- messages ------------------------------------------------------------------------------------------


class _Conversation:
    """Collects system text and role turns while walking the OpenAI messages."""

    def __init__(self, raw_messages: list[Any] | None) -> None:
        self.raw = raw_messages or []
        self.system: list[Block] = []
        self.turns: list[tuple[str, list[Block]]] = []
        self.function_ids: dict[str, str] = {}  # legacy function_call name -> the id minted for it

    def raw_msg(self, i: int) -> Any:
        return self.raw[i] if i < len(self.raw) else None

    def add(self, i: int, msg: Any) -> None:
        raw = self.raw_msg(i)
        if isinstance(msg, SystemMessage | DeveloperMessage):
            blocks = _text_only(msg.content, i, raw, "system messages")
            _mark_last(blocks, raw)
            self.system.extend(blocks)
        elif isinstance(msg, UserMessage):
            blocks = _part_blocks(msg.content, i, raw, files=True)
            _mark_last(blocks, raw)
            self.turns.append(("user", blocks))
        elif isinstance(msg, AssistantMessage):
            self.turns.append(("assistant", self._assistant(msg, i, raw)))
        elif isinstance(msg, ToolMessage):
            self.turns.append(("user", [self._tool_result(tool_use_id(msg.tool_call_id), msg.content, i, raw)]))
        elif isinstance(msg, FunctionMessage):
            call_id = self.function_ids.pop(msg.name, f"call_{tool_use_id(msg.name)}")
            self.turns.append(("user", [self._tool_result(call_id, msg.content or "", i, raw)]))

    def _assistant(self, msg: AssistantMessage, i: int, raw: Any) -> list[Block]:
        blocks = _text_only(msg.content, i, raw, "assistant messages")
        calls = [(tool_use_id(c.id), c.function, k) for k, c in enumerate(msg.tool_calls or ())]
        if msg.function_call is not None:  # deprecated single-call form: it has no id, so mint one
            call_id = f"call_{tool_use_id(msg.function_call.name)}"
            self.function_ids[msg.function_call.name] = call_id
            calls.append((call_id, msg.function_call, -1))
        for call_id, fn, k in calls:
            param = f"messages[{i}].tool_calls[{k}].function.arguments" if k >= 0 else f"messages[{i}].function_call"
            args = _arguments(fn.arguments, param)
            blocks.append({"type": "tool_use", "id": call_id, "name": fn.name, "input": args})
        _mark_last(blocks, raw)
        return blocks

    def _tool_result(self, call_id: str, content: str | list[ContentPart], i: int, raw: Any) -> Block:
        block: Block = {"type": "tool_result", "tool_use_id": call_id}
        inner = _part_blocks(content, i, raw, files=False)
        if len(inner) == 1 and inner[0]["type"] == "text" and "cache_control" not in inner[0]:
            block["content"] = inner[0]["text"]
        elif inner:
            block["content"] = inner
        return _with_cache(block, raw)

    def messages(self) -> list[dict[str, Any]]:
        merged: list[tuple[str, list[Block]]] = []
        for role, blocks in self.turns:
            if not blocks:
                continue  # e.g. an assistant turn with empty content: Anthropic rejects empty turns
            if merged and merged[-1][0] == role:
                merged[-1][1].extend(blocks)
            else:
                merged.append((role, list(blocks)))
        out = []
        for role, blocks in merged:
            if role == "user":
                # tool results must open the turn that follows the tool_use turn
                blocks.sort(key=lambda b: b["type"] != "tool_result")
            if len(blocks) == 1 and blocks[0]["type"] == "text" and "cache_control" not in blocks[0]:
                out.append({"role": role, "content": blocks[0]["text"]})
            else:
                out.append({"role": role, "content": blocks})
        return out

    def system_value(self) -> str | list[Block] | None:
        if not self.system:
            return None
        if any("cache_control" in b for b in self.system):
            return self.system
        return "\n\n".join(b["text"] for b in self.system)


# ---- tools -----------------------------------------------------------------------------------------------


def _tool(fn: FunctionDefinition, raw: Any) -> Block:
    tool: Block = {"name": fn.name}
    if fn.description:
        tool["description"] = fn.description
    tool["input_schema"] = fn.parameters if fn.parameters is not None else {"type": "object", "properties": {}}
    if fn.strict:
        tool["strict"] = True
    return _with_cache(tool, raw)


def _tools(req: ChatCompletionRequest, raw_body: dict[str, Any] | None) -> list[Block]:
    raw_tools = raw_body.get("tools") if raw_body else None
    if req.tools:
        tools = []
        for k, t in enumerate(req.tools):
            if t.type != "function" or t.function is None:
                raise bad_request(f"{_NAME} supports only function tools, not '{t.type}'.", param=f"tools[{k}]")
            raw = raw_tools[k] if isinstance(raw_tools, list) and k < len(raw_tools) else None
            tools.append(_tool(t.function, raw))
        return tools
    return [_tool(fn, None) for fn in req.functions or ()]  # deprecated "functions"


def _tool_choice(req: ChatCompletionRequest) -> dict[str, Any] | None:
    if req.tools:
        choice, param = req.tool_choice, "tool_choice"
    else:
        choice, param = _legacy_choice(req.function_call), "function_call"
    if choice is None or choice == "auto":
        out: dict[str, Any] = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
        if not isinstance(name, str) or not name:
            raise bad_request("tool_choice of type 'function' needs function.name.", param=f"{param}.function.name")
        out = {"type": "tool", "name": name}
    else:
        raise bad_request(
            f"Unsupported {param}; {_NAME} accepts 'auto', 'none', 'required' or "
            '{"type": "function", "function": {"name": ...}}.',
            param=param,
        )
    if req.parallel_tool_calls is False:
        out["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # Anthropic's default is auto: send nothing
    return out


def _legacy_choice(function_call: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if isinstance(function_call, dict):
        return {"type": "function", "function": function_call}
    return function_call


# ---- parameters ------------------------------------------------------------------------------------------


def _refuse_unsupported(req: ChatCompletionRequest) -> None:
    if req.n not in (None, 1):
        raise bad_request(f"{_NAME} returns one choice per request; 'n' must be 1.", param="n")
    if req.logprobs:
        raise bad_request(f"{_NAME} does not return log probabilities; 'logprobs' must be false.", param="logprobs")
    if req.top_logprobs:
        raise bad_request(f"{_NAME} does not return log probabilities.", param="top_logprobs")
    if req.logit_bias:
        raise bad_request(f"{_NAME} does not support 'logit_bias'.", param="logit_bias")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise bad_request(f"{_NAME} does not support '{name}'; leave it unset or 0.", param=name)
    if req.audio is not None or (req.modalities and any(m != "text" for m in req.modalities)):
        raise bad_request(f"{_NAME} produces text only; audio output is not supported.", param="modalities")
    if req.reasoning_effort is not None:
        raise bad_request(
            f"{_NAME} does not take 'reasoning_effort' through the OpenAI format (extended thinking needs its "
            "signed thinking blocks sent back, which OpenAI messages cannot carry).",
            param="reasoning_effort",
        )
    if req.web_search_options is not None:
        raise bad_request(f"{_NAME} does not support 'web_search_options'.", param="web_search_options")
    if req.temperature is not None and not 0 <= req.temperature <= 1:
        raise bad_request(f"{_NAME} accepts a temperature between 0 and 1.", param="temperature")


def _max_tokens(req: ChatCompletionRequest) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = getattr(req, name)
        if value is not None:
            if value < 1:
                raise bad_request(f"'{name}' must be at least 1.", param=name)
            return value
    return DEFAULT_MAX_TOKENS


def _output_format(response_format: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """-> (``output_config.format`` or None, whether to add the JSON-object instruction)."""
    kind = (response_format or {}).get("type")
    if kind in (None, "text"):
        return None, False
    if kind == "json_object":
        return None, True
    if kind == "json_schema":
        spec = response_format.get("json_schema") if response_format else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request(
                "response_format json_schema needs a 'schema' object.", param="response_format.json_schema.schema"
            )
        return {"type": "json_schema", "schema": schema}, False
    raise bad_request(f"Unsupported response_format type '{kind}'.", param="response_format.type")


def _user_id(req: ChatCompletionRequest) -> str | None:
    for value in (req.user, req.safety_identifier, *((req.metadata or {}).get(k) for k in ("user_id", "user"))):
        if isinstance(value, str) and value:
            return value
    return None


def _raw_body(raw: bytes) -> dict[str, Any] | None:
    """The client's JSON, only when it carries one of the Anthropic extensions read from it
    (``cache_control``, ``top_k``): the request struct drops keys OpenAI does not define."""
    if b'"cache_control"' not in raw and b'"top_k"' not in raw:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def messages_body(req: ChatCompletionRequest, raw: bytes, model: str, stream: bool) -> dict[str, Any]:
    """The Anthropic ``POST /v1/messages`` body for one OpenAI chat request."""
    _refuse_unsupported(req)
    raw_body = _raw_body(raw)
    raw_messages = raw_body.get("messages") if raw_body else None
    conv = _Conversation(raw_messages if isinstance(raw_messages, list) else None)
    for i, msg in enumerate(req.messages):
        conv.add(i, msg)
    output_format, json_instruction = _output_format(req.response_format)
    if json_instruction:
        conv.system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    messages = conv.messages()
    if not messages:
        raise bad_request(
            f"{_NAME} needs at least one user or assistant message with content besides system messages.",
            param="messages",
        )
    body: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(req)}
    system = conv.system_value()
    if system is not None:
        body["system"] = system
    body["messages"] = messages
    tools = _tools(req, raw_body)
    if tools:
        body["tools"] = tools
        choice = _tool_choice(req)
        if choice is not None:
            body["tool_choice"] = choice
    if req.stop:
        body["stop_sequences"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    top_k = raw_body.get("top_k") if raw_body else None
    if top_k is not None:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0:
            raise bad_request("'top_k' must be a non-negative integer.", param="top_k")
        body["top_k"] = top_k
    user_id = _user_id(req)
    if user_id is not None:
        body["metadata"] = {"user_id": user_id}
    if output_format is not None:
        body["output_config"] = {"format": output_format}
    top_cache = _cache_control(raw_body)
    if top_cache is not None:
        body["cache_control"] = top_cache  # automatic caching: the breakpoint follows the conversation
    if stream:
        body["stream"] = True
    return body


__all__ = ["DEFAULT_MAX_TOKENS", "JSON_OBJECT_INSTRUCTION", "messages_body", "tool_use_id"]
