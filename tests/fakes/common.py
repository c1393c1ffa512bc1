"""Shared pieces of the fake upstreams: options, response plans and the deterministic "model".

The fake model is deliberately dumb so tests can compute every expected byte: it answers
``"Echo: <text>"`` (``<text>`` = the last user message, or the trailing tool result), one
*token* per whitespace-led word, and derives embeddings from a hash of the input text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson

# Native (non-OpenAI-format) kinds each live in ``<kind>_wire.py`` (see routes.native_wire).
NATIVE_KINDS = ("anthropic", "gemini", "bedrock", "gigachat", "yandex")
KINDS = ("openai", "xai", "generic", "azure", "ollama", *NATIVE_KINDS)

DEFAULT_MODELS: dict[str, list[str]] = {
    "openai": ["gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo-instruct", "text-embedding-3-small"],
    "generic": ["gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo-instruct", "text-embedding-3-small"],
    "xai": ["grok-4.3", "grok-3-mini", "grok-code-fast-1"],
    "azure": ["gpt-4o-2024-08-06", "text-embedding-3-small"],
    "ollama": ["llama3.2", "qwen2.5-coder"],
}

ReplyFn = Callable[[dict[str, Any]], str]


@dataclass
class Options:
    """Per-server knobs; mutable during a test through ``FakeUpstream.configure``."""

    api_key: str | None = None
    """Required credential (Bearer; Azure: ``api-key`` header). ``None`` = no auth check."""
    ad_token: str | None = None
    """Azure only: Entra ID token accepted as ``Authorization: Bearer <ad_token>``."""
    models: list[str] | None = None
    """Known models. openai/xai/azure: ``None`` accepts any model (listing shows defaults);
    ollama: ``None`` means ``["llama3.2", "qwen2.5-coder"]`` and unknown models get 404."""
    deployments: list[str] | None = None
    """Azure only: known deployments (``None`` accepts any name)."""
    reply: str | ReplyFn | None = None
    """Fixed reply text (or ``fn(request_json) -> text``) instead of ``"Echo: <text>"``."""
    chunks: int | None = None
    """Force exactly this many content chunks (the reply is padded with `` w<i>`` words)."""
    chunk_delay: float = 0.0
    """Default pause between stream chunks (a Fault's ``chunk_delay`` overrides it)."""
    embedding_dims: int = 8
    tool_calls: int = 1
    """How many of the request's tools to call at once (parallel tool calls)."""
    azure_model: str = "gpt-4o-2024-08-06"
    azure_embedding_model: str = "text-embedding-3-small"
    created: int = 1735000000
    system_fingerprint: str = "fp_fake"
    fast: bool = False
    """Benchmark mode: cache whole responses per request bytes, send each response in one write."""
    record: bool | None = None
    """Keep ``up.requests``; default ``not fast`` so long benchmarks do not grow memory."""

    @property
    def recording(self) -> bool:
        return (not self.fast) if self.record is None else self.record


@dataclass(slots=True)
class Plan:
    """A response decided but not yet sent: the sender applies faults and pacing to it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    chunks: list[bytes]
    """Body pieces: one piece for plain bodies; one SSE event / NDJSON line each for streams."""
    stream: bool = False
    ndjson: bool = False
    """Stream framing is NDJSON (Ollama) rather than SSE: decides how a mid-stream error is written."""
    _joined: bytes | None = None
    head: Any = None
    """The validated ``h11.Response`` reused by fast mode (h11 header validation is costly)."""
    _raw: bytes | None = None

    @property
    def joined(self) -> bytes:
        if self._joined is None:
            self._joined = b"".join(self.chunks)
        return self._joined

    def raw(self) -> bytes:
        """The whole HTTP/1.1 keep-alive response (a stream as one chunk), for fast mode."""
        if self._raw is None:
            phrase = HTTPStatus(self.status).phrase if self.status in HTTPStatus._value2member_map_ else ""
            lines = [f"HTTP/1.1 {self.status} {phrase}\r\n".encode()]
            lines.extend(k + b": " + v + b"\r\n" for k, v in self.headers)
            body = self.joined
            if self.stream:
                lines.append(b"transfer-encoding: chunked\r\n\r\n")
                if body:
                    lines.append(b"%x\r\n%b\r\n" % (len(body), body))
                lines.append(b"0\r\n\r\n")
            else:
                lines.append(b"\r\n")
                lines.append(body)
            self._raw = b"".join(lines)
        return self._raw


class ApiError(Exception):
    """A request the fake refuses; each kind renders it in its provider's error shape."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or f"HTTP {status}")
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.body = body
        self.headers = headers or {}


JSON_CT = (b"content-type", b"application/json")
SSE_CT = (b"content-type", b"text/event-stream; charset=utf-8")
NDJSON_CT = (b"content-type", b"application/x-ndjson")


def json_plan(status: int, obj: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Plan:
    body = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    hdrs = [JSON_CT, (b"content-length", str(len(body)).encode())]
    if headers:
        hdrs.extend(headers)
    return Plan(status, hdrs, [body])


def text_plan(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Plan:
    body = text.encode()
    hdrs = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    return Plan(status, hdrs, [body])


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def ndjson(obj: Any) -> bytes:
    return orjson.dumps(obj) + b"\n"


# --- the deterministic "model" ------------------------------------------------------------------


def content_text(content: Any) -> str:
    """Text of an OpenAI/Ollama message ``content`` (string or list of parts; non-text parts ignored)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(texts)
    return str(content)


def prompt_text(messages: list[Any]) -> str:
    """What the fake echoes: a trailing tool result if the last message is one, else the last user text."""
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        return content_text(messages[-1].get("content"))
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return content_text(msg.get("content"))
    return ""


def echo_text(text: str) -> str:
    return f"Echo: {text}"


def count_tokens(texts: list[str] | str) -> int:
    """Fake tokenizer: one token per whitespace-separated word."""
    if isinstance(texts, str):
        return len(texts.split())
    return sum(len(t.split()) for t in texts)


def messages_tokens(messages: list[Any]) -> int:
    return sum(count_tokens(content_text(m.get("content"))) for m in messages if isinstance(m, dict))


_WORD = re.compile(r"\s*\S+")


def split_words(text: str, n: int | None = None) -> list[str]:
    """Split into word pieces with leading spaces (``"Echo: a b"`` -> ``["Echo:", " a", " b"]``).

    ``"".join(pieces) == text`` always holds. With ``n``, exactly ``n`` pieces are returned: words
    are grouped when there are more, and filler words `` w<i>`` are appended when there are fewer.
    """
    pieces = _WORD.findall(text)
    tail = text[sum(map(len, pieces)) :]
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces = [tail]
    if n is None or n <= 0:
        return pieces
    if len(pieces) < n:
        return pieces + [f" w{i}" for i in range(len(pieces), n)]
    per, extra = divmod(len(pieces), n)
    out, i = [], 0
    for k in range(n):
        take = per + (1 if k < extra else 0)
        out.append("".join(pieces[i : i + take]))
        i += take
    return out


def reply_text(opts: Options, request: dict[str, Any], default: str) -> str:
    if opts.reply is None:
        return default
    if callable(opts.reply):
        return opts.reply(request)
    return opts.reply


def limit_pieces(pieces: list[str], max_tokens: Any) -> tuple[list[str], bool]:
    """Apply ``max_tokens``: returns the pieces kept and whether the answer was cut (``length``)."""
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and 0 < max_tokens < len(pieces):
        return pieces[:max_tokens], True
    return pieces, False


def embedding_vector(text: str, dims: int = 8) -> list[float]:
    """Deterministic vector in [-0.5, 0.5): multiples of 1/256, so float32/base64 round-trips exactly."""
    out: list[float] = []
    block = 0
    while len(out) < dims:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        out.extend((b - 128) / 256 for b in digest)
        block += 1
    return out[:dims]


def tool_arguments(function: dict[str, Any], text: str) -> dict[str, Any]:
    """Arguments for a fake call: the first declared parameter (else ``"input"``) set to the prompt text."""
    params = function.get("parameters")
    props = params.get("properties") if isinstance(params, dict) else None
    key = next(iter(props), "input") if isinstance(props, dict) and props else "input"
    return {key: text}


def tool_call_id(name: str, arguments: str, index: int) -> str:
    return "call_" + hashlib.md5(f"{index}:{name}:{arguments}".encode()).hexdigest()[:24]


def pick_tools(tools: Any, tool_choice: Any, count: int) -> list[dict[str, Any]]:
    """Functions the fake will call: the forced one for ``tool_choice={"function":...}``, else the first N."""
    if not isinstance(tools, list) or not tools or tool_choice == "none":
        return []
    functions = [t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if isinstance(tool_choice, dict):
        forced = (tool_choice.get("function") or {}).get("name")
        chosen = [f for f in functions if f.get("name") == forced]
        if chosen:
            return chosen[:1]
    return functions[: max(1, count)]


def split_arguments(arguments: str, pieces: int = 3) -> list[str]:
    """Cut a JSON arguments string into a few fragments, as OpenAI streams tool-call arguments."""
    if len(arguments) < 2:
        return [arguments]
    size = -(-len(arguments) // pieces)
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


@dataclass(slots=True)
class Ctx:
    """Everything a handler needs to build a Plan for one request."""

    kind: str
    opts: Options
    body: Any
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    seq: int = 0
    finish_reason: str | None = None
    """Fault override of the finish reason (e.g. ``content_filter``, ``length``)."""
