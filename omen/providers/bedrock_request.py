"""OpenAI chat request -> Bedrock Converse request body (providers.md §7.2).

Converse wants strictly alternating user/assistant turns of content blocks, the system prompt apart,
tool results as ``toolResult`` blocks in a user turn and tool-call arguments as JSON objects. JSON mode:
``json_schema`` uses Converse's structured output (``outputConfig.textFormat``); ``json_object`` has
no schema to give it, so it uses the tool-use approach AWS documents for JSON output: one tool whose
input is any JSON object, forced with ``toolChoice``, whose input becomes the reply text.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from omen.api.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
    FunctionMessage,
    ImagePart,
    Message,
    RefusalPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)
from omen.errors import bad_request
from omen.providers.ollama import _arguments

# The tool that carries a json_object answer. Requests in that mode never carry the client's own tools,
# so the name cannot clash with one of them.
JSON_TOOL = "json_response"
_JSON_TOOL_SPEC = {
    "toolSpec": {
        "name": JSON_TOOL,
        "description": "Give the complete answer as one JSON object.",
        "inputSchema": {"json": {"type": "object"}},
    }
}
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_ANY_OBJECT = {"type": "object"}

Block = dict[str, Any]


def _refuse(message: str, param: str) -> None:
    raise bad_request(f"This provider (Bedrock) {message}", param=param)


def _check_supported(req: ChatCompletionRequest) -> None:
    """Parameters Converse has no equivalent for, refused rather than silently dropped when they would
    change what the client gets back. ``seed``, ``user``, ``metadata``, ``store``, ``service_tier``,
    ``parallel_tool_calls`` and zero penalties are hints without an effect on the reply's shape: ignored."""
    if req.n not in (None, 1):
        _refuse("returns one choice per request; 'n' must be 1.", "n")
    if req.logprobs:
        _refuse("does not return log probabilities.", "logprobs")
    if req.top_logprobs:
        _refuse("does not return log probabilities.", "top_logprobs")
    if req.logit_bias:
        _refuse("does not support 'logit_bias'.", "logit_bias")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            _refuse(f"does not support '{name}'.", name)
    if req.functions or req.function_call is not None:
        _refuse("does not support the legacy 'functions'; send them as 'tools'.", "functions")
    if req.audio is not None or (req.modalities and set(req.modalities) - {"text"}):
        _refuse("returns text only.", "modalities")
    if req.prediction is not None:
        _refuse("does not support 'prediction'.", "prediction")
    if req.web_search_options is not None:
        _refuse("does not support 'web_search_options'.", "web_search_options")
    if req.reasoning_effort is not None:
        _refuse("does not support 'reasoning_effort'.", "reasoning_effort")


# ---- content ------------------------------------------------------------------------------------------


def image_block(url: str, param: str) -> Block:
    """A ``data:`` URI -> Converse ``image`` block. Converse has no URL source; http(s) images reach the
    translator already inlined by the gateway (``inline_images``), so a URL here is refused."""
    if url.startswith(("http://", "https://")):
        raise bad_request(
            "This provider (Bedrock) takes images inline only, as data: URIs (data:image/png;base64,...).",
            param=param,
            code="image_url_not_supported",
        )
    if not url.startswith("data:"):
        raise bad_request("An image URL must be a data: URI (data:image/png;base64,...).", param=param)
    header, comma, payload = url[5:].partition(",")
    media, *attrs = header.split(";")
    if not comma or "base64" not in (a.strip().lower() for a in attrs):
        raise bad_request("An image data: URI must be base64-encoded (data:image/png;base64,...).", param=param)
    fmt = _IMAGE_FORMATS.get(media.strip().lower())
    if fmt is None:
        raise bad_request(
            f"Unsupported image type '{media.strip() or 'none'}'; use image/png, image/jpeg, image/gif or image/webp.",
            param=param,
        )
    try:
        if not base64.b64decode(payload, validate=True):
            raise ValueError("empty")
    except (binascii.Error, ValueError):
        raise bad_request("The image data: URI does not contain valid base64 data.", param=param) from None
    # Converse's JSON form of a blob is its base64 text: the payload goes as it came.
    return {"image": {"format": fmt, "source": {"bytes": payload}}}


