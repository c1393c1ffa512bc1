"""What the gateway learns about one request as it passes through, for headers and the access log."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from omen.providers.base import Usage

if TYPE_CHECKING:
    from omen.pipeline.output import OutputFormat

_SAFE_ID = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def request_id_from(value: bytes | None) -> str:
    """Honour a client's X-Request-ID when it is short and plain; otherwise make one."""
    if value and len(value) <= 128 and all(c in _SAFE_ID for c in value):
        return value.decode()
    return f"req_{secrets.token_hex(12)}"


@dataclass(slots=True)
class RequestContext:
    request_id: str
    method: str
    path: str
    started: float
    status: int = 0
    model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    stream: bool = False
    response_started: bool = False  # response headers sent: errors must now go in-stream
    response_ending: bool = False  # the last body message is being sent; a disconnect now is normal
    first_byte: float | None = None
    usage: Usage | None = None
    error: str | None = None
    output: OutputFormat | None = None  # the client API answers are written in; None = OpenAI's
    disconnect: Any = None  # hypercorn's DisconnectSignal (scope extension "omen.disconnect"), when present
    headers: Any = ()  # the request's ASGI headers (byte pairs), for routing hints and policies
    key_id: str | None = None  # the authenticated key ("master"), for policies
    deployment: str | None = None  # the deployment that served (or last failed) the request
    attempts: int = 0  # upstream requests sent for it (retries, fallbacks and hedges included)
    route_reason: str | None = None

    def mark_first_byte(self) -> None:
        if self.first_byte is None:
            self.first_byte = trio.current_time()

    def route_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"x-request-id", self.request_id.encode())]
        if self.provider:
            headers.append((b"x-omen-provider", self.provider.encode()))
        if self.upstream_model:
            headers.append((b"x-omen-upstream-model", self.upstream_model.encode()))
        if self.deployment is not None:
            headers.append((b"x-omen-deployment", header_value(self.deployment)))
            headers.append((b"x-omen-attempts", str(self.attempts).encode()))
        if self.route_reason is not None:
            headers.append((b"x-omen-route-reason", header_value(self.route_reason)))
        return headers

    def record(self) -> dict[str, Any]:
        now = trio.current_time()
        record: dict[str, Any] = {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "latency_ms": round((now - self.started) * 1000, 2),
        }
        if self.model is not None:
            record["model"] = self.model
            record["provider"] = self.provider
            record["upstream_model"] = self.upstream_model
            record["stream"] = self.stream
        if self.first_byte is not None:
            record["ttfb_ms"] = round((self.first_byte - self.started) * 1000, 2)
        if self.usage is not None:
            record["prompt_tokens"] = self.usage.prompt_tokens
            record["completion_tokens"] = self.usage.completion_tokens
            record["total_tokens"] = self.usage.prompt_tokens + self.usage.completion_tokens
        if self.deployment is not None:
            record["deployment"] = self.deployment
            record["attempts"] = self.attempts
        if self.route_reason is not None:
            record["route_reason"] = self.route_reason
        if self.error is not None:
            record["error"] = self.error
        return record


_HEADER_MAX = 512


def header_value(text: str) -> bytes:
    """``text`` as a header value: printable ASCII only (a routing reason can quote a prompt keyword in
    any script), bounded in length."""
    if len(text) <= _HEADER_MAX and text.isascii() and text.isprintable():
        return text.encode()
    data = text.encode("ascii", "replace")
    if len(data) > _HEADER_MAX:
        data = data[: _HEADER_MAX - 3] + b"..."
    return bytes(c if 32 <= c < 127 else 63 for c in data)
