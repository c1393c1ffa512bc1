"""Small ASGI helpers shared by the handlers: reading a bounded body, sending JSON and SSE."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from omen.errors import OmenError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

JSON_CT = (b"content-type", b"application/json")
SSE_HEADERS: RawHeaders = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # ask reverse proxies (nginx) not to buffer the stream
]


class ClientDisconnected(Exception):
    pass


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing with 413 as soon as it is known to exceed ``limit``."""
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        body = message.get("body", b"")
        if body:
            size += len(body)
            if size > limit:
                raise _too_large(limit)
            chunks.append(body)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> OmenError:
    return OmenError(
        413,
        f"Request body too large: the limit is {limit} bytes.",
        type="invalid_request_error",
        code="request_too_large",
    )


async def send_response(send: Send, status: int, body: bytes, headers: RawHeaders) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def watch_disconnect(receive: Receive, scope: trio.CancelScope, ending: Callable[[], bool]) -> None:
    """Cancel ``scope`` when the client goes away (after the body was read, receive() only returns
    ``http.disconnect``), so the upstream call is cancelled with it. Hypercorn also reports the
    disconnect while the last body message is being sent; ``ending()`` says that is the normal end."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not ending():
                scope.cancel()
            return
