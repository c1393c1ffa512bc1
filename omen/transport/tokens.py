"""Run-time credentials (GigaChat's OAuth token): cached per provider, refreshed shortly before they
expire, with one refresh in flight at a time so a burst of requests does not stampede the token
endpoint. The exchange itself is the provider's sans-IO :class:`~omen.providers.base.TokenFlow`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio

from omen.providers.base import Token

# Refresh this long before expiry (capped at a tenth of the token's lifetime for short-lived ones), so a
# token never expires between being read here and arriving upstream.
REFRESH_MARGIN = 60.0

Fetch = Callable[[], Awaitable[Token]]


class TokenCache:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[str, tuple[Token, float]] = {}  # provider id -> (token, refresh at)
        self._locks: dict[str, trio.Lock] = {}
        self._attempts: dict[str, int] = {}  # exchanges finished (or abandoned) per provider
        self._failures: dict[str, Exception] = {}  # the error of the latest exchange, if it failed
        self.refreshes = 0  # token exchanges made (tests and metrics)

    def _fresh(self, provider_id: str) -> str | None:
        entry = self._tokens.get(provider_id)
        if entry is not None and self._clock() < entry[1]:
            return entry[0].value
        return None

    async def get(self, provider_id: str, fetch: Fetch) -> str:
        """The cached token, or one from ``fetch()`` (the provider's token exchange) when it is due."""
        value = self._fresh(provider_id)
        if value is not None:
            return value
        lock = self._locks.setdefault(provider_id, trio.Lock())
        seen = self._attempts.get(provider_id, 0)
        async with lock:
            value = self._fresh(provider_id)  # refreshed by the task that held the lock before us
            if value is not None:
                return value
            failure = self._failures.get(provider_id)
            if failure is not None and self._attempts.get(provider_id, 0) != seen:
                # The exchange that ran while we waited failed: share its error rather than queue one
                # more attempt each (a burst against a dead token endpoint would wait N timeouts).
                raise failure
            self._failures.pop(provider_id, None)
            now = self._clock()
            try:
                token = await fetch()
            except Exception as exc:
                self._failures[provider_id] = exc
                raise
            finally:  # Cancelled too: waiters then try themselves (no failure recorded)
                self._attempts[provider_id] = self._attempts.get(provider_id, 0) + 1
            self.refreshes += 1
            lifetime = max(token.expires_at - now, 0.0)
            self._tokens[provider_id] = (token, token.expires_at - min(REFRESH_MARGIN, lifetime / 10))
            return token.value

    def invalidate(self, provider_id: str, value: str) -> None:
        """The upstream refused ``value`` (revoked early): the next request fetches a new one."""
        entry = self._tokens.get(provider_id)
        if entry is not None and entry[0].value == value:
            del self._tokens[provider_id]
