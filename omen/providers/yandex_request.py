"""OpenAI requests -> Yandex ``CompletionRequest`` bodies (``/foundationModels/v1/completion``).

Yandex takes ``modelUri``, ``completionOptions`` {stream, temperature (0..1), maxTokens (int64, sent as
a string as proto3 JSON writes it), reasoningOptions}, ``messages`` [{role, text | toolCallList |
toolResultList}], ``tools`` and ``jsonObject`` / ``jsonSchema``. It has no top_p, penalties, seed, n,
logprobs or stop sequences: such parameters are refused with a 400 naming them unless they carry their
no-op value; stop sequences are applied by OMEN itself (the answer is cut at the first one).
"""

from __future__ import annotations

from typing import Any, TypeVar

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
    RefusalPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)
from omen.api.completions import CompletionRequest
from omen.api.decode import decode_body
from omen.errors import OmenError, bad_request
from omen.providers.yandex_models import native_tools
from omen.providers.yandex_tools import render_calls, render_results, system_prompt

T = TypeVar("T")
_REASONING = {
    "none": "DISABLED",
    "minimal": "DISABLED",
    "low": "ENABLED_HIDDEN",
    "medium": "ENABLED_HIDDEN",
    "high": "ENABLED_HIDDEN",
}
_TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "REQUIRED"}


def decoded(call: Any, type_: type[T]) -> T:
    return call.request if call.request is not None else decode_body(call.raw, type_)


def unsupported(what: str, param: str, code: str = "unsupported_parameter") -> OmenError:
    return bad_request(f"This provider (Yandex) {what}.", param=param, code=code)


def _check_sampling(req: ChatCompletionRequest | CompletionRequest) -> None:
    """Parameters Yandex has no equivalent for: accepted only with their no-op value."""
    if req.n not in (None, 1):
        raise unsupported("returns one choice per request; 'n' must be 1", "n")
    if req.top_p not in (None, 1):
        raise unsupported("has no top_p (nucleus sampling); use temperature", "top_p")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name) not in (None, 0):
            raise unsupported(f"has no {name}", name)
    if req.logit_bias:
        raise unsupported("does not support logit_bias", "logit_bias")
    if req.seed is not None:
        raise unsupported("has no seed; answers cannot be made reproducible", "seed")
    if req.temperature is not None and not 0 <= req.temperature <= 1:
        raise bad_request("This provider (Yandex) takes a temperature between 0 and 1.", param="temperature")


def stop_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [s for s in ([stop] if isinstance(stop, str) else stop) if s]


def completion_options(stream: bool, temperature: float | None, limit: int | None, param: str) -> dict[str, Any]:
    options: dict[str, Any] = {"stream": stream}
    if temperature is not None:
        options["temperature"] = temperature
    if limit is not None:
        if limit < 1:
            raise bad_request(f"'{param}' must be at least 1.", param=param)
        options["maxTokens"] = str(limit)  # int64: a string in proto3 JSON
    return options


# ---- messages ----------------------------------------------------------------------------------------


