"""What a request is for, so ``model="auto"`` can pick a group: code, reasoning, vision, tools, long or chat.

Precedence (first match wins, so the answer is predictable):

1. a hint: ``"tags": {"intent": ...}`` in the body, else the ``x-omen-intent`` header ("auto" = no hint);
2. any image part in any message -> ``vision``;
3. a non-empty ``tools`` array (or legacy ``functions``) -> ``tools``;
4. prompt tokens over ``long_threshold_tokens`` -> ``long``;
5. the text: ``code``, ``reasoning`` or ``chat`` from the lexical classifier in ``omen._fast.intent``.

Which text counts, and how much (step 5): the current turn — the last run of user messages — is what
the user is asking now, so its hits weigh 1.0; the four user messages before it weigh 0.5 (a follow-up
such as "now make it faster" inherits the topic); the last assistant message weighs 0.25 (the code or
maths the user is following up on) and system/developer prompts 0.1 (mostly the same boilerplate about the
assistant's role on every request: "You are an expert Python programmer" must not outvote "write me a
poem"). Without any user message the system/developer prompt is the request and weighs 1.0.
Tool results are data, not intent, and are not read. Each message is scanned up to ``SCAN_CHARS``
characters (its head and tail when longer: pasted code or a question at the end both show).

Counting tokens costs far more than classifying, so step 4 tokenizes only when the request could be
long: a message never has more tokens than the UTF-8 bytes of its JSON (every token covers at least one
byte, and the JSON holds every string that is counted plus the quotes and keys that pay for the
per-message overhead), so below the threshold by that measure it is not long. Above it, messages are
counted (``omen.tokens``, OpenAI's rule, the model's encoding: o200k for ``auto``) largest first only
until the answer is certain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from omen._fast import load
from omen.api.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
    ImagePart,
    SystemMessage,
    UserMessage,
    message_text,
)
from omen.errors import bad_request
from omen.tokens import count_messages, encoding_for_model, get_encoding
from omen.tokens.chat import REPLY_PRIMING

_fast = load("intent")

INTENTS = ("code", "reasoning", "vision", "tools", "long", "chat")
PRIORITIES = ("low-latency", "low-cost")
INTENT_HEADER = "x-omen-intent"
PRIORITY_HEADER = "x-omen-priority"

CURRENT_TURN_WEIGHT = 1.0
EARLIER_USER_WEIGHT = 0.5
EARLIER_USER_MESSAGES = 4
ASSISTANT_WEIGHT = 0.25  # the last assistant message
SYSTEM_WEIGHT = 0.1  # system/developer prompts: mostly the same boilerplate about the assistant's role
SCAN_CHARS = 8192

_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Intent:
    """The intent found and why. ``source``: "hint" (tags or header), "request" (images, tools or
    length) or "classifier" (the text)."""

    name: str
    reason: str
    source: str


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for key, v in headers.items():  # a mapping that kept the client's spelling
            if key.lower() == name:
                return v
    return value


def _hint(
    request: ChatCompletionRequest, headers: Mapping[str, str], tag: str, header: str, allowed: tuple[str, ...]
) -> tuple[str, str] | None:
    """(value, where) of a valid hint, None when absent; an invalid value is a 400."""
    tags = request.tags or {}
    if tag in tags:
        raw, where, param = tags[tag], f"tags.{tag}", f"tags.{tag}"
    else:
        raw = _header(headers, header)
        if raw is None:
            return None
        where, param = f"{header} header", None
    value = raw.strip().lower()
    if tag == "intent" and value == "auto":
        return None
    if value not in allowed:
        raise bad_request(
            f"Invalid {where} {raw!r}: expected one of {', '.join(allowed)}"
            + (" (or auto)" if tag == "intent" else "")
            + ".",
            param=param or header,
            code="invalid_hint",
        )
    return value, where


def priority_hint(request: ChatCompletionRequest, headers: Mapping[str, str]) -> str | None:
    """The priority hint ("low-latency" | "low-cost") from ``tags.priority`` or the ``x-omen-priority`` header."""
    hint = _hint(request, headers, "priority", PRIORITY_HEADER, PRIORITIES)
    return hint[0] if hint else None


def classify(request: ChatCompletionRequest, headers: Mapping[str, str], long_threshold_tokens: int) -> Intent:
    """The request's intent, by the precedence in this module's docstring."""
    hint = _hint(request, headers, "intent", INTENT_HEADER, INTENTS)
    if hint is not None:
        return Intent(hint[0], f"hint from {hint[1]}", "hint")
    for i, message in enumerate(request.messages):
        content = getattr(message, "content", None)
        if isinstance(content, list):
            for k, part in enumerate(content):
                if isinstance(part, ImagePart):
                    return Intent("vision", f"image part in messages[{i}].content[{k}]", "request")
    if request.tools:
        return Intent("tools", f"{len(request.tools)} tool(s) in tools", "request")
    if request.functions:
        return Intent("tools", f"{len(request.functions)} function(s) in functions (legacy)", "request")
    long = _long(request, long_threshold_tokens)
    if long is not None:
        return long
    name, reason = _fast.classify_weighted(weighted_texts(request))
    return Intent(name, reason, "classifier")


def _long(request: ChatCompletionRequest, threshold: int) -> Intent | None:
    """``long`` when the prompt has more than ``threshold`` tokens, tokenizing as little as it takes.

    Every message has an upper bound (its JSON size, see the module docstring). Messages are counted
    largest first, and counting stops as soon as the answer is known: the tokens counted so far exceed
    the threshold (long), or they plus the bounds of the messages left cannot (not long).
    """
    messages = request.messages
    bounds = [_bound(m) for m in messages]
    remaining = sum(bounds)
    if REPLY_PRIMING + remaining <= threshold:
        return None
    enc = get_encoding(encoding_for_model(request.model))
    tokens = REPLY_PRIMING
    order = sorted(range(len(messages)), key=lambda i: -bounds[i])
    for k, i in enumerate(order, 1):
        tokens += count_messages([messages[i]], enc) - REPLY_PRIMING  # this message's share
        remaining -= bounds[i]
        if tokens > threshold:
            if k == len(order):
                return Intent("long", f"{tokens} prompt tokens > {threshold}", "request")
            return Intent(
                "long", f"{tokens}+ prompt tokens > {threshold} ({k} of {len(order)} messages counted)", "request"
            )
        if tokens + remaining <= threshold:
            return None
    return None


def _bound(message: object) -> int:
    try:
        return len(_json.encode(message))
    except (msgspec.EncodeError, UnicodeError):  # e.g. a lone surrogate: no bound, it must be counted
        return 1 << 62


def _clip(text: str) -> str:
    if len(text) <= SCAN_CHARS:
        return text
    half = SCAN_CHARS // 2
    return text[:half] + "\n" + text[-half:]


def weighted_texts(request: ChatCompletionRequest) -> list[tuple[str, float]]:
    """(text, weight) pairs the classifier reads, by the rule in this module's docstring."""
    messages = request.messages
    last_user = max((i for i, m in enumerate(messages) if isinstance(m, UserMessage)), default=-1)
    turn_start = last_user
    while turn_start > 0 and isinstance(messages[turn_start - 1], UserMessage):
        turn_start -= 1
    # Without any user message the system/developer prompt is the request itself.
    system_weight = SYSTEM_WEIGHT if last_user >= 0 else CURRENT_TURN_WEIGHT
    parts: list[tuple[str, float]] = []
    earlier = 0
    last_assistant_seen = False
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, UserMessage):
            if i >= turn_start:
                parts.append((_clip(message_text(message.content)), CURRENT_TURN_WEIGHT))
            elif earlier < EARLIER_USER_MESSAGES:
                earlier += 1
                parts.append((_clip(message_text(message.content)), EARLIER_USER_WEIGHT))
        elif isinstance(message, AssistantMessage):
            if not last_assistant_seen:
                last_assistant_seen = True
                parts.append((_clip(message_text(message.content)), ASSISTANT_WEIGHT))
        elif isinstance(message, (SystemMessage, DeveloperMessage)):
            parts.append((_clip(message_text(message.content)), system_weight))
    return parts