def _parts(content: str | list[Any], param: str, *, images: bool) -> list[Block]:
    if isinstance(content, str):
        return [{"text": content}]
    blocks: list[Block] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            blocks.append({"text": part.text})
        elif isinstance(part, RefusalPart):
            blocks.append({"text": part.refusal})
        elif isinstance(part, ImagePart) and images:
            blocks.append(image_block(part.image_url.url, f"{param}[{j}].image_url.url"))
        else:
            kind = type(part).__name__.removesuffix("Part").lower()
            kind = {"audio": "input_audio", "image": "image_url"}.get(kind, kind)
            _refuse(f"does not accept '{kind}' content parts here.", f"{param}[{j}]")
    return blocks


def _text(content: str | list[Any] | None, param: str) -> str:
    """System prompts and tool results: text only."""
    if content is None:
        return ""
    return "".join(b["text"] for b in _parts(content, param, images=False))


class _Conversation:
    """Collects turns, merging consecutive same-role messages: Converse requires user and assistant
    turns to alternate, and OpenAI's tool messages (one per result) all belong to one user turn."""

    def __init__(self) -> None:
        self.system: list[Block] = []
        self.messages: list[dict[str, Any]] = []
        self.tool_names: list[str] = []  # tools used in the history, in order of first use

    def add(self, role: str, blocks: list[Block]) -> None:
        if not blocks:
            return  # Converse refuses empty content; an empty assistant turn carries nothing anyway
        if self.messages and self.messages[-1]["role"] == role:
            self.messages[-1]["content"].extend(blocks)
        else:
            self.messages.append({"role": role, "content": blocks})

    def tool_use(self, call_id: str, name: str, arguments: str, param: str) -> Block:
        if name not in self.tool_names:
            self.tool_names.append(name)
        return {"toolUse": {"toolUseId": call_id, "name": name, "input": _arguments(arguments, param)}}


def _tool_result(call_id: str, text: str) -> Block:
    return {"toolResult": {"toolUseId": call_id, "content": [{"text": text}], "status": "success"}}


def conversation(messages: list[Message]) -> _Conversation:
    conv = _Conversation()
    for i, msg in enumerate(messages):
        param = f"messages[{i}].content"
        if isinstance(msg, SystemMessage | DeveloperMessage):
            text = _text(msg.content, param)
            if text:
                conv.system.append({"text": text})
        elif isinstance(msg, UserMessage):
            conv.add("user", _parts(msg.content, param, images=True))
        elif isinstance(msg, AssistantMessage):
            # Converse refuses blank text blocks; an assistant's blank text says nothing anyway
            blocks = [b for b in _parts(msg.content, param, images=False) if b["text"].strip()] if msg.content else []
            for k, call in enumerate(msg.tool_calls or ()):
                arg_param = f"messages[{i}].tool_calls[{k}].function.arguments"
                blocks.append(conv.tool_use(call.id, call.function.name, call.function.arguments, arg_param))
            if msg.function_call is not None:
                _refuse(
                    "does not support the legacy 'function_call'; send 'tool_calls'.", f"messages[{i}].function_call"
                )
            conv.add("assistant", blocks)
        elif isinstance(msg, ToolMessage):
            conv.add("user", [_tool_result(msg.tool_call_id, _text(msg.content, param))])
        elif isinstance(msg, FunctionMessage):
            _refuse("does not support legacy 'function' messages; send 'tool' messages.", f"messages[{i}].role")
    return conv


# ---- parameters, tools, JSON mode -------------------------------------------------------------------


def inference_config(req: ChatCompletionRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if limit is not None:
        config["maxTokens"] = limit
    if req.temperature is not None:
        config["temperature"] = req.temperature
    if req.top_p is not None:
        config["topP"] = req.top_p
    if req.stop is not None:
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop)
        if stops:
            config["stopSequences"] = stops
    return config


