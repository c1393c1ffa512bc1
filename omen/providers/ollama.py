"""Ollama through its native API (/api/chat, /api/generate, /api/embed, /api/tags).

The native API is used rather than Ollama's own /v1 layer because it is the stable one and reports
usage on every call. Unlike the OpenAI-format adapters this one really translates: OpenAI requests
become Ollama JSON, and Ollama's NDJSON (one object per line, the last with ``"done": true``) becomes
OpenAI chunks with a stable id/created, built from precomputed byte prefixes.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import sys
import time
from array import array
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import msgspec
import orjson

from omen.api.chat import (
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
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
from omen.api.decode import decode_body
from omen.api.embeddings import EmbeddingRequest
from omen.config.schema import ProviderConfig
from omen.errors import OmenError, bad_request
from omen.providers.base import (
    ChatCall,
    Chunk,
    CompletionCall,
    EmbeddingCall,
    Headers,
    ModelInfo,
    Result,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamUsage,
    UpstreamRequest,
    Usage,
)
from omen.providers.upstream_errors import invalid_upstream_body, normalise_error, redact
from omen.streaming.sse import LineSplitter

DEFAULT_ENDPOINT = "http://127.0.0.1:11434"
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/webp"})
_END = StreamEnd()
T = TypeVar("T")


def random_id() -> str:
    return secrets.token_hex(12)


# ---- Ollama wire types (only the fields OMEN reads; the rest is skipped while decoding) --------------


class _Function(msgspec.Struct):
    name: str = ""
    arguments: Any = None


class _ToolCall(msgspec.Struct):
    function: _Function
    id: str | None = None


class _Message(msgspec.Struct):
    content: str = ""
    thinking: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Line(msgspec.Struct):
    """One /api/chat or /api/generate object (a whole response, or one NDJSON line of a stream)."""

    message: _Message | None = None  # /api/chat
    response: str = ""  # /api/generate
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int = 0
    eval_count: int = 0
    error: Any = None

    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_eval_count,
            completion_tokens=self.eval_count,
            total_tokens=self.prompt_eval_count + self.eval_count,
        )


class _Embed(msgspec.Struct):
    embeddings: list[list[float]] = []
    prompt_eval_count: int = 0


class _Tags(msgspec.Struct):
    models: list[dict[str, Any]] = []


_line_decoder = msgspec.json.Decoder(_Line)
_embed_decoder = msgspec.json.Decoder(_Embed)
_tags_decoder = msgspec.json.Decoder(_Tags)


# ---- request mapping ---------------------------------------------------------------------------------


def _request(call: Any, type_: type[T]) -> T:
    return call.request if call.request is not None else decode_body(call.raw, type_)


def _options(req: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(req, name)
        if value is not None:
            options[name] = value
    limit = getattr(req, "max_completion_tokens", None)
    if limit is None:
        limit = req.max_tokens
    if limit is not None:
        options["num_predict"] = limit
    if req.stop is not None:
        options["stop"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    return options


def _reject_n(n: int | None) -> None:
    if n not in (None, 1):
        raise bad_request("This provider (Ollama) returns one choice per request; 'n' must be 1.", param="n")


def _format(response_format: dict[str, Any] | None) -> Any:
    kind = (response_format or {}).get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = response_format.get("json_schema") if response_format else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request(
                "response_format json_schema needs a 'schema' object.",
                param="response_format.json_schema.schema",
            )
        return schema
    raise bad_request(f"Unsupported response_format type '{kind}'.", param="response_format.type")


def _arguments(text: str, param: str) -> dict[str, Any]:
    """OpenAI sends tool-call arguments as a JSON string; Ollama wants the object."""
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise bad_request("Tool call arguments must be a JSON object encoded as a string.", param=param) from None
    if not isinstance(value, dict):
        raise bad_request("Tool call arguments must be a JSON object encoded as a string.", param=param)
    return value


def _image(url: str, param: str) -> str:
    """A data: URI -> the raw base64 Ollama wants. Ollama cannot fetch image URLs, so the provider
    declares ``inline_images``: the pipeline fetches http(s) images (SSRF-checked, omen/media) and
    hands this translator data: URIs only. An http(s) URL here means that step did not run."""
    if url.startswith(("http://", "https://")):
        raise bad_request(
            "This provider (Ollama) needs images inline as data: URIs "
            "(data:image/png;base64,...); this image URL was not fetched.",
            param=param,
            code="image_url_not_supported",
        )
    if not url.startswith("data:"):
        raise bad_request("An image URL must be a data: URI (data:image/png;base64,...).", param=param)
    header, comma, payload = url[5:].partition(",")
    media, *attrs = header.split(";")
    media = media.strip().lower()
    if not comma or "base64" not in (a.strip().lower() for a in attrs):
        raise bad_request("An image data: URI must be base64-encoded (data:image/png;base64,...).", param=param)
    if media not in _IMAGE_TYPES:
        raise bad_request(
            f"Unsupported image type '{media or 'none'}'; use image/png, image/jpeg or image/webp.",
            param=param,
        )
    try:
        if not base64.b64decode(payload, validate=True):
            raise ValueError("empty")
    except (binascii.Error, ValueError):
        raise bad_request("The image data: URI does not contain valid base64 data.", param=param) from None
    return payload


def _user_message(msg: UserMessage, i: int) -> dict[str, Any]:
    if isinstance(msg.content, str):
        return {"role": "user", "content": msg.content}
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(msg.content):
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ImagePart):
            images.append(_image(part.image_url.url, f"messages[{i}].content[{j}].image_url.url"))
        else:
            kind = type(part).__name__.removesuffix("Part").lower()
            raise bad_request(
                f"This provider (Ollama) does not accept '{kind}' content parts.",
                param=f"messages[{i}].content[{j}]",
            )
    out: dict[str, Any] = {"role": "user", "content": "".join(texts)}
    if images:
        out["images"] = images
    return out


def _assistant_message(msg: AssistantMessage, i: int, names: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": message_text(msg.content)}
    calls: list[tuple[str, FunctionCall]] = [(c.id, c.function) for c in msg.tool_calls or ()]
    if msg.function_call is not None:  # deprecated single-call form
        calls.append(("", msg.function_call))
    if calls:
        tool_calls = []
        for k, (call_id, fn) in enumerate(calls):
            if call_id:
                names[call_id] = fn.name
            param = f"messages[{i}].tool_calls[{k}].function.arguments"
            tool_calls.append({"function": {"name": fn.name, "arguments": _arguments(fn.arguments, param)}})
        out["tool_calls"] = tool_calls
    return out


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call id -> function name: Ollama links results by name, not id
    for i, msg in enumerate(messages):
        if isinstance(msg, UserMessage):
            out.append(_user_message(msg, i))
        elif isinstance(msg, AssistantMessage):
            out.append(_assistant_message(msg, i, names))
        elif isinstance(msg, ToolMessage):
            tool: dict[str, Any] = {"role": "tool", "content": message_text(msg.content)}
            name = names.get(msg.tool_call_id)
            if name:
                tool["tool_name"] = name
            out.append(tool)
        elif isinstance(msg, FunctionMessage):
            out.append({"role": "tool", "content": msg.content or "", "tool_name": msg.name})
        elif isinstance(msg, SystemMessage | DeveloperMessage):
            out.append({"role": "system", "content": message_text(msg.content)})
    return out


def _tools(req: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    if not req.tools or req.tool_choice == "none":
        return None  # tool_choice "none": Ollama has no such switch, so do not offer the tools
    tools = []
    for k, tool in enumerate(req.tools):
        if tool.type != "function" or tool.function is None:
            raise bad_request(
                f"This provider (Ollama) supports only function tools, not '{tool.type}'.",
                param=f"tools[{k}]",
            )
        tools.append({"type": "function", "function": msgspec.to_builtins(tool.function)})
    return tools


# ---- response mapping --------------------------------------------------------------------------------


def _finish_reason(done_reason: str | None, tool_calls: bool) -> str:
    if done_reason == "length":
        return "length"
    # Ollama reports "stop" after tool calls; OpenAI clients look for "tool_calls" (Ollama's own /v1
    # does the same rewrite). "load"/"unload" are not generations: "stop".
    return "tool_calls" if tool_calls else "stop"


def _openai_tool_call(call: _ToolCall, new_id: Callable[[], str]) -> dict[str, Any]:
    args = call.function.arguments
    if not isinstance(args, str):
        args = orjson.dumps(args if args is not None else {}).decode()
    return {
        "id": call.id or f"call_{new_id()}",
        "type": "function",
        "function": {"name": call.function.name, "arguments": args},
    }


def _decode_line(provider: str, body: bytes) -> _Line:
    try:
        return _line_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise invalid_upstream_body(provider, "a response", body) from None


def _upstream_error(provider: str, error: Any, status: int = 502) -> OmenError:
    message = redact(provider, error if isinstance(error, str) else orjson.dumps(error).decode())
    return OmenError(status, f"Upstream provider '{provider}' reported: {message}", type="server_error")


class _NDJSONStream:
    """Ollama NDJSON -> OpenAI chunks; subclasses render lines for chat or text completions."""

    object: ClassVar[str]

    def __init__(
        self,
        provider: str,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        new_id: Callable[[], str],
    ) -> None:
        self.provider = provider
        self.include_usage = include_usage
        self._new_id = new_id
        self._lines = LineSplitter()
        self._finished = False
        # every chunk starts the same: encode that once
        head = orjson.dumps({"id": completion_id, "object": self.object, "created": created, "model": model})
        self._head = head[:-1] + b',"choices":'

    def feed(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self._finished:
            for line in self._lines.feed(data):
                self._line(line, out)
                if self._finished:
                    break
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._finished:
            return out
        for line in self._lines.close():
            self._line(line, out)
            if self._finished:
                return out
        self._fail(
            OmenError(
                502,
                f"Upstream provider '{self.provider}' ended the stream early (no final done:true object).",
                type="server_error",
                code="upstream_stream_truncated",
            ),
            out,
        )
        return out

    def _fail(self, error: OmenError, out: list[StreamEvent]) -> None:
        self._finished = True
        out.append(StreamError(error))

    def _line(self, line: bytes, out: list[StreamEvent]) -> None:
        try:
            msg = _line_decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._fail(invalid_upstream_body(self.provider, "a stream line", line), out)
            return
        if msg.error is not None:
            self._fail(_upstream_error(self.provider, msg.error), out)
            return
        self._render(msg, out)
        if msg.done:
            usage = msg.usage()
            out.append(Chunk(self._choice(self._final_choice(msg))))
            if self.include_usage:
                out.append(Chunk(self._head + b'[],"usage":' + orjson.dumps(usage.to_openai()) + b"}"))
            out.append(StreamUsage(usage))
            out.append(_END)
            self._finished = True

    def _choice(self, choice: bytes) -> bytes:
        return self._head + b"[" + choice + b"]}"

    def _render(self, msg: _Line, out: list[StreamEvent]) -> None:
        raise NotImplementedError

    def _final_choice(self, msg: _Line) -> bytes:
        raise NotImplementedError


class OllamaChatStream(_NDJSONStream):
    object = "chat.completion.chunk"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._started = False
        self._tool_calls = 0  # running index: OpenAI clients merge tool-call deltas by index

    def _delta(self, delta: bytes) -> Chunk:
        return Chunk(self._choice(b'{"index":0,"delta":' + delta + b',"logprobs":null,"finish_reason":null}'))

    def _render(self, msg: _Line, out: list[StreamEvent]) -> None:
        if not self._started:
            self._started = True
            out.append(self._delta(b'{"role":"assistant","content":""}'))
        m = msg.message
        if m is None:
            return
        if m.thinking:
            out.append(self._delta(orjson.dumps({"reasoning_content": m.thinking})))
        if m.content:
            out.append(self._delta(orjson.dumps({"content": m.content})))
        if m.tool_calls:
            calls = []
            for call in m.tool_calls:  # Ollama sends each call whole, never as argument fragments
                calls.append({"index": self._tool_calls, **_openai_tool_call(call, self._new_id)})
                self._tool_calls += 1
            out.append(self._delta(orjson.dumps({"tool_calls": calls})))

    def _final_choice(self, msg: _Line) -> bytes:
        reason = _finish_reason(msg.done_reason, self._tool_calls > 0)
        return b'{"index":0,"delta":{},"logprobs":null,"finish_reason":"' + reason.encode() + b'"}'


class OllamaGenerateStream(_NDJSONStream):
    object = "text_completion"

    def _text(self, text: str, finish: bytes) -> bytes:
        return b'{"text":' + orjson.dumps(text) + b',"index":0,"logprobs":null,"finish_reason":' + finish + b"}"

    def _render(self, msg: _Line, out: list[StreamEvent]) -> None:
        if msg.response:
            out.append(Chunk(self._choice(self._text(msg.response, b"null"))))

    def _final_choice(self, msg: _Line) -> bytes:
        return self._text("", b'"' + _finish_reason(msg.done_reason, False).encode() + b'"')


# ---- provider ----------------------------------------------------------------------------------------


class OllamaProvider:
    """``type = "ollama"``: one or more Ollama servers (``endpoints``), no auth unless ``api_key``
    (Ollama cloud). ``clock`` and ``new_id`` make ids and timestamps deterministic in tests."""

    type: ClassVar[str] = "ollama"
    inline_images: ClassVar[bool] = True  # Ollama takes base64 images only: the pipeline fetches URLs

    def __init__(
        self,
        provider_id: str,
        config: ProviderConfig,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = random_id,
    ) -> None:
        self.id = provider_id
        self.config = config
        self._clock = clock
        self._new_id = new_id
        urls = config.endpoints or ([config.base_url] if config.base_url else [DEFAULT_ENDPOINT])
        # a base URL pasted with the /api suffix would double it: the paths below start with /api
        self._endpoints = [u.rstrip("/").removesuffix("/api") for u in urls]
        auth: Headers = [("Authorization", f"Bearer {config.api_key}")] if config.api_key else []
        names = {k.lower() for k in config.headers}
        self._auth = [h for h in auth if h[0].lower() not in names] + list(config.headers.items())
        self._post_headers = [("Content-Type", "application/json"), *self._auth]

    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    def _post(self, path: str, body: dict[str, Any], stream: bool = False) -> UpstreamRequest:
        # a fresh header list per request: the transport may add to it
        return UpstreamRequest("POST", path, list(self._post_headers), orjson.dumps(body), stream=stream)

    # -- chat --

    def chat_request(self, call: ChatCall) -> UpstreamRequest:
        req = _request(call, ChatCompletionRequest)
        _reject_n(req.n)
        # stream is always explicit: Ollama streams when it is absent
        body: dict[str, Any] = {
            "model": call.upstream_model,
            "messages": _messages(req.messages),
            "stream": call.stream,
        }
        tools = _tools(req)
        if tools:
            body["tools"] = tools
        fmt = _format(req.response_format)
        if fmt is not None:
            body["format"] = fmt
        options = _options(req)
        if options:
            body["options"] = options
        return self._post("/api/chat", body, call.stream)

    def chat_result(self, call: ChatCall, body: bytes) -> Result:
        line = _decode_line(self.id, body)
        if line.error is not None:
            raise _upstream_error(self.id, line.error)
        m = line.message or _Message()
        calls = [_openai_tool_call(c, self._new_id) for c in m.tool_calls or ()]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": m.content or (None if calls else ""),
            "refusal": None,
        }
        if m.thinking:
            message["reasoning_content"] = m.thinking
        if calls:
            message["tool_calls"] = calls
        usage = line.usage()
        out = {
            "id": f"chatcmpl-{self._new_id()}",
            "object": "chat.completion",
            "created": int(self._clock()),
            "model": call.upstream_model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _finish_reason(line.done_reason, bool(calls)),
                }
            ],
            "usage": usage.to_openai(),
        }
        return Result(body=orjson.dumps(out), usage=usage)

    def chat_stream(self, call: ChatCall) -> OllamaChatStream:
        return OllamaChatStream(
            self.id,
            f"chatcmpl-{self._new_id()}",
            int(self._clock()),
            call.upstream_model,
            call.include_usage,
            self._new_id,
        )

    # -- legacy completions (fill-in-the-middle via suffix) --

    def completion_request(self, call: CompletionCall) -> UpstreamRequest:
        req = _request(call, CompletionRequest)
        _reject_n(req.n)
        if req.best_of not in (None, 1):
            raise bad_request("This provider (Ollama) does not support 'best_of'.", param="best_of")
        if req.echo:
            raise bad_request("This provider (Ollama) does not support 'echo'.", param="echo")
        body: dict[str, Any] = {
            "model": call.upstream_model,
            "prompt": _prompt(req.prompt),
            "stream": call.stream,
        }
        if req.suffix is not None:
            body["suffix"] = req.suffix
        options = _options(req)
        if options:
            body["options"] = options
        body["raw"] = False  # let Ollama apply the model's template (FIM needs it for suffix)
        return self._post("/api/generate", body, call.stream)

    def completion_result(self, call: CompletionCall, body: bytes) -> Result:
        line = _decode_line(self.id, body)
        if line.error is not None:
            raise _upstream_error(self.id, line.error)
        usage = line.usage()
        out = {
            "id": f"cmpl-{self._new_id()}",
            "object": "text_completion",
            "created": int(self._clock()),
            "model": call.upstream_model,
            "choices": [
                {
                    "text": line.response,
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": _finish_reason(line.done_reason, False),
                }
            ],
            "usage": usage.to_openai(),
        }
        return Result(body=orjson.dumps(out), usage=usage)

    def completion_stream(self, call: CompletionCall) -> OllamaGenerateStream:
        return OllamaGenerateStream(
            self.id,
            f"cmpl-{self._new_id()}",
            int(self._clock()),
            call.upstream_model,
            call.include_usage,
            self._new_id,
        )

    # -- embeddings --

    def embeddings_request(self, call: EmbeddingCall) -> UpstreamRequest:
        req = _request(call, EmbeddingRequest)
        body: dict[str, Any] = {"model": call.upstream_model, "input": _embedding_input(req.input)}
        if req.dimensions is not None:
            body["dimensions"] = req.dimensions
        return self._post("/api/embed", body)

    def embeddings_result(self, call: EmbeddingCall, body: bytes) -> Result:
        try:
            parsed = _embed_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise invalid_upstream_body(self.id, "an embeddings response", body) from None
        as_base64 = _request(call, EmbeddingRequest).encoding_format == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _float32_base64(vec) if as_base64 else vec}
            for i, vec in enumerate(parsed.embeddings)
        ]
        usage = Usage(prompt_tokens=parsed.prompt_eval_count, total_tokens=parsed.prompt_eval_count)
        out = {
            "object": "list",
            "data": data,
            "model": call.upstream_model,
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens},
        }
        return Result(body=orjson.dumps(out), usage=usage)

    # -- models and errors --

    def models_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", "/api/tags", list(self._auth))

    def models_result(self, body: bytes) -> list[ModelInfo]:
        try:
            tags = _tags_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise invalid_upstream_body(self.id, "a model list", body) from None
        models = []
        for item in tags.models:
            name = item.get("name") or item.get("model")
            if not isinstance(name, str):
                continue
            extra = {k: v for k, v in item.items() if k in ("size", "digest", "details", "modified_at")}
            models.append(ModelInfo(id=name, owned_by=self.id, created=_epoch(item.get("modified_at")), extra=extra))
        return models

    def error(self, status: int, headers: Headers, body: bytes) -> OmenError:
        err = normalise_error(self.id, status, body, headers)
        text = err.message.lower()
        if status == 404 and "model" in text and "not found" in text:
            err.code, err.param = "model_not_found", "model"
        return err


# ---- helpers -----------------------------------------------------------------------------------------


def _prompt(prompt: Any) -> str:
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        raise bad_request("This provider (Ollama) takes one prompt per request, not a list.", param="prompt")
    raise bad_request("This provider (Ollama) does not accept token-id prompts; send text.", param="prompt")


def _embedding_input(value: str | list[Any]) -> str | list[str]:
    if isinstance(value, str):
        return value
    if not value:
        raise bad_request("'input' must not be empty.", param="input")
    if all(isinstance(v, str) for v in value):
        return value
    raise bad_request("This provider (Ollama) does not accept token-id input for embeddings; send text.", param="input")


def _float32_base64(vector: list[float]) -> str:
    """What OpenAI returns for ``encoding_format: base64``: little-endian float32 bytes, base64."""
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


_EXCESS_DIGITS = re.compile(r"(\.\d{6})\d+")  # Go prints nanoseconds; fromisoformat takes microseconds


def _epoch(stamp: Any) -> int:
    if not isinstance(stamp, str):
        return 0
    try:
        return int(datetime.fromisoformat(_EXCESS_DIGITS.sub(r"\1", stamp)).timestamp())
    except ValueError:
        return 0


__all__ = ["DEFAULT_ENDPOINT", "OllamaChatStream", "OllamaGenerateStream", "OllamaProvider", "random_id"]
