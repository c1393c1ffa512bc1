"""OpenAI chat/completion requests -> Gemini ``generateContent`` bodies (providers.md §6.2).

Roles: system/developer -> ``systemInstruction``; user -> ``user``; assistant -> ``model`` (text and
``functionCall`` parts); tool/function results -> ``functionResponse`` parts in a ``user`` turn, linked
by function *name* (looked up from the assistant's earlier ``tool_calls``, since OpenAI links by id).
Consecutive turns with the same role are merged: Gemini wants user and model turns to alternate.

Tool-call ids: Gemini's calls carry no usable id, so OMEN makes ``call_<random>`` ids. A call's
``thoughtSignature`` (which Gemini 3 requires back verbatim in the history) travels inside that id —
``call_<random>__thought__<signature as url-safe base64>`` — because the id is the only field every
OpenAI client sends back unchanged.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from omen.api.chat import (
    AssistantMessage,
    AudioPart,
    ChatCompletionRequest,
    DeveloperMessage,
    FilePart,
    FunctionCall,
    FunctionMessage,
    ImagePart,
    Message,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
    message_text,
)
from omen.api.completions import CompletionRequest
from omen.errors import bad_request
from omen.providers.gemini_schema import to_gemini_schema

PROVIDER = "This provider (Gemini)"
_IMAGE_TYPES = {
    "image/png": "image/png",
    "image/jpeg": "image/jpeg",
    "image/jpg": "image/jpeg",
    "image/webp": "image/webp",
    "image/heic": "image/heic",
    "image/heif": "image/heif",
}
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}
# Google's own OpenAI layer maps low/medium/high to these budgets; "minimal" is the smallest budget
# both 2.5 Flash and 2.5 Pro accept (Pro cannot turn thinking off, so "none" -> 0 may be refused there).
_THINKING_BUDGET = {"none": 0, "minimal": 128, "low": 1024, "medium": 8192, "high": 24576}

SIGNATURE_MARK = "__thought__"


# ---- tool-call ids ----------------------------------------------------------------------------------


def encode_call_id(random_part: str, signature: str | None) -> str:
    """``call_<random>`` plus the call's thought signature, if any, in a form that survives any client."""
    call_id = f"call_{random_part}"
    if not signature:
        return call_id
    urlsafe = signature.replace("+", "-").replace("/", "_").rstrip("=")
    return f"{call_id}{SIGNATURE_MARK}{urlsafe}"


def signature_of(call_id: str) -> str | None:
    """The thought signature carried by an id from :func:`encode_call_id` (standard base64), else None."""
    _, mark, urlsafe = call_id.partition(SIGNATURE_MARK)
    if not mark or not urlsafe:
        return None
    std = urlsafe.replace("-", "+").replace("_", "/")
    return std + "=" * (-len(std) % 4)


# ---- media --------------------------------------------------------------------------------------------


def _data_uri(url: str, param: str, what: str) -> tuple[str, str]:
    """``data:<mime>;base64,<data>`` -> (mime, base64 data), validated."""
    if not url.startswith("data:"):
        raise bad_request(f"{what} must be a data: URI (data:<type>;base64,...).", param=param)
    header, comma, payload = url[5:].partition(",")
    media, *attrs = header.split(";")
    if not comma or "base64" not in (a.strip().lower() for a in attrs):
        raise bad_request(f"{what} data: URI must be base64-encoded (data:<type>;base64,...).", param=param)
    _check_base64(payload, param, what)
    return media.strip().lower(), payload


def _check_base64(payload: str, param: str, what: str) -> None:
    try:
        if not base64.b64decode(payload, validate=True):
            raise ValueError("empty")
    except (binascii.Error, ValueError):
        raise bad_request(f"{what} does not contain valid base64 data.", param=param) from None


def _image(url: str, param: str) -> dict[str, Any]:
    if url.startswith(("http://", "https://")):
        # The pipeline inlines http(s) images for providers with inline_images; one that still gets here
        # was not fetched, and Gemini's fileData only takes Files-API/gs:// URIs, never arbitrary URLs.
        raise bad_request(
            f"{PROVIDER} needs images inline as data: URIs (data:image/png;base64,...); "
            "this image URL was not fetched.",
            param=param,
            code="image_url_not_supported",
        )
    media, payload = _data_uri(url, param, "An image URL")
    mime = _IMAGE_TYPES.get(media)
    if mime is None:
        raise bad_request(
            f"Unsupported image type '{media or 'none'}'; use image/png, image/jpeg, image/webp, image/heic "
            "or image/heif.",
            param=param,
        )
    return {"inlineData": {"mimeType": mime, "data": payload}}


