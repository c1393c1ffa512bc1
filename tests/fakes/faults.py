"""Fault injection and each provider's error body shape.

A :class:`Fault` describes how the fake misbehaves for the next matching requests. The error bodies
follow providers.md: OpenAI ``{"error":{message,type,param,code}}``, xAI ``{"code","error"}``,
Azure ``{"error":{"code":"429","message"}}`` for throttling/auth, Ollama ``{"error":"..."}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .common import ApiError

_OPENAI: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request (fake upstream fault).", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("Country, region, or territory not supported", "request_forbidden", "unsupported_country_region_territory"),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
    408: ("Request timed out.", "timeout", None),
    409: ("Conflict.", "invalid_request_error", None),
    422: ("Unprocessable entity.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 7s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}

_XAI_CODES = {
    400: "Client specified an invalid argument",
    401: "Request had invalid authentication credentials",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
    409: "The operation was aborted",
    429: "Some resource has been exhausted",
    500: "Internal error",
    503: "The service is currently unavailable",
    504: "Deadline expired before operation could complete",
}

_OLLAMA = {
    400: "invalid request",
    401: "unauthorized",
    403: "forbidden",
    429: "too many requests",
    500: "an error was encountered while running the model: unexpected EOF",
    502: "upstream error",
    503: "server busy, please try again.  maximum pending requests exceeded",
}

AZURE_401 = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)
AZURE_AD_401 = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect "
    "(https://cognitiveservices.azure.com), or have expired."
)

MID_STREAM_MESSAGE = "The server had an error while processing your request. Sorry about that!"


@dataclass
class Fault:
    """How the fake misbehaves. Fields combine in this order per request:

    ``delay_headers`` -> ``reset_before_headers`` -> ``status`` (error reply) -> normal reply paced by
    ``chunk_delay`` and cut by ``stall_after_chunks`` / ``break_after_chunks`` / ``mid_stream_error``.
    Chunk counts are body pieces on the wire: SSE events (Azure's prompt-filter event and the role
    event included) or NDJSON lines; a non-streamed body is one piece.
    """

    status: int | None = None
    """Reply with this HTTP status and an error body in the kind's shape."""
    message: str | None = None
    """Message for the default error body."""
    body: Any = None
    """Exact error body instead of the default (dict/list -> JSON, str/bytes sent as is)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers (applied to error replies and streams alike)."""
    retry_after: float | str | None = None
    """Sets ``retry-after`` (seconds) on the reply."""
    reset_before_headers: bool = False
    """Close the TCP connection after reading the request, without answering."""
    rst: bool = False
    """With reset/break: abort with a TCP RST (SO_LINGER 0) instead of a FIN."""
    delay_headers: float = 0.0
    """Seconds of silence before the status line (first-byte timeout tests)."""
    stall_after_chunks: int | None = None
    """Send N body pieces, then go silent with the connection open (idle timeout tests)."""
    break_after_chunks: int | None = None
    """Send N body pieces, then close the connection (no ``[DONE]`` / ``done:true`` / last chunk)."""
    chunk_delay: float | None = None
    """Seconds between stream pieces (overrides the server's ``chunk_delay`` option)."""
    mid_stream_error: bool | str | dict[str, Any] | None = None
    """After ``error_after_chunks`` pieces send an error event (str = message, dict = exact JSON),
    then end the stream without ``[DONE]`` / ``done:true``. Streams only."""
    error_after_chunks: int = 2
    finish_reason: str | None = None
    """Override the finish reason (``content_filter``, ``length``...; Ollama's ``done_reason``)."""
    path: str | None = None
    """Only requests whose path contains this string are affected."""
    times: int | None = None
    """Expire after this many affected requests (``None`` = until replaced)."""

    def matches(self, path: str) -> bool:
        return self.path is None or self.path in path

    def copy(self, **changes: Any) -> Fault:
        return replace(self, **changes)

    @classmethod
    def rate_limited(cls, retry_after: float | str = 7, **kw: Any) -> Fault:
        """429 with ``retry-after`` in the kind's shape (Azure: its string ``"429"`` code body)."""
        return cls(status=429, retry_after=retry_after, **kw)

    @classmethod
    def azure_content_filter(cls, **kw: Any) -> Fault:
        """Azure's prompt-filter 400 (``code: content_filter`` with ``innererror``)."""
        body = {
            "error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                "management policy. Please modify your prompt and retry.",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": {
                        "hate": {"filtered": False, "severity": "safe"},
                        "self_harm": {"filtered": False, "severity": "safe"},
                        "sexual": {"filtered": False, "severity": "safe"},
                        "violence": {"filtered": True, "severity": "medium"},
                    },
                },
            }
        }
        return cls(status=400, body=body, **kw)


def retry_after_value(value: float | str | None, default: str = "7") -> str:
    """Header text for a retry delay (``7.0`` -> ``"7"``)."""
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def error_body(kind: str, err: ApiError, *, model: str | None = None, api_version: str | None = None) -> Any:
    """Render ``err`` in the provider's error shape (explicit ``err.body`` wins)."""
    if err.body is not None:
        return err.body
    status = err.status
    if kind == "ollama":
        if err.message:
            return {"error": err.message}
        if status == 404:
            return {"error": f"model '{model or 'unknown'}' not found"}
        return {"error": _OLLAMA.get(status, "internal error" if status >= 500 else "invalid request")}
    if kind == "xai":
        code = err.code or _XAI_CODES.get(status, "Internal error" if status >= 500 else "Unknown error")
        return {"code": code, "error": err.message or f"{code} (fake upstream fault)"}
    if kind == "azure" and status in (401, 404, 429) and err.type is None:
        if status == 429:
            retry = retry_after_value(err.headers.get("retry-after"))
            message = err.message or (
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                f"{api_version or '2024-10-21'} have exceeded token rate limit of your current OpenAI S0 "
                f"pricing tier. Please retry after {retry} seconds. Please go here: https://aka.ms/oai/quotaincrease "
                "if you would like to further increase the default rate limit."
            )
            return {"error": {"code": "429", "message": message}}
        if status == 401:
            return {"error": {"code": err.code or "401", "message": err.message or AZURE_401}}
        return {"error": {"code": err.code or "404", "message": err.message or "Resource not found"}}
    default_msg, default_type, default_code = _OPENAI.get(
        status,
        ("Internal error.", "server_error", None) if status >= 500 else ("Bad request.", "invalid_request_error", None),
    )
    return {
        "error": {
            "message": err.message or default_msg,
            "type": err.type or default_type,
            "param": err.param,
            # Handler errors set ``type`` and mean their ``code`` literally; faults take the defaults.
            "code": err.code if err.type is not None or err.code is not None else default_code,
        }
    }


def fault_error(fault: Fault) -> ApiError:
    """The ApiError a status fault stands for."""
    assert fault.status is not None
    headers = dict(fault.headers)
    if fault.retry_after is not None:
        headers["retry-after"] = retry_after_value(fault.retry_after)
    return ApiError(fault.status, fault.message, body=fault.body, headers=headers)


def mid_stream_error_obj(kind: str, spec: bool | str | dict[str, Any]) -> Any:
    """The JSON of a mid-stream error event in the kind's shape."""
    if isinstance(spec, dict):
        return spec
    message = spec if isinstance(spec, str) else MID_STREAM_MESSAGE
    if kind == "ollama":
        return {"error": message}
    if kind == "xai":
        return {"code": "Internal error", "error": message}
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
