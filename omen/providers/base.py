"""The sans-IO contract every provider adapter implements.

An adapter is a pure translator, built the way h11 is: it turns an OpenAI-format call into an
:class:`UpstreamRequest` (method, URL, headers, body bytes) and turns upstream bytes back into
OpenAI-format results or stream events. It never touches a socket, so tests feed it recorded bytes.
The transport (omen/transport) sends what it builds; the server encodes what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from omen.api.chat import ChatCompletionRequest
from omen.api.completions import CompletionRequest
from omen.api.embeddings import EmbeddingRequest
from omen.errors import OmenError

Headers = list[tuple[str, str]]


@dataclass(slots=True, frozen=True)
class UpstreamRequest:
    """What to send. ``path`` (with any query string) is appended to one of ``Provider.endpoints()``;
    the transport picks the endpoint, so a provider with several (Ollama) can fail over."""

    method: str
    path: str
    headers: Headers
    body: bytes | None = None
    stream: bool = False


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens") or 0
        completion = usage.get("completion_tokens") or 0
        ptd = usage.get("prompt_tokens_details") or {}
        ctd = usage.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=usage.get("total_tokens") or prompt + completion,
            cached_tokens=(ptd.get("cached_tokens") or 0) if isinstance(ptd, dict) else 0,
            reasoning_tokens=(ctd.get("reasoning_tokens") or 0) if isinstance(ctd, dict) else 0,
        )

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out


# ---- the call an adapter translates ----------------------------------------------------------------


@dataclass(slots=True)
class Call:
    """One inbound OpenAI-format call, already validated, with its routing decision.

    ``raw`` is the client's body exactly as received: OpenAI-compatible adapters forward it (with only
    the model swapped when needed) so fields OMEN does not interpret pass through untouched.
    """

    raw: bytes
    upstream_model: str
    public_model: str
    stream: bool = False
    include_usage: bool = False  # the client asked for the usage chunk (stream_options.include_usage)
    request_id: str = ""


@dataclass(slots=True)
class ChatCall(Call):
    request: ChatCompletionRequest | None = None


@dataclass(slots=True)
class CompletionCall(Call):
    request: CompletionRequest | None = None


@dataclass(slots=True)
class EmbeddingCall(Call):
    request: EmbeddingRequest | None = None


# ---- what comes back -------------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    """A complete (non-streamed) OpenAI-format response body plus what accounting needs."""

    body: bytes
    usage: Usage | None = None
    headers: Headers = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class Chunk:
    """One OpenAI-format SSE ``data:`` payload (JSON bytes, without the ``data: `` framing)."""

    data: bytes


@dataclass(slots=True, frozen=True)
class StreamUsage:
    """Token usage observed in the stream (sent to the client only if it was part of a Chunk)."""

    usage: Usage


@dataclass(slots=True, frozen=True)
class StreamError:
    """The upstream reported an error mid-stream, or the stream broke; ends the stream."""

    error: OmenError


@dataclass(slots=True, frozen=True)
class StreamEnd:
    """The upstream finished the stream normally."""


StreamEvent = Chunk | StreamUsage | StreamError | StreamEnd


class StreamTranslator(Protocol):
    """Upstream stream bytes in, OpenAI events out. Any split of the bytes gives the same events."""

    def feed(self, data: bytes) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]:
        """End of upstream bytes. Returns a StreamError if the stream had not finished properly."""
        ...


# ---- credentials obtained at run time ----------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Token:
    value: str
    expires_at: float  # wall-clock seconds (time.time()) after which the upstream refuses it


class TokenFlow(Protocol):
    """A sans-IO credential exchange (GigaChat's OAuth). The transport sends :meth:`token_request` to
    :meth:`token_endpoint`, turns the answer into a :class:`Token` with :meth:`token_result`, caches it
    per provider, refreshes it shortly before it expires (one refresh in flight at a time) and passes
    its value to ``Provider.authorize``."""

    def token_endpoint(self) -> str:
        """Base URL the token request's ``path`` is appended to (may be another host than the API)."""
        ...

    def token_request(self) -> UpstreamRequest: ...

    def token_result(self, status: int, headers: Headers, body: bytes, now: float) -> Token:
        """Raise OmenError (naming the provider) when the exchange failed."""
        ...


@dataclass(slots=True)
class ModelInfo:
    id: str
    owned_by: str
    created: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    """One configured provider (e.g. ``[providers.openai]``): a translator for each operation.

    Optional members, looked up with ``getattr`` by the layers that use them:

    * ``token_flow: TokenFlow`` — the provider needs a token obtained at run time (GigaChat);
    * ``authorize(request, url, token) -> Headers`` — headers added once the endpoint is chosen, from
      the final URL and body (Bedrock's SigV4 signature) and/or the cached token (GigaChat's Bearer);
    * ``inline_images: bool`` — the upstream cannot fetch image URLs itself, so the pipeline fetches
      http(s) images (with SSRF checks) and hands the translator ``data:`` URIs only.
    """

    id: str
    type: str

    def chat_request(self, call: ChatCall) -> UpstreamRequest: ...
    def chat_result(self, call: ChatCall, body: bytes) -> Result: ...
    def chat_stream(self, call: ChatCall) -> StreamTranslator: ...

    def completion_request(self, call: CompletionCall) -> UpstreamRequest: ...
    def completion_result(self, call: CompletionCall, body: bytes) -> Result: ...
    def completion_stream(self, call: CompletionCall) -> StreamTranslator: ...

    def embeddings_request(self, call: EmbeddingCall) -> UpstreamRequest: ...
    def embeddings_result(self, call: EmbeddingCall, body: bytes) -> Result: ...

    def models_request(self) -> UpstreamRequest | None: ...
    def models_result(self, body: bytes) -> list[ModelInfo]: ...

    def error(self, status: int, headers: Headers, body: bytes) -> OmenError:
        """Translate an upstream non-2xx answer into the OpenAI-shaped error OMEN returns."""
        ...

    def endpoints(self) -> list[str]:
        """Base URLs this provider sends to (one pooled client each); several for Ollama."""
        ...
