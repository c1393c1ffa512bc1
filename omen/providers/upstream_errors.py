"""Upstream error bodies, in every shape providers send them (OpenAI, Azure, xAI, Ollama, vLLM,
FastAPI), normalised into the OpenAI error OMEN returns. Shared by every adapter."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from omen.errors import OmenError
from omen.providers.base import Headers


class UpstreamError(OmenError):
    """An OmenError that carries extra keys of the upstream's error object (Azure's ``innererror``)
    so clients that read them still find them; OmenError itself renders only the four standard keys."""

    __slots__ = ("extra",)

    def __init__(self, status: int, message: str, *, extra: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(status, message, **kw)
        self.extra = extra or {}

    def body(self) -> dict:
        out = super().body()
        if self.extra:
            out["error"].update(self.extra)
        return out


_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    408: "timeout",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_KEEP_EXTRA = ("innererror",)
_RETRY_HEADERS = ("retry-after", "retry-after-ms")
_SNIPPET = 200


def default_error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return _TYPE_BY_STATUS.get(status, "invalid_request_error")


# ---- the gateway's own credentials never leave in an error ----------------------------------------
#
# Upstream error texts are relayed to clients and written to the access log, and some upstreams (proxies,
# self-hosted servers, AWS signature errors) quote the request's credentials back. Every provider's
# credentials are registered here when it is built (registry.create_provider) and masked in every error
# built below - before a body is cut to a snippet, so a key straddling the cut cannot leak in part.

_SECRETS: dict[str, tuple[str, ...]] = {}
MIN_SECRET = 6  # shorter values would mask ordinary words; no real credential is that short


def register_secrets(provider: str, values: Iterable[str | None]) -> None:
    """Remember credential values of ``provider`` that its errors must never quote."""
    found = set(_SECRETS.get(provider, ()))
    for value in values:
        value = (value or "").strip()
        if len(value) >= MIN_SECRET:
            found.add(value)
            if "/" in value:
                found.add(value.replace("/", "\\/"))  # as JSON encoders that escape '/' write it
    if found:
        _SECRETS[provider] = tuple(sorted(found, key=len, reverse=True))


def redact(provider: str, text: str) -> str:
    """``text`` with every registered credential of ``provider`` replaced by ``***``."""
    for secret in _SECRETS.get(provider, ()):
        if secret in text:
            text = text.replace(secret, "***")
    return text


def redact_body(provider: str, body: bytes) -> bytes:
    if provider not in _SECRETS:
        return body
    return redact(provider, body.decode("utf-8", "replace")).encode()


def _redact_value(provider: str, value: Any) -> Any:
    if isinstance(value, str):
        return redact(provider, value)
    if isinstance(value, dict):
        return {k: _redact_value(provider, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(provider, v) for v in value]
    return value


def snippet(body: bytes, limit: int = _SNIPPET) -> str:
    """A one-line, bounded excerpt of a body for error messages."""
    text = " ".join(body[: limit * 4].decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[:limit] + "…"


def error_fields(obj: Any) -> dict[str, Any] | None:
    """Find the error object in the shapes compatible servers use."""
    if not isinstance(obj, dict):
        return None
    err = obj.get("error")
    if isinstance(err, dict):
        return err  # OpenAI / Azure / vLLM (new)
    if isinstance(err, str):
        # xAI {"code","error"} and Ollama {"error"}: the string is the message
        return {"message": err, "code": obj.get("code"), "type": obj.get("type"), "param": obj.get("param")}
    if isinstance(obj.get("message"), str):
        return obj  # older vLLM / llama.cpp style: fields at top level
    detail = obj.get("detail")
    if detail is not None:
        return {"message": detail if isinstance(detail, str) else orjson.dumps(detail).decode()}
    return None


def _clean_code(code: Any) -> str | None:
    # OpenAI codes are identifiers ("rate_limit_exceeded"). Azure echoes the status ("429") and xAI puts
    # a sentence there ("Client specified an invalid argument"): neither helps a client, so drop them.
    if isinstance(code, str) and code and not code.isdigit() and not any(c.isspace() for c in code):
        return code
    return None


def status_hint(fields: dict[str, Any] | None, default: int) -> int:
    """The HTTP status an in-band error names (``status`` or a numeric ``code``), else ``default``."""
    if fields:
        for key in ("status", "code"):
            value = fields.get(key)
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
                return value
    return default


def normalise_error(
    provider: str, status: int, body: bytes, headers: Headers | None = None, *, fields: Any = None
) -> UpstreamError:
    """Upstream error (any of the shapes above, or not JSON at all) -> OpenAI error shape.

    The status is kept so OpenAI SDKs pick the right exception class and retry policy. ``fields`` may
    be passed when the caller already decoded the body.
    """
    body = redact_body(provider, body)
    if fields is None:
        try:
            fields = error_fields(orjson.loads(body)) if body.strip() else None
        except orjson.JSONDecodeError:
            fields = None
    message = fields.get("message") if fields else None
    if not isinstance(message, str) or not message:
        if not body.strip():
            message = f"Upstream provider '{provider}' returned HTTP {status} with an empty body."
        elif fields:
            message = f"Upstream provider '{provider}' returned HTTP {status}: {snippet(body)}"
        else:
            message = f"Upstream provider '{provider}' returned HTTP {status} (not JSON): {snippet(body)}"
    type_ = fields.get("type") if fields else None
    param = fields.get("param") if fields else None
    extra = {k: _redact_value(provider, fields[k]) for k in _KEEP_EXTRA if fields and fields.get(k) is not None}
    kept: dict[str, str] = {}
    if status in (429, 503) and headers:
        for name, value in headers:
            if name.lower() in _RETRY_HEADERS:
                kept[name.lower()] = value
    code = _clean_code(fields.get("code")) if fields else None
    if code is None and status == 429:
        code = "rate_limit_exceeded"
    return UpstreamError(
        status,
        redact(provider, message),
        type=type_ if isinstance(type_, str) and type_ else default_error_type(status),
        code=code,
        param=redact(provider, param) if isinstance(param, str) else None,
        headers=kept,
        extra=extra,
    )


def invalid_upstream_body(provider: str, what: str, body: bytes) -> OmenError:
    return OmenError(
        502,
        f"Upstream provider '{provider}' returned {what} that is not valid: {snippet(redact_body(provider, body))}",
        type="server_error",
        code="upstream_invalid_response",
    )
