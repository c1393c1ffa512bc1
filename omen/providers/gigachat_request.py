"""OpenAI chat request -> GigaChat ``POST /chat/completions`` body (providers.md §8.3, §10.3, §10.5).

GigaChat's v1 contract is OpenAI-like with function calling in the older shape: ``functions`` instead
of ``tools``, ``function_call`` ``"auto"``/``"none"``/``{"name"}`` instead of ``tool_choice``, one
assistant ``function_call`` per message with ``arguments`` as an object, and results as
``role: "function"`` messages named after the function. Content is a plain string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from omen.api.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
    FunctionCall,
    FunctionMessage,
    Message,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
    message_text,
)
from omen.api.decode import decode_body
from omen.errors import OmenError, bad_request
from omen.providers.ollama import _arguments

# A tool-call id OMEN made from GigaChat's functions_state_id (see gigachat_response.tool_call_id): the
# state id is given back on the assistant message when the client replays that call.
_STATE_ID = re.compile(r"call_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
_REASONING_EFFORTS = ("low", "medium", "high")


class Extras(msgspec.Struct, omit_defaults=True):
    """GigaChat's own request fields, accepted from the client body as they are (OpenAI SDKs send
    them through ``extra_body``)."""

    repetition_penalty: float | None = None
    update_interval: float | None = None
    profanity_check: bool | None = None
    flags: list[str] | None = None
    function_ranker: dict[str, Any] | None = None


@dataclass(slots=True, frozen=True)
class Mode:
    """What the answer's translation needs to know about the request."""

    stop: tuple[str, ...] = ()  # stop sequences OMEN applies itself (GigaChat has none)
    legacy_functions: bool = False  # the client used functions/function_call: answer in that shape


def unsupported(what: str, param: str) -> OmenError:
    return bad_request(f"This provider (GigaChat) does not support {what}.", param=param, code="unsupported_capability")


def response_mode(req: ChatCompletionRequest) -> Mode:
    stop: tuple[str, ...] = ()
    if isinstance(req.stop, str):
        stop = (req.stop,) if req.stop else ()
    elif req.stop:
        if len(req.stop) > 4:
            raise bad_request("'stop' takes at most 4 sequences.", param="stop")
        stop = tuple(s for s in req.stop if s)
    return Mode(stop=stop, legacy_functions=bool(req.functions) and not req.tools)


# ---- messages ------------------------------------------------------------------------------------------


def _user_content(msg: UserMessage, i: int) -> str:
    if isinstance(msg.content, str):
        return msg.content
    texts: list[str] = []
    for j, part in enumerate(msg.content):
        if isinstance(part, TextPart):
            texts.append(part.text)
            continue
        kind = type(part).__name__.removesuffix("Part").lower()
        if kind == "image":
            raise bad_request(
                "This provider (GigaChat) takes images only as files uploaded to its /files API and referenced "
                "by id; OMEN does not upload files, so image content parts are not supported.",
                param=f"messages[{i}].content[{j}]",
                code="unsupported_capability",
            )
        raise unsupported(f"'{kind}' content parts", f"messages[{i}].content[{j}]")
    return "".join(texts)


def _function_result(text: str) -> str:
    """GigaChat wants a function result to be JSON; plain text is sent as a JSON string (what Sber's own
    LangChain integration does)."""
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return orjson.dumps(text).decode()
    return text


def _call(call_id: str, fn: FunctionCall, param: str, content: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "function_call": {"name": fn.name, "arguments": _arguments(fn.arguments, param)},
    }
    state = _STATE_ID.fullmatch(call_id)
    if state:
        out["functions_state_id"] = state.group(1)
    return out


