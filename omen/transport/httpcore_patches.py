"""Patches to httpcore that OMEN relies on, carried in one module (candidates for upstreaming).

httpcore 1.0.x closes an HTTP/2 response it stopped reading without telling the server: it never
sends RST_STREAM, so the upstream keeps generating (and billing) the rest of a cancelled completion
until flow control stalls it. With HTTP/1.1 the connection is closed instead, which the upstream sees.
:func:`apply` makes an early close of an h2 response send RST_STREAM(CANCEL) first.
"""

from __future__ import annotations

from typing import Any

import h2.errors
from httpcore._async.http2 import HTTP2ConnectionByteStream

_applied = False


def apply() -> None:
    """Idempotent; called once when the upstream pool is created."""
    global _applied
    if _applied:
        return
    original = HTTP2ConnectionByteStream.aclose

    async def aclose(self: Any) -> None:
        if not self._closed:
            await _cancel_open_stream(self._connection, self._request, self._stream_id)
        await original(self)

    HTTP2ConnectionByteStream.aclose = aclose  # type: ignore[method-assign]
    _applied = True


async def _cancel_open_stream(connection: Any, request: Any, stream_id: int) -> None:
    state = connection._h2_state
    stream = state.streams.get(stream_id)
    if stream is None or stream.closed:
        return  # finished normally (or already reset): nothing to cancel
    try:
        state.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
        await connection._write_outgoing_data(request)
    except Exception:
        # The connection is already broken; httpcore's own close handles the rest.
        pass
