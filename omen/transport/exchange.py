"""One upstream exchange with per-phase deadlines as trio cancel scopes.

Phases: connect (httpx), first byte (request sent -> response headers), idle (gap between two body
chunks) and total (the whole exchange). A provider with several endpoints (Ollama) fails over to the
next endpoint when one cannot be reached before any response arrived.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import AsyncIterator

import httpx
import trio

from omen import __version__
from omen.config.schema import Timeouts
from omen.errors import OmenError, upstream_timeout, upstream_unreachable
from omen.providers.base import Provider, Token, TokenFlow, UpstreamRequest
from omen.transport.pool import UpstreamPool
from omen.transport.tokens import TokenCache

# Identity encoding: OMEN relays upstream bytes as they are, so they must not arrive compressed.
_DEFAULT_HEADERS = [("accept-encoding", "identity"), ("user-agent", f"omen/{__version__}")]
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failing before any response byte: the request may not have been processed, so the next endpoint
# may be tried. RemoteProtocolError covers "server closed the connection without a response".
_BEFORE_HEADERS_ERRORS = (*_CONNECT_ERRORS, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class UpstreamResponse:
    """An open upstream response. Read it with :meth:`read` or :meth:`chunks`; always :meth:`aclose`."""

    def __init__(self, provider: Provider, response: httpx.Response, timeouts: Timeouts, deadline: float) -> None:
        self.provider = provider
        self.status = response.status_code
        self.headers: list[tuple[str, str]] = response.headers.multi_items()
        self._response = response
        self._timeouts = timeouts
        self.deadline = deadline
        self._raw = response.aiter_raw()

    async def next_chunk(self) -> bytes | None:
        """The next body chunk, or None at the end. Raises OmenError on idle/total timeout or a break."""
        idle = self._timeouts.idle
        with trio.move_on_at(min(trio.current_time() + idle, self.deadline)) as scope:
            try:
                return await self._raw.__anext__()
            except StopAsyncIteration:
                return None
            except httpx.HTTPError as exc:
                raise OmenError(
                    502,
                    f"Upstream provider '{self.provider.id}' broke the connection mid-response: {type(exc).__name__}",
                    type="server_error",
                    code="upstream_error",
                ) from None
        assert scope.cancelled_caught
        if trio.current_time() >= self.deadline:
            raise upstream_timeout(self.provider.id, "total", self._timeouts.total)
        raise upstream_timeout(self.provider.id, "idle", idle)

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self.next_chunk()) is not None:
            yield chunk

    async def read(self) -> bytes:
        parts = []
        while (chunk := await self.next_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    async def aclose(self) -> None:
        # Shielded so a cancelled request (client gone) still closes the upstream connection
        # promptly instead of leaving it half-read; the upstream then sees the close.
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await self._response.aclose()


class Exchange:
    """Sends UpstreamRequests for one provider through the shared pool."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._rr: dict[str, itertools.count] = {}
        self.tokens = TokenCache()

    def _endpoint_order(self, provider: Provider) -> list[str]:
        endpoints = provider.endpoints()
        if len(endpoints) == 1:
            return endpoints
        start = next(self._rr.setdefault(provider.id, itertools.count())) % len(endpoints)
        return endpoints[start:] + endpoints[:start]

    async def open(self, provider: Provider, request: UpstreamRequest) -> UpstreamResponse:
        flow: TokenFlow | None = getattr(provider, "token_flow", None)
        if flow is None:
            return await self._open(provider, request, self._endpoint_order(provider), None)
        token = await self._token(provider, flow)
        response = await self._open(provider, request, self._endpoint_order(provider), token)
        if response.status != 401:
            return response
        # The token was revoked or expired early: drop it and try once more with a fresh one.
        await response.aclose()
        self.tokens.invalidate(provider.id, token)
        token = await self._token(provider, flow)
        return await self._open(provider, request, self._endpoint_order(provider), token)

    async def _token(self, provider: Provider, flow: TokenFlow) -> str:
        return await self.tokens.get(provider.id, lambda: self._fetch_token(provider, flow))

    async def _fetch_token(self, provider: Provider, flow: TokenFlow) -> Token:
        request = flow.token_request()
        response = await self._open(provider, request, [flow.token_endpoint()], None, authorize=False)
        try:
            body = await response.read()
        finally:
            await response.aclose()
        return flow.token_result(response.status, response.headers, body, time.time())

    async def _open(
        self,
        provider: Provider,
        request: UpstreamRequest,
        endpoints: list[str],
        token: str | None,
        *,
        authorize: bool = True,
    ) -> UpstreamResponse:
        timeouts: Timeouts = provider.config.timeouts
        now = trio.current_time()
        deadline = now + timeouts.total if timeouts.total > 0 else math.inf
        first_byte_deadline = min(now + timeouts.first_byte, deadline)
        last_error = "no endpoint configured"
        headers = [*request.headers, *_DEFAULT_HEADERS]
        sign = getattr(provider, "authorize", None) if authorize else None
        for endpoint in endpoints:
            upstream = self._pool.upstream(endpoint, provider.config)
            url = endpoint + request.path
            http_request = httpx.Request(
                request.method,
                url,
                headers=headers if sign is None else [*headers, *sign(request, url, token)],
                content=request.body,
                extensions={"timeout": upstream.timeouts},
            )
            with trio.move_on_at(first_byte_deadline):
                try:
                    response = await upstream.transport.handle_async_request(http_request)
                    response.request = http_request
                except _BEFORE_HEADERS_ERRORS as exc:
                    last_error = _describe(exc)
                    continue
                except httpx.HTTPError as exc:
                    raise upstream_unreachable(provider.id, _describe(exc)) from None
                return UpstreamResponse(provider, response, timeouts, deadline)
            if first_byte_deadline == deadline:
                raise upstream_timeout(provider.id, "total", timeouts.total)
            raise upstream_timeout(provider.id, "first byte", timeouts.first_byte)
        raise upstream_unreachable(provider.id, last_error)


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.LocalProtocolError):
        # h11's message quotes the offending header value, which may be a credential
        return "LocalProtocolError: the request could not be encoded (an invalid header or body)"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