class _Messages:
    """Builds GigaChat's message list; remembers tool-call ids so results can be named."""

    def __init__(self) -> None:
        self.out: list[dict[str, Any]] = []
        self.names: dict[str, str] = {}  # tool_call id -> function name (GigaChat links results by name)
        self.system: list[str] = []

    def system_message(self, msg: SystemMessage | DeveloperMessage) -> None:
        text = message_text(msg.content)
        if not self.out:
            self.system.append(text)
        else:
            # GigaChat accepts a system message only at the start; a later one is kept as a user turn.
            self.out.append({"role": "user", "content": text})

    def flush_system(self) -> None:
        if self.system and not self.out:
            self.out.append({"role": "system", "content": "\n\n".join(self.system)})

    def tool_result(self, msg: ToolMessage, i: int) -> dict[str, Any]:
        name = self.names.get(msg.tool_call_id)
        if name is None:
            raise bad_request(
                f"Tool message tool_call_id '{msg.tool_call_id}' does not match a tool call of an earlier "
                "assistant message (GigaChat links function results by name).",
                param=f"messages[{i}].tool_call_id",
            )
        return {"role": "function", "name": name, "content": _function_result(message_text(msg.content))}

    def assistant(self, msgs: list[Message], i: int) -> int:
        """Add ``msgs[i]`` (and, for several tool calls, the tool results after it); returns the next index."""
        msg = msgs[i]
        assert isinstance(msg, AssistantMessage)
        content = message_text(msg.content)
        calls = [(c.id, c.function) for c in msg.tool_calls or ()]
        if msg.function_call is not None:  # deprecated single-call form
            calls.append(("", msg.function_call))
        for call_id, fn in calls:
            if call_id:
                self.names[call_id] = fn.name
        if not calls:
            self.out.append({"role": "assistant", "content": content})
            return i + 1
        if len(calls) == 1:
            param = f"messages[{i}].{'tool_calls[0].function' if msg.tool_calls else 'function_call'}.arguments"
            self.out.append(_call(calls[0][0], calls[0][1], param, content))
            return i + 1
        # GigaChat takes one function call per assistant turn: replay parallel calls one by one, each
        # followed by its result (OpenAI puts all results after the calls).
        results: dict[str, tuple[int, ToolMessage]] = {}
        j = i + 1
        while j < len(msgs) and isinstance(msgs[j], ToolMessage):
            tool = msgs[j]
            assert isinstance(tool, ToolMessage)
            results[tool.tool_call_id] = (j, tool)
            j += 1
        for k, (call_id, fn) in enumerate(calls):
            found = results.pop(call_id, None)
            if found is None:
                raise bad_request(
                    f"The assistant message has {len(calls)} tool calls; GigaChat takes them one per turn, so "
                    f"each needs a tool result among the messages right after it (none answers '{call_id}').",
                    param=f"messages[{i}].tool_calls[{k}]",
                )
            self.out.append(_call(call_id, fn, f"messages[{i}].tool_calls[{k}].function.arguments", content))
            content = ""
            self.out.append(self.tool_result(found[1], found[0]))
        if results:
            index, tool = min(results.values(), key=lambda r: r[0])
            raise bad_request(
                f"Tool message tool_call_id '{tool.tool_call_id}' does not answer a call of the assistant "
                "message before it.",
                param=f"messages[{index}].tool_call_id",
            )
        return j


def messages(msgs: list[Message]) -> list[dict[str, Any]]:
    m = _Messages()
    i = 0
    while i < len(msgs):
        msg = msgs[i]
        if isinstance(msg, SystemMessage | DeveloperMessage):
            m.system_message(msg)
            i += 1
            continue
        m.flush_system()
        if isinstance(msg, AssistantMessage):
            i = m.assistant(msgs, i)
            continue
        if isinstance(msg, UserMessage):
            m.out.append({"role": "user", "content": _user_content(msg, i)})
        elif isinstance(msg, ToolMessage):
            m.out.append(m.tool_result(msg, i))
        elif isinstance(msg, FunctionMessage):
            m.out.append({"role": "function", "name": msg.name, "content": _function_result(msg.content or "")})
        i += 1
    m.flush_system()
    return m.out


# ---- functions, formats, sampling ----------------------------------------------------------------------