def _audio(part: AudioPart, param: str) -> dict[str, Any]:
    mime = _AUDIO_TYPES.get(part.input_audio.format.lower())
    if mime is None:
        raise bad_request("input_audio format must be 'wav' or 'mp3'.", param=f"{param}.input_audio.format")
    _check_base64(part.input_audio.data, f"{param}.input_audio.data", "input_audio data")
    return {"inlineData": {"mimeType": mime, "data": part.input_audio.data}}


def _file(part: FilePart, param: str) -> dict[str, Any]:
    data = part.file.get("file_data")
    if not isinstance(data, str):
        raise bad_request(
            f"{PROVIDER} needs files inline as file_data data: URIs; OpenAI file ids mean nothing to it.",
            param=f"{param}.file",
        )
    media, payload = _data_uri(data, f"{param}.file.file_data", "file_data")
    if not media:
        raise bad_request("file_data needs a media type (data:application/pdf;base64,...).", param=param)
    return {"inlineData": {"mimeType": media, "data": payload}}


# ---- messages -----------------------------------------------------------------------------------------


def _user_parts(msg: UserMessage, i: int) -> list[dict[str, Any]]:
    # empty text is left out: Gemini refuses "an empty text parameter"
    if isinstance(msg.content, str):
        return [{"text": msg.content}] if msg.content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(msg.content):
        param = f"messages[{i}].content[{j}]"
        if isinstance(part, TextPart):
            if part.text:
                parts.append({"text": part.text})
        elif isinstance(part, ImagePart):
            parts.append(_image(part.image_url.url, f"{param}.image_url.url"))
        elif isinstance(part, AudioPart):
            parts.append(_audio(part, param))
        elif isinstance(part, FilePart):
            parts.append(_file(part, param))
        else:
            raise bad_request(f"{PROVIDER} does not accept 'refusal' content parts in user messages.", param=param)
    return parts


def _text_only(content: str | list[Any], i: int) -> str:
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, TextPart):
                raise bad_request(
                    "System and developer messages may contain text only.", param=f"messages[{i}].content[{j}]"
                )
    return message_text(content)


def _arguments(text: str, param: str) -> dict[str, Any]:
    """OpenAI sends arguments as a JSON string; Gemini's ``args`` is the object itself."""
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise bad_request("Tool call arguments must be a JSON object encoded as a string.", param=param) from None
    if not isinstance(value, dict):
        raise bad_request("Tool call arguments must be a JSON object encoded as a string.", param=param)
    return value


