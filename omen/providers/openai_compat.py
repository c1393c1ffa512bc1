"""Adapter for upstreams that already speak OpenAI's format: OpenAI itself and any compatible server.

This is the hot path, so it translates as little as possible. The client's body bytes are forwarded
unchanged unless the model name or the usage request must change; responses and stream payloads are
relayed as the upstream sent them, and only payloads that can carry usage or an error are decoded.
Azure and xAI subclass it and override the few hooks marked below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec
import orjson

from omen.api.chat import ROUTING_FIELDS
from omen.config.schema import ProviderConfig
from omen.errors import OmenError, bad_request
from omen.providers.base import (
    Call,
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
from omen.providers.upstream_errors import error_fields, invalid_upstream_body, normalise_error, status_hint
from omen.streaming.sse import SSEDecoder, SSEEvent

# ---- cheap probes (decode only what is needed) -------------------------------------------------------


class _ModelProbe(msgspec.Struct):
    model: Any = None


class _UsageProbe(msgspec.Struct):
    usage: Any = None
    # Raw: whether choices is empty is all we need; its items are never decoded
    choices: list[msgspec.Raw] | None = None


_model_probe = msgspec.json.Decoder(_ModelProbe)
_usage_probe = msgspec.json.Decoder(_UsageProbe)
_EMPTY_PROBE = _UsageProbe(choices=[msgspec.Raw(b"{}")])  # "not a usage chunk": relay it untouched


def probe_usage(data: bytes) -> _UsageProbe:
    """Decode only ``usage`` and the length of ``choices``. A payload that is not a JSON object is
    relayed as the upstream sent it: judging it is the client's business, not the accountant's."""
    try:
        return _usage_probe.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _EMPTY_PROBE


def has_usage_object(data: bytes) -> bool:
    """True if ``data`` contains ``"usage":`` followed by an object (not null).

    A byte search, so chunks without usage (nearly all of them) are never decoded. Quotes inside JSON
    strings are escaped, so ``"usage"`` can only match a key or a whole string value.
    """
    start = data.find(b'"usage"')
    while start >= 0:
        i = start + 7
        n = len(data)
        while i < n and data[i] in b" \t\r\n":
            i += 1
        if i < n and data[i] == 58:  # ':'
            i += 1
            while i < n and data[i] in b" \t\r\n":
                i += 1
            if i < n and data[i] == 123:  # '{'
                return True
        start = data.find(b'"usage"', start + 7)
    return False


def usage_of_body(
    provider: str, body: bytes, convert: Callable[[Any], Usage | None] = Usage.from_openai
) -> Usage | None:
    try:
        return convert(_usage_probe.decode(body).usage)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise invalid_upstream_body(provider, "a response body", body) from None


# ---- stream ------------------------------------------------------------------------------------------


class OpenAIStream:
    """SSE from an OpenAI-format upstream -> Chunk events carrying the upstream payload bytes as is.

    Usage is reported once, as one StreamUsage just before StreamEnd/StreamError, from the latest
    usage seen: some compatible servers repeat a cumulative usage on many chunks, and the accountant
    must not count it twice.

    Hooks for subclasses: ``_chunk`` (one JSON payload), ``_usage`` (upstream usage -> Usage) and
    ``_before_finish`` (last chance to emit buffered events before StreamEnd/StreamError).
    """

    def __init__(self, provider: str, include_usage: bool, usage_injected: bool = False) -> None:
        self.provider = provider
        self.include_usage = include_usage
        # OMEN asked the upstream for usage on the client's behalf: with include_usage set, OpenAI adds
        # "usage":null to every chunk, which the client would not have seen; it is removed again.
        self.usage_injected = usage_injected
        self._sse = SSEDecoder()
        self._finished = False
        self._latest_usage: Usage | None = None

    def feed(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self._finished:
            for event in self._sse.feed(data):
                self._event(event, out)
                if self._finished:
                    break
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._finished:
            return out
        pending = self._sse.pending
        for event in self._sse.close():
            self._event(event, out)
        if not self._finished:
            detail = " in the middle of an event" if pending else ""
            self._fail(
                OmenError(
                    502,
                    f"Upstream provider '{self.provider}' ended the stream early{detail} (no [DONE]).",
                    type="server_error",
                    code="upstream_stream_truncated",
                ),
                out,
            )
        return out

    def _event(self, event: SSEEvent, out: list[StreamEvent]) -> None:
        data = event.data
        if event.event == "error":  # some compatible servers name their error events
            self._error_payload(data, out, forced=True)
            return
        if data[:1] != b"{":
            data = data.strip()
            if data == b"[DONE]":
                self._before_finish(out)
                self._finished = True
                out.append(_END)
                return
            if not data:
                return  # keep-alive
        if b'"error"' in data and self._error_payload(data, out):
            return
        self._chunk(data, out)

    def _error_payload(self, data: bytes, out: list[StreamEvent], forced: bool = False) -> bool:
        """Turn a payload with a top-level ``error`` key into StreamError; False if it was not one."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = None
        if not forced and not (isinstance(obj, dict) and obj.get("error") is not None):
            return False  # "error" appeared somewhere else, e.g. inside the content
        fields = error_fields(obj)
        self._fail(normalise_error(self.provider, status_hint(fields, 502), data, fields=fields), out)
        return True

    def _fail(self, error: OmenError, out: list[StreamEvent]) -> None:
        self._before_finish(out)
        self._finished = True
        out.append(StreamError(error))

    def _chunk(self, data: bytes, out: list[StreamEvent]) -> None:
        if not has_usage_object(data):
            if self.usage_injected:
                # Safe as a byte edit: inside a JSON string the quotes would be escaped.
                data = data.replace(b',"usage":null', b"")
            out.append(Chunk(data))
            return
        probe = probe_usage(data)
        # A usage chunk without choices is the one stream_options.include_usage adds; if the client did
        # not ask for it, OMEN did, so the client must not see it.
        if probe.choices or self.include_usage:
            out.append(Chunk(data))
        usage = self._usage(probe.usage)
        if usage is not None:
            self._latest_usage = usage

    def _usage(self, usage: Any) -> Usage | None:
        return Usage.from_openai(usage)

    def _before_finish(self, out: list[StreamEvent]) -> None:
        if self._latest_usage is not None:
            out.append(StreamUsage(self._latest_usage))
            self._latest_usage = None


