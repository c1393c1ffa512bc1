"""Prompt-based tool calling for Yandex models without native function calling.

YandexGPT Pro (``yandexgpt``) and Llama 70B (``llama``) take OpenAI ``tools`` natively (``tools``,
``toolCallList``, ``toolResultList``; see yandex_models.NATIVE_TOOL_MODELS). For every other model OMEN
emulates tools with this protocol, so OpenAI clients still get ``tool_calls``:

1. **Definitions in the system prompt.** The tools are appended to the first system message (or sent
   as a new first system message): an instruction, then the definitions as JSON between ``<tools>`` and
   ``</tools>``: ``[{"name", "description", "parameters" (JSON Schema)}]``. The model is told to answer
   a tool call with only a fenced JSON block::

       ```json
       {"tool_calls": [{"name": "<tool name>", "arguments": {<arguments object>}}]}
       ```

   ``tool_choice`` becomes a sentence (``required``: call at least one tool; ``{"function": …}``: call
   that tool; ``none``: no tools are rendered); ``parallel_tool_calls: false`` asks for one call per
   answer (and only the first call is kept).
2. **Parsing the answer.** The first fenced block (with or without a ``json`` tag) whose body is such an object — or an
   answer that is only that object, unfenced — becomes OpenAI ``tool_calls`` (ids ``call_<random>``,
   ``arguments`` re-encoded as a JSON string) with ``finish_reason: "tool_calls"``; text around the block
   is the message ``content``. A single ``{"name", "arguments"}`` object is accepted too. A block naming
   a tool that was not offered, or with non-object arguments, is left as plain text.
3. **History.** An assistant message with ``tool_calls`` is sent as its text followed by the same
   fenced block; ``tool`` messages (consecutive ones merged) become one user turn::

       Tool results:
       ```json
       {"tool_results": [{"name": "get_weather", "content": "22C"}]}
       ```

4. **Streams.** Text is relayed as it arrives, except from the point where a tool block may start (a
   fence whose body starts with ``{`` or is not visible yet, an answer starting with ``{``, one or two
   backticks at the very end): that part is held until it is known to be ordinary text, and a tool block is sent
   as ``tool_calls`` deltas when the answer is complete.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson

TOOL_RESULTS_HEADER = "Tool results:"

_INSTRUCTIONS = (
    "You can call tools (functions). They are listed below as JSON: name, description and the JSON Schema "
    "of their arguments.\n<tools>\n{tools}\n</tools>\n"
    "To call tools, answer with only this fenced JSON block and no other text:\n"
    '```json\n{{"tool_calls": [{{"name": "<tool name>", "arguments": {{<arguments as a JSON object>}}}}]}}\n```\n'
    "{choice}"
    f'Tool results come back in a user message starting with "{TOOL_RESULTS_HEADER}". '
    "When no tool is needed, or after the results arrive, answer in plain text."
)
_CHOICE_AUTO = "Call a tool only when it helps to answer. "
_CHOICE_REQUIRED = "You must call at least one tool now. "
_CHOICE_FORCED = "You must call the tool '{name}' now. "
_ONE_CALL = "Call at most one tool per answer. "
_SEVERAL_CALLS = "To call several tools at once, list them all in the one block. "

# A fence opener: ``` + optional info string (json, tool_call…) + the rest of the line.
_OPENER = re.compile(r"```[\w.+-]*[ \t]*(?:\r?\n)?\s*")
_FENCED = re.compile(r"```[\w.+-]*[ \t]*(?:\r?\n)?(.*?)```", re.S)
_UNCLOSED = re.compile(r"```[\w.+-]*[ \t]*(?:\r?\n)?(\s*\{.*)\Z", re.S)


def system_prompt(tools: list[dict[str, Any]], choice: str | None, forced: str | None, parallel: bool | None) -> str:
    """The instruction added to the system prompt. ``choice``: None/"auto"/"required"; ``forced``: a
    tool name the model must call."""
    listing = orjson.dumps(tools, option=orjson.OPT_INDENT_2).decode()
    if forced:
        rule = _CHOICE_FORCED.format(name=forced)
    elif choice == "required":
        rule = _CHOICE_REQUIRED
    else:
        rule = _CHOICE_AUTO
    rule += _ONE_CALL if parallel is False else _SEVERAL_CALLS
    return _INSTRUCTIONS.format(tools=listing, choice=rule)


def render_calls(calls: Iterable[tuple[str, dict[str, Any]]]) -> str:
    """An assistant turn's tool calls, written the way the model is asked to write them."""
    body = {"tool_calls": [{"name": name, "arguments": args} for name, args in calls]}
    return "```json\n" + orjson.dumps(body).decode() + "\n```"