def _tool_specs(req: ChatCompletionRequest) -> list[Block]:
    specs = []
    for k, tool in enumerate(req.tools or ()):
        if tool.type != "function" or tool.function is None:
            _refuse(f"supports only function tools, not '{tool.type}'.", f"tools[{k}]")
        fn = tool.function
        assert fn is not None
        # ``strict`` is not forwarded: many Bedrock models refuse it, and OpenAI clients set it by default.
        spec: Block = {"name": fn.name}
        if fn.description:
            spec["description"] = fn.description
        spec["inputSchema"] = {
            "json": fn.parameters if fn.parameters is not None else {"type": "object", "properties": {}}
        }
        specs.append({"toolSpec": spec})
    return specs


def _tool_choice(choice: str | dict[str, Any] | None, names: list[str]) -> Block | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str) or name not in names:
            raise bad_request("tool_choice names a function that is not in 'tools'.", param="tool_choice")
        return {"tool": {"name": name}}
    raise bad_request(
        'tool_choice must be \'none\', \'auto\', \'required\' or {"type": "function", "function": {"name": ...}}.',
        param="tool_choice",
    )


def tool_config(req: ChatCompletionRequest, history_tools: list[str], json_object: bool) -> Block | None:
    """Converse ``toolConfig``. It has no "none" choice, so ``tool_choice: "none"`` leaves the tools out.
    A history with tool calls needs a toolConfig all the same (Converse refuses toolUse blocks without
    one): then the tools used there are declared with an open schema and no choice is forced."""
    offered = req.tools if req.tool_choice != "none" else None
    if json_object:
        if offered:
            raise bad_request(
                "This provider (Bedrock) cannot combine response_format json_object with tools; "
                "use json_schema, or leave the tools out.",
                param="response_format",
            )
        declared = [{"toolSpec": {"name": n, "inputSchema": {"json": _ANY_OBJECT}}} for n in history_tools]
        return {"tools": [*declared, _JSON_TOOL_SPEC], "toolChoice": {"tool": {"name": JSON_TOOL}}}
    if offered:
        specs = _tool_specs(req)
        config: Block = {"tools": specs}
        choice = _tool_choice(req.tool_choice, [s["toolSpec"]["name"] for s in specs])
        if choice is not None:
            config["toolChoice"] = choice
        return config
    if req.tools:
        _tool_specs(req)  # still validated when tool_choice is "none"
    if history_tools:
        return {"tools": [{"toolSpec": {"name": n, "inputSchema": {"json": _ANY_OBJECT}}} for n in history_tools]}
    return None


def output_config(response_format: dict[str, Any] | None) -> tuple[Block | None, bool]:
    """(``outputConfig`` for json_schema, whether json_object mode is on)."""
    kind = (response_format or {}).get("type")
    if kind in (None, "text"):
        return None, False
    if kind == "json_object":
        return None, True
    if kind == "json_schema":
        spec = (response_format or {}).get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request(
                "response_format json_schema needs a 'schema' object.", param="response_format.json_schema.schema"
            )
        assert isinstance(spec, dict)
        json_schema: Block = {"schema": orjson.dumps(schema).decode()}  # Converse takes the schema as a string
        for key in ("name", "description"):
            if isinstance(spec.get(key), str) and spec[key]:
                json_schema[key] = spec[key]
        return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": json_schema}}}, False
    raise bad_request(f"Unsupported response_format type '{kind}'.", param="response_format.type")


def converse_body(req: ChatCompletionRequest) -> tuple[dict[str, Any], bool]:
    """The Converse body, and whether the answer comes back through the json_object tool."""
    _check_supported(req)
    conv = conversation(req.messages)
    if not conv.messages:
        raise bad_request(
            "Bedrock needs at least one user or assistant message besides the system prompt.", param="messages"
        )
    output, json_object = output_config(req.response_format)
    body: dict[str, Any] = {"messages": conv.messages}
    if conv.system:
        body["system"] = conv.system
    config = inference_config(req)
    if config:
        body["inferenceConfig"] = config
    tools = tool_config(req, conv.tool_names, json_object)
    if tools is not None:
        body["toolConfig"] = tools
    if output is not None:
        body["outputConfig"] = output
    return body, json_object


__all__ = ["JSON_TOOL", "converse_body", "image_block", "inference_config", "output_config", "tool_config"]