def _text(content: str | list[Any] | None, i: int) -> str:
    """A message's text; non-text parts are refused (YandexGPT models take text only)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, RefusalPart):
            texts.append(part.refusal)
        else:
            what = {ImagePart: "images", AudioPart: "audio input", FilePart: "files"}.get(type(part), "this content")
            raise unsupported(
                f"does not accept {what}: YandexGPT models take text only",
                f"messages[{i}].content[{j}]",
                code="unsupported_capability",
            )
    return "".join(texts)


def _arguments(text: str, param: str) -> dict[str, Any]:
    """OpenAI sends tool-call arguments as a JSON string; Yandex (and the emulation) want the object."""
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise bad_request("Tool call arguments must be a JSON object encoded as a string.", param=param)
    return value


class _Messages:
    """Builds the ``messages`` list; ``emulate`` renders tool calls and results as text turns."""

    def __init__(self, emulate: bool) -> None:
        self.emulate = emulate
        self.out: list[dict[str, Any]] = []
        self._names: dict[str, str] = {}  # tool_call id -> function name: Yandex links results by name
        self._results: list[tuple[str, str]] = []

    def add(self, msg: Message, i: int) -> None:
        if isinstance(msg, ToolMessage | FunctionMessage):
            self._results.append(self._result(msg, i))
            return
        self._flush()
        if isinstance(msg, SystemMessage | DeveloperMessage):
            self.out.append({"role": "system", "text": _text(msg.content, i)})
        elif isinstance(msg, UserMessage):
            self.out.append({"role": "user", "text": _text(msg.content, i)})
        elif isinstance(msg, AssistantMessage):
            self._assistant(msg, i)

    def finish(self) -> list[dict[str, Any]]:
        self._flush()
        return self.out

    def _result(self, msg: ToolMessage | FunctionMessage, i: int) -> tuple[str, str]:
        if isinstance(msg, FunctionMessage):
            return msg.name, msg.content or ""
        name = self._names.get(msg.tool_call_id)
        if name is None:
            raise bad_request(
                f"tool_call_id '{msg.tool_call_id}' does not match a tool call of an earlier assistant message "
                "(Yandex links tool results to calls by function name).",
                param=f"messages[{i}].tool_call_id",
            )
        return name, _text(msg.content, i)

    def _flush(self) -> None:
        if not self._results:
            return
        if self.emulate:
            self.out.append({"role": "user", "text": render_results(self._results)})
        else:
            results = [{"functionResult": {"name": n, "content": c}} for n, c in self._results]
            self.out.append({"role": "user", "toolResultList": {"toolResults": results}})
        self._results = []

    def _assistant(self, msg: AssistantMessage, i: int) -> None:
        text = _text(msg.content, i)
        calls: list[tuple[str, FunctionCall]] = [(c.id, c.function) for c in msg.tool_calls or ()]
        if msg.function_call is not None:  # deprecated single-call form
            calls.append(("", msg.function_call))
        if not calls:
            self.out.append({"role": "assistant", "text": text})
            return
        parsed = []
        for k, (call_id, fn) in enumerate(calls):
            if call_id:
                self._names[call_id] = fn.name
            parsed.append((fn.name, _arguments(fn.arguments, f"messages[{i}].tool_calls[{k}].function.arguments")))
        if self.emulate:
            block = render_calls(parsed)
            self.out.append({"role": "assistant", "text": f"{text}\n\n{block}" if text else block})
            return
        if text:  # a Yandex message holds text or tool calls, not both
            self.out.append({"role": "assistant", "text": text})
        tool_calls = [{"functionCall": {"name": n, "arguments": a}} for n, a in parsed]
        self.out.append({"role": "assistant", "toolCallList": {"toolCalls": tool_calls}})


# ---- tools -------------------------------------------------------------------------------------------


def _functions(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    out = []
    for k, tool in enumerate(req.tools or ()):
        if tool.type != "function" or tool.function is None:
            raise unsupported(f"supports only function tools, not '{tool.type}'", f"tools[{k}]")
        fn: dict[str, Any] = {"name": tool.function.name}
        if tool.function.description:
            fn["description"] = tool.function.description
        if tool.function.parameters is not None:
            fn["parameters"] = tool.function.parameters
        out.append(fn)
    return out


def _tool_choice(req: ChatCompletionRequest, names: set[str]) -> tuple[str | None, str | None]:
    """``(mode, forced function)`` from ``tool_choice``."""
    choice = req.tool_choice
    if choice is None:
        return None, None
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICE_MODES:
            raise bad_request("tool_choice must be 'auto', 'none', 'required' or a function.", param="tool_choice")
        return choice, None
    fn = choice.get("function") if choice.get("type") == "function" else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or name not in names:
        raise bad_request(
            'tool_choice must name one of the offered functions: {"type": "function", "function": {"name": "..."}}.',
            param="tool_choice",
        )
    return None, name


def emulated_tools(req: ChatCompletionRequest, uri: str) -> frozenset[str] | None:
    """Names of the tools offered through the prompt protocol, or None when tools are not emulated
    (none offered, ``tool_choice: none``, or a model with native function calling)."""
    if not req.tools or req.tool_choice == "none" or native_tools(uri):
        return None
    return frozenset(t.function.name for t in req.tools if t.function is not None)


def _add_tools(body: dict[str, Any], req: ChatCompletionRequest, uri: str, messages: list[dict[str, Any]]) -> None:
    functions = _functions(req)
    if not functions:
        return
    mode, forced = _tool_choice(req, {f["name"] for f in functions})
    if native_tools(uri):
        body["tools"] = [{"function": f} for f in functions]
        if mode is not None:
            body["toolChoice"] = {"mode": _TOOL_CHOICE_MODES[mode]}
        elif forced is not None:
            body["toolChoice"] = {"functionName": forced}
        if req.parallel_tool_calls is not None:
            body["parallelToolCalls"] = req.parallel_tool_calls
        return
    if mode == "none":
        return
    prompt = system_prompt(functions, mode, forced, req.parallel_tool_calls)
    if messages and messages[0]["role"] == "system":
        first = messages[0]
        first["text"] = f"{first['text']}\n\n{prompt}" if first["text"] else prompt
    else:
        messages.insert(0, {"role": "system", "text": prompt})


# ---- whole bodies ------------------------------------------------------------------------------------


def _response_format(response_format: dict[str, Any] | None) -> dict[str, Any]:
    kind = (response_format or {}).get("type")
    if kind in (None, "text"):
        return {}
    if kind == "json_object":
        return {"jsonObject": True}
    if kind == "json_schema":
        spec = response_format.get("json_schema") if response_format else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request(
                "response_format json_schema needs a 'schema' object.", param="response_format.json_schema.schema"
            )
        return {"jsonSchema": {"schema": schema}}
    raise bad_request(f"Unsupported response_format type '{kind}'.", param="response_format.type")


def chat_body(req: ChatCompletionRequest, uri: str, stream: bool) -> dict[str, Any]:
    _check_sampling(req)
    if req.logprobs or req.top_logprobs:
        raise unsupported("does not return log probabilities", "logprobs" if req.logprobs else "top_logprobs")
    if req.audio is not None or (req.modalities and any(m != "text" for m in req.modalities)):
        param = "modalities" if req.modalities else "audio"
        raise unsupported("answers with text only", param, "unsupported_capability")
    if req.web_search_options is not None:
        raise unsupported("cannot search the web", "web_search_options", "unsupported_capability")
    if req.functions is not None or req.function_call is not None:
        raise unsupported(
            "does not translate the deprecated 'functions'; use 'tools'",
            "functions" if req.functions is not None else "function_call",
        )
    limit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    options = completion_options(stream, req.temperature, limit, param)
    if req.reasoning_effort is not None:
        mode = _REASONING.get(req.reasoning_effort)
        if mode is None:
            raise bad_request(
                "reasoning_effort must be one of none, minimal, low, medium, high.", param="reasoning_effort"
            )
        options["reasoningOptions"] = {"mode": mode}
    # history tool calls/results: native shapes only for models with function calling, text otherwise
    builder = _Messages(emulate=not native_tools(uri))
    for i, msg in enumerate(req.messages):
        builder.add(msg, i)
    messages = builder.finish()
    body: dict[str, Any] = {"modelUri": uri, "completionOptions": options, "messages": messages}
    _add_tools(body, req, uri, messages)
    body.update(_response_format(req.response_format))
    return body


def completion_body(req: CompletionRequest, uri: str, stream: bool) -> dict[str, Any]:
    """A legacy /v1/completions prompt is sent as one user message."""
    _check_sampling(req)
    for name, value in (("suffix", req.suffix), ("echo", req.echo or None), ("logprobs", req.logprobs or None)):
        if value is not None:
            raise unsupported(f"does not support '{name}'", name)
    if req.best_of not in (None, 1):
        raise unsupported("does not support 'best_of'", "best_of")
    prompt = req.prompt
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if prompt is not None and not isinstance(prompt, str):
        raise bad_request("This provider (Yandex) takes one text prompt per request.", param="prompt")
    options = completion_options(stream, req.temperature, req.max_tokens, "max_tokens")
    return {"modelUri": uri, "completionOptions": options, "messages": [{"role": "user", "text": prompt or ""}]}