def _function(fn: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": fn.name}
    if fn.description is not None:
        out["description"] = fn.description
    # GigaChat requires parameters to be an object schema; a function without arguments gets an empty one
    out["parameters"] = fn.parameters if fn.parameters is not None else {"type": "object", "properties": {}}
    return out


def _functions(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    if req.tools:
        out = []
        for k, tool in enumerate(req.tools):
            if tool.type != "function" or tool.function is None:
                raise unsupported(f"'{tool.type}' tools (only function tools)", f"tools[{k}]")
            out.append(_function(tool.function))
        return out
    return [_function(fn) for fn in req.functions or ()]


def _forced(name: Any, names: list[str], param: str) -> dict[str, str]:
    if not isinstance(name, str) or name not in names:
        raise bad_request(f"{param} names a function that is not among the request's tools.", param=param)
    return {"name": name}


def _function_call(req: ChatCompletionRequest, names: list[str]) -> str | dict[str, str] | None:
    if req.tools or (req.tool_choice is not None and not req.functions):
        choice, param = req.tool_choice, "tool_choice"
    else:
        choice, param = req.function_call, "function_call"
    if not names:
        if isinstance(choice, dict) or choice == "required":
            raise bad_request(f"{param} needs tools to choose from.", param=param)
        return None
    if choice is None or choice == "auto":
        return "auto"
    if choice == "none":
        return "none"
    if choice == "required":
        if len(names) == 1:  # "call a tool" with one tool is "call this tool", which GigaChat can express
            return {"name": names[0]}
        raise bad_request(
            "This provider (GigaChat) cannot require a call among several tools; use tool_choice "
            '"auto" or name one function ({"type": "function", "function": {"name": ...}}).',
            param="tool_choice",
            code="unsupported_capability",
        )
    if isinstance(choice, dict):
        if param == "tool_choice":
            fn = choice.get("function")
            return _forced(fn.get("name") if isinstance(fn, dict) else None, names, "tool_choice.function.name")
        return _forced(choice.get("name"), names, "function_call.name")
    raise bad_request(f"Unsupported {param} value {choice!r}.", param=param)


def _response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    kind = (fmt or {}).get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_schema":
        spec = fmt.get("json_schema") if fmt else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request(
                "response_format json_schema needs a 'schema' object.", param="response_format.json_schema.schema"
            )
        out: dict[str, Any] = {"type": "json_schema", "schema": schema}
        strict = spec.get("strict") if isinstance(spec, dict) else None
        if isinstance(strict, bool):
            out["strict"] = strict
        return out
    if kind == "json_object":
        raise bad_request(
            "This provider (GigaChat) has no JSON mode; send response_format "
            '{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}} instead.',
            param="response_format",
            code="unsupported_capability",
        )
    raise bad_request(f"Unsupported response_format type '{kind}'.", param="response_format.type")


def _refuse_unsupported(req: ChatCompletionRequest) -> None:
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise unsupported(f"'{name}'; its 'repetition_penalty' (a factor, 1.0 = off) differs", name)
    if req.logprobs:
        raise unsupported("log probabilities", "logprobs")
    if req.logit_bias:
        raise unsupported("'logit_bias'", "logit_bias")
    if req.modalities and any(m != "text" for m in req.modalities):
        raise unsupported("output modalities other than text", "modalities")
    if req.reasoning_effort is not None and req.reasoning_effort not in _REASONING_EFFORTS:
        raise bad_request("reasoning_effort must be 'low', 'medium' or 'high' for GigaChat.", param="reasoning_effort")


def chat_body(req: ChatCompletionRequest, raw: bytes, model: str, stream: bool) -> dict[str, Any]:
    _refuse_unsupported(req)
    response_mode(req)  # validates 'stop'
    body: dict[str, Any] = {"model": model, "messages": messages(req.messages), "stream": stream}
    functions = _functions(req)
    if functions:
        body["functions"] = functions
    call = _function_call(req, [f["name"] for f in functions])
    if call is not None:
        body["function_call"] = call
    fmt = _response_format(req.response_format)
    if fmt is not None:
        body["response_format"] = fmt
    if req.temperature is not None:
        if req.temperature <= 0:
            # GigaChat takes temperature > 0 only (providers.md §8.3); greedy decoding is top_p 0 there
            body["top_p"] = 0
        else:
            body["temperature"] = req.temperature
    if req.top_p is not None and "top_p" not in body:
        body["top_p"] = req.top_p
    if req.n is not None:
        body["n"] = req.n
    limit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if limit is not None:
        body["max_tokens"] = limit
    if req.reasoning_effort is not None:
        body["reasoning_effort"] = req.reasoning_effort
    body.update(msgspec.to_builtins(decode_body(raw, Extras)))
    return body


__all__ = ["Extras", "Mode", "chat_body", "messages", "response_mode", "unsupported"]