def render_results(results: Iterable[tuple[str, str]]) -> str:
    body = {"tool_results": [{"name": name, "content": content} for name, content in results]}
    return f"{TOOL_RESULTS_HEADER}\n```json\n" + orjson.dumps(body).decode() + "\n```"


# ---- parsing the model's answer -----------------------------------------------------------------------


def _arguments(value: Any) -> dict[str, Any] | None:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value) if value.strip() else {}
        except orjson.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


def _calls(body: str, names: frozenset[str]) -> list[tuple[str, dict[str, Any]]] | None:
    """The calls in a block body, or None when it is not a valid tool block."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    items = obj.get("tool_calls")
    if items is None and "name" in obj:
        items = [obj]
    if not isinstance(items, list) or not items:
        return None
    calls = []
    for item in items:
        if not isinstance(item, dict) or item.get("name") not in names:
            return None
        args = _arguments(item.get("arguments", item.get("parameters")))
        if args is None:
            return None
        calls.append((item["name"], args))
    return calls


def parse_answer(text: str, names: frozenset[str]) -> tuple[str, list[tuple[str, dict[str, Any]]]] | None:
    """``(content, calls)`` when the answer holds a tool block; ``content`` is the text around it."""
    stripped = text.strip()
    if stripped.startswith("{"):
        calls = _calls(stripped, names)
        if calls is not None:
            return "", calls
    for match in _FENCED.finditer(text):
        calls = _calls(match.group(1).strip(), names)
        if calls is not None:
            return (text[: match.start()] + text[match.end() :]).strip(), calls
    tail = _UNCLOSED.search(text)  # the closing fence is sometimes forgotten at the very end
    if tail is not None and "```" not in tail.group(1):
        calls = _calls(tail.group(1).strip(), names)
        if calls is not None:
            return text[: tail.start()].strip(), calls
    return None


def openai_calls(calls: list[tuple[str, dict[str, Any]]], new_id: Callable[[], str]) -> list[dict[str, Any]]:
    out = []
    for name, args in calls:
        function = {"name": name, "arguments": orjson.dumps(args).decode()}
        out.append({"id": f"call_{new_id()}", "type": "function", "function": function})
    return out


def hold_point(text: str, names: frozenset[str]) -> int:
    """How much of a growing answer may be streamed now: the index where a possible tool block starts
    (``len(text)`` when there is none). Agrees with :func:`parse_answer`: everything it could turn into
    tool calls lies at or after this index."""
    start = len(text) - len(text.lstrip())
    if start == len(text):
        return 0  # blank so far
    if text[start] == "{":
        return start  # a bare JSON answer: wait for all of it
    pos = 0
    while (fence := text.find("```", pos)) != -1:
        opener = _OPENER.match(text, fence)
        assert opener is not None  # the pattern matches any "```"
        body = opener.end()
        close = text.find("```", body)
        if body < len(text) and text[body] != "{":
            if close == -1:
                return len(text)  # inside an ordinary code block: nothing to hold
            pos = close + 3
        elif close == -1 or _calls(text[body:close].strip(), names) is not None:
            return fence  # a tool block, or one that may become one
        else:
            pos = close + 3  # a closed block that is not a tool call: ordinary text
    if text.endswith("``"):
        return len(text) - 2
    if text.endswith("`"):
        return len(text) - 1
    return len(text)
