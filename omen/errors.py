"""One error type for every failure OMEN reports, rendered in OpenAI's error shape.

OpenAI SDKs branch on the HTTP status and read ``{"error": {"message", "type", "param", "code"}}``;
every layer raises :class:`OmenError` and the server renders it once.
"""

from __future__ import annotations

import orjson


class OmenError(Exception):
    """A failure with the HTTP status and OpenAI error fields that describe it to the client."""

    __slots__ = ("code", "headers", "message", "param", "status", "type")

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_json(self) -> bytes:
        return orjson.dumps(self.body())

    def __repr__(self) -> str:
        return f"OmenError({self.status}, {self.message!r}, type={self.type!r}, code={self.code!r})"


# Constructors for the errors raised in more than one place, so status/type/code stay consistent.


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> OmenError:
    return OmenError(400, message, type="invalid_request_error", param=param, code=code)


def model_not_found(model: str) -> OmenError:
    return OmenError(
        404,
        f"The model '{model}' does not exist or is not configured on this gateway. "
        "GET /v1/models lists the models you can use.",
        type="invalid_request_error",
        code="model_not_found",
        param="model",
    )


def upstream_unreachable(provider: str, detail: str) -> OmenError:
    return OmenError(
        502, f"Upstream provider '{provider}' is unreachable: {detail}", type="server_error", code="upstream_error"
    )


def upstream_timeout(provider: str, phase: str, seconds: float) -> OmenError:
    return OmenError(
        504,
        f"Upstream provider '{provider}' timed out ({phase} timeout of {seconds:g}s)",
        type="server_error",
        code="upstream_timeout",
    )