def _model_parts(msg: AssistantMessage, i: int, names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    text = message_text(msg.content)
    if text:
        parts.append({"text": text})
    calls: list[tuple[str, FunctionCall, str]] = [
        (c.id, c.function, f"messages[{i}].tool_calls[{k}].function.arguments")
        for k, c in enumerate(msg.tool_calls or ())
    ]
    if msg.function_call is not None:  # the deprecated single-call form
        calls.append(("", msg.function_call, f"messages[{i}].function_call.arguments"))
    for call_id, fn, param in calls:
        if call_id:
            names[call_id] = fn.name
        part: dict[str, Any] = {"functionCall": {"name": fn.name, "args": _arguments(fn.arguments, param)}}
        signature = signature_of(call_id)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(name: str, content: str) -> dict[str, Any]:
    # Gemini's response must be an object; "output" is the key its docs use for a function's result
    return {"functionResponse": {"name": name, "response": {"output": content}}}


def contents(messages: list[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(contents, systemInstruction parts)."""
    turns: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call id -> function name

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["parts"].extend(parts)
        else:
            turns.append({"role": role, "parts": parts})

    for i, msg in enumerate(messages):
        if isinstance(msg, UserMessage):
            add("user", _user_parts(msg, i))
        elif isinstance(msg, AssistantMessage):
            add("model", _model_parts(msg, i, names))
        elif isinstance(msg, ToolMessage):
            name = names.get(msg.tool_call_id)
            if name is None:
                raise bad_request(
                    f"{PROVIDER} links tool results to calls by function name: tool_call_id "
                    f"'{msg.tool_call_id}' matches no tool call of an earlier assistant message.",
                    param=f"messages[{i}].tool_call_id",
                )
            add("user", [_function_response(name, message_text(msg.content))])
        elif isinstance(msg, FunctionMessage):
            add("user", [_function_response(msg.name, msg.content or "")])
        elif isinstance(msg, SystemMessage | DeveloperMessage):
            # Gemini has one system instruction, no mid-conversation system turns: all of them go there
            system.append({"text": _text_only(msg.content, i)})
    if not turns:
        raise bad_request(
            f"{PROVIDER} needs at least one user or assistant message besides system messages.", param="messages"
        )
    return turns, system


# ---- tools --------------------------------------------------------------------------------------------


def _declaration(fn: Any, param: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": fn.name}
    if fn.description:
        out["description"] = fn.description
    if fn.parameters is not None:
        schema = to_gemini_schema(fn.parameters, f"{param}.parameters")
        # a function without arguments: Gemini refuses an OBJECT with no properties
        if not (schema.get("type") == "OBJECT" and not schema.get("properties")) and schema:
            out["parameters"] = schema
    return out


def _declarations(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    out = []
    for k, tool in enumerate(req.tools or ()):
        if tool.type != "function" or tool.function is None:
            raise bad_request(f"{PROVIDER} supports only function tools, not '{tool.type}'.", param=f"tools[{k}]")
        out.append(_declaration(tool.function, f"tools[{k}].function"))
    for k, fn in enumerate(req.functions or ()):
        out.append(_declaration(fn, f"functions[{k}]"))
    return out


def _forced_name(choice: dict[str, Any], param: str) -> str:
    fn = choice.get("function") if choice.get("type", "function") == "function" else None
    name = fn.get("name") if isinstance(fn, dict) else choice.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request('tool_choice must name a function: {"type":"function","function":{"name":...}}.', param=param)
    return name


def tools_and_config(req: ChatCompletionRequest) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(function declarations, toolConfig) for tools/tool_choice and the legacy functions/function_call."""
    declarations = _declarations(req)
    choice: Any = req.tool_choice
    param = "tool_choice"
    if choice is None and req.function_call is not None:
        choice, param = req.function_call, "function_call"
    if choice is None:
        return declarations, None
    names = {d["name"] for d in declarations}
    mode: str
    allowed: list[str] | None = None
    if choice in ("auto", "none", "required"):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        spec = choice.get("allowed_tools")
        tools = spec.get("tools") if isinstance(spec, dict) else None
        if not isinstance(tools, list):
            raise bad_request("allowed_tools needs a 'tools' list.", param=f"{param}.allowed_tools.tools")
        picked = [_forced_name(t, f"{param}.allowed_tools.tools[{k}]") for k, t in enumerate(tools)]
        for name in picked:
            if name not in names:
                raise bad_request(f"{param} allows the function '{name}', which is not in 'tools'.", param=param)
        if spec.get("mode") == "required":
            mode, allowed = "ANY", picked
        else:
            # Gemini takes allowedFunctionNames only with ANY: for "auto", offer only the allowed tools
            mode = "AUTO"
            declarations = [d for d in declarations if d["name"] in picked]
    elif isinstance(choice, dict):
        name = _forced_name(choice, param)
        if name not in names:
            raise bad_request(f"{param} names the function '{name}', which is not in 'tools'.", param=param)
        mode, allowed = "ANY", [name]
    else:
        raise bad_request(
            'tool_choice must be \'auto\', \'none\', \'required\' or {"type":"function","function":{"name":...}}.',
            param=param,
        )
    if not declarations:
        if mode == "ANY":
            raise bad_request(f"{param} requires a tool call but no tools were given.", param=param)
        return declarations, None
    config: dict[str, Any] = {"mode": mode}
    if allowed:
        config["allowedFunctionNames"] = allowed
    return declarations, {"functionCallingConfig": config}


# ---- generation config --------------------------------------------------------------------------------


def _stop(stop: str | list[str] | None) -> list[str] | None:
    if stop is None:
        return None
    values = [stop] if isinstance(stop, str) else list(stop)
    return values or None


def _response_format(response_format: dict[str, Any] | None, config: dict[str, Any]) -> None:
    kind = (response_format or {}).get("type")
    if kind in (None, "text"):
        return
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
        return
    if kind == "json_schema":
        spec = response_format.get("json_schema") if response_format else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request(
                "response_format json_schema needs a 'schema' object.", param="response_format.json_schema.schema"
            )
        config["responseMimeType"] = "application/json"
        config["responseSchema"] = to_gemini_schema(
            schema, "response_format.json_schema.schema", property_ordering=True
        )
        return
    raise bad_request(f"Unsupported response_format type '{kind}'.", param="response_format.type")


def _n(n: int | None) -> int | None:
    if n is None or n == 1:
        return None
    if n < 1:
        raise bad_request("'n' must be at least 1.", param="n")
    return n


def generation_config(req: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, key in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
    ):
        value = getattr(req, name)
        if value is not None:
            config[key] = value
    limit = getattr(req, "max_completion_tokens", None)
    if limit is None:
        limit = req.max_tokens
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = _stop(req.stop)
    if stop:
        config["stopSequences"] = stop
    n = _n(req.n)
    if n is not None:
        config["candidateCount"] = n
    if req.logit_bias:
        raise bad_request(f"{PROVIDER} does not support 'logit_bias'.", param="logit_bias")
    if isinstance(req, ChatCompletionRequest):
        _response_format(req.response_format, config)
        if req.reasoning_effort is not None:
            budget = _THINKING_BUDGET.get(req.reasoning_effort)
            if budget is None:
                raise bad_request(
                    "reasoning_effort must be one of none, minimal, low, medium, high.", param="reasoning_effort"
                )
            config["thinkingConfig"] = {"thinkingBudget": budget}
    return config


def reject_unsupported_chat(req: ChatCompletionRequest) -> None:
    """Parameters Gemini cannot honour: refused rather than silently ignored."""
    if req.logprobs or req.top_logprobs:
        raise bad_request(
            f"{PROVIDER} does not return log probabilities.", param="logprobs" if req.logprobs else "top_logprobs"
        )
    if req.modalities and any(m != "text" for m in req.modalities):
        raise bad_request(f"{PROVIDER} returns text only through this API.", param="modalities")
    if req.audio is not None:
        raise bad_request(f"{PROVIDER} does not produce audio output.", param="audio")
    if req.prediction is not None:
        raise bad_request(f"{PROVIDER} does not support predicted outputs.", param="prediction")
    if req.web_search_options is not None:
        raise bad_request(f"{PROVIDER} does not support web_search_options.", param="web_search_options")


def chat_body(req: ChatCompletionRequest) -> dict[str, Any]:
    reject_unsupported_chat(req)
    turns, system = contents(req.messages)
    body: dict[str, Any] = {"contents": turns}
    if system:
        body["systemInstruction"] = {"parts": system}
    declarations, tool_config = tools_and_config(req)
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
    if tool_config:
        body["toolConfig"] = tool_config
    config = generation_config(req)
    if config:
        body["generationConfig"] = config
    return body


def completion_body(req: CompletionRequest) -> dict[str, Any]:
    """Legacy completions: the prompt becomes one user turn (Gemini has no raw text-completion API).
    Fill-in-the-middle, echo and best_of cannot be expressed and are refused."""
    if req.suffix is not None:
        raise bad_request(f"{PROVIDER} has no fill-in-the-middle mode; 'suffix' is not supported.", param="suffix")
    if req.echo:
        raise bad_request(f"{PROVIDER} does not support 'echo'.", param="echo")
    if req.best_of not in (None, 1):
        raise bad_request(f"{PROVIDER} does not support 'best_of'.", param="best_of")
    if req.logprobs is not None:
        raise bad_request(f"{PROVIDER} does not return log probabilities.", param="logprobs")
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": _prompt(req.prompt)}]}]}
    config = generation_config(req)
    if config:
        body["generationConfig"] = config
    return body


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, str) and prompt:
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str) and prompt[0]:
        return prompt[0]
    if prompt in (None, "", [], [""]):
        raise bad_request("'prompt' must not be empty.", param="prompt")
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        raise bad_request(f"{PROVIDER} takes one prompt per request, not a list.", param="prompt")
    raise bad_request(f"{PROVIDER} does not accept token-id prompts; send text.", param="prompt")


def embedding_texts(value: str | list[Any]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, str) for v in value):
        return list(value)
    if not value:
        raise bad_request("'input' must not be empty.", param="input")
    raise bad_request(f"{PROVIDER} does not accept token-id input for embeddings; send text.", param="input")


__all__ = [
    "chat_body",
    "completion_body",
    "contents",
    "embedding_texts",
    "encode_call_id",
    "generation_config",
    "signature_of",
    "tools_and_config",
]