_END = StreamEnd()


# ---- provider ----------------------------------------------------------------------------------------


class OpenAIProvider:
    """``type = "openai"``: api.openai.com (or ``base_url``), Bearer auth, optional org/project."""

    type: ClassVar[str] = "openai"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    stream_class: ClassVar[type[OpenAIStream]] = OpenAIStream

    def __init__(self, provider_id: str, config: ProviderConfig) -> None:
        self.id = provider_id
        self.config = config
        self._base = self._base_url()
        self._auth = _merge_headers(self._auth_headers(), list(config.headers.items()))
        self._post_headers = [("Content-Type", "application/json"), *self._auth]

    # -- hooks for subclasses --

    def _base_url(self) -> str:
        base = self.config.base_url or self.default_base_url
        if not base:
            raise ValueError(f"provider '{self.id}' (type {self.type}): base_url is required")
        return base.rstrip("/")

    def _auth_headers(self) -> Headers:
        cfg = self.config
        headers: Headers = []
        if cfg.api_key:
            headers.append(("Authorization", f"Bearer {cfg.api_key}"))
        if cfg.organization:
            headers.append(("OpenAI-Organization", cfg.organization))
        if cfg.project:
            headers.append(("OpenAI-Project", cfg.project))
        return headers

    def _path(self, operation: str, model: str) -> str:
        """``operation`` is ``chat/completions``, ``completions`` or ``embeddings``."""
        return "/" + operation

    # -- Provider --

    def endpoints(self) -> list[str]:
        return [self._base]

    def chat_request(self, call: ChatCall) -> UpstreamRequest:
        return self._post("chat/completions", call)

    def chat_result(self, call: ChatCall, body: bytes) -> Result:
        return self._result(body)

    def chat_stream(self, call: ChatCall) -> OpenAIStream:
        return self.stream_class(self.id, call.include_usage, self._injects_usage(call))

    def completion_request(self, call: CompletionCall) -> UpstreamRequest:
        return self._post("completions", call)

    def completion_result(self, call: CompletionCall, body: bytes) -> Result:
        return self._result(body)

    def completion_stream(self, call: CompletionCall) -> OpenAIStream:
        return self.stream_class(self.id, call.include_usage, self._injects_usage(call))

    def embeddings_request(self, call: EmbeddingCall) -> UpstreamRequest:
        return self._post("embeddings", call)

    def embeddings_result(self, call: EmbeddingCall, body: bytes) -> Result:
        return self._result(body)

    def models_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", "/models", list(self._auth))

    def models_result(self, body: bytes) -> list[ModelInfo]:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise invalid_upstream_body(self.id, "a model list", body) from None
        data = obj.get("data") if isinstance(obj, dict) else None
        if not isinstance(data, list):
            raise invalid_upstream_body(self.id, "a model list", body)
        models = []
        for item in data:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            created = item.get("created")
            models.append(
                ModelInfo(
                    id=item["id"],
                    owned_by=str(item.get("owned_by") or self.id),
                    created=created if isinstance(created, int) else 0,
                    extra={k: v for k, v in item.items() if k not in ("id", "object", "owned_by", "created")},
                )
            )
        return models

    def error(self, status: int, headers: Headers, body: bytes) -> OmenError:
        return normalise_error(self.id, status, body, headers)

    # -- internals --

    def _injects_usage(self, call: Call) -> bool:
        return call.stream and not call.include_usage and self.config.stream_usage

    def _post(self, operation: str, call: Call) -> UpstreamRequest:
        model = call.upstream_model
        # a fresh header list per request: the transport may add to it
        headers = list(self._post_headers)
        return UpstreamRequest("POST", self._path(operation, model), headers, self._body(call), stream=call.stream)

    def _body(self, call: Call) -> bytes:
        """The client's bytes unchanged when possible; else decoded, patched and re-encoded."""
        inject_usage = self._injects_usage(call)
        strip = _has_routing_fields(call)
        if not inject_usage and not strip and _body_model(call) == call.upstream_model:
            return call.raw
        try:
            body = orjson.loads(call.raw)
        except orjson.JSONDecodeError:
            raise bad_request("The request body is not valid JSON.", code="invalid_json") from None
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        body["model"] = call.upstream_model
        if strip:  # OMEN's routing extensions (models, provider, tags) are not the upstream's business
            for name in ROUTING_FIELDS:
                body.pop(name, None)
        if inject_usage:
            options = body.get("stream_options")
            options = dict(options) if isinstance(options, dict) else {}
            options["include_usage"] = True
            body["stream_options"] = options
        return orjson.dumps(body)

    def _result(self, body: bytes) -> Result:
        return Result(body=body, usage=usage_of_body(self.id, body))


class OpenAICompatibleProvider(OpenAIProvider):
    """``type = "openai-compatible"``: vLLM, LM Studio, Groq, DeepSeek, OpenRouter...; base_url required,
    api_key optional."""

    type: ClassVar[str] = "openai-compatible"
    default_base_url: ClassVar[str | None] = None


def _has_routing_fields(call: Call) -> bool:
    request = getattr(call, "request", None)
    return request is not None and (
        getattr(request, "models", None) is not None
        or getattr(request, "provider", None) is not None
        or getattr(request, "tags", None) is not None
    )


def _body_model(call: Call) -> Any:
    request = getattr(call, "request", None)
    if request is not None:
        return request.model
    try:
        return _model_probe.decode(call.raw).model
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # let the re-encode path report the problem


def _merge_headers(base: Headers, extra: Headers) -> Headers:
    """``extra`` (from config) replaces same-named defaults, compared case-insensitively."""
    names = {name.lower() for name, _ in extra}
    return [(n, v) for n, v in base if n.lower() not in names] + list(extra)
