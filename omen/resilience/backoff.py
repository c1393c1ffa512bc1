"""Which failures are worth another attempt, how long the upstream asked us to wait, and how long to
back off between attempts (exponential with full jitter).

Retryable: the statuses providers use for "try again" (408 timeout, 409 conflict/lock, 429 rate
limit, 500-504 server trouble, 529 Anthropic's "overloaded"), and OMEN's own errors for an upstream
that could not be reached or did not answer before its first-byte deadline. Whether bytes already
reached the client (after which nothing may be retried) is the caller's to know, not this module's.
"""

from __future__ import annotations

import email.utils
import math
import random
import time

from omen.errors import OmenError

RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 409, 429, 500, 501, 502, 503, 504, 529})
# OmenError codes of failures before any response arrived (omen/errors.py upstream_unreachable and
# upstream_timeout): the request may not have been processed, so another attempt is safe.
RETRYABLE_CODES: frozenset[str] = frozenset({"upstream_error", "upstream_timeout"})
# Longest wait honoured from a Retry-After header; a provider asking for an hour is "not now", and the
# request's deadline caps it again in the executor.
MAX_RETRY_AFTER_S = 3600.0


def is_retryable(error: OmenError) -> bool:
    """True when another attempt (here or on another deployment) may succeed."""
    return error.status in RETRYABLE_STATUSES or error.code in RETRYABLE_CODES


def _header(headers: dict[str, str], name: str) -> str | None:
    # Upstream errors keep headers lower-cased (providers/upstream_errors.py); OMEN's own use
    # "Retry-After". Accept any case.
    value = headers.get(name)
    if value is not None:
        return value
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def retry_after_s(error: OmenError, now: float | None = None) -> float | None:
    """Seconds the upstream asked to wait, from ``retry-after-ms`` (OpenAI's, more precise) or
    ``Retry-After`` (delay-seconds or an HTTP date, RFC 9110 10.2.3); None when absent or unreadable.

    ``now`` (Unix time) is for HTTP dates; the default is ``time.time()``. Never negative, at most
    ``MAX_RETRY_AFTER_S``.
    """
    headers = error.headers or {}
    ms = _header(headers, "retry-after-ms")
    if ms is not None and (value := _number(ms)) is not None:
        return min(max(value / 1000.0, 0.0), MAX_RETRY_AFTER_S)
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    if (value := _number(raw)) is not None:
        return min(max(value, 0.0), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less date is read as such
        return None
    wait = when.timestamp() - (time.time() if now is None else now)
    return min(max(wait, 0.0), MAX_RETRY_AFTER_S)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"): a uniform draw from
    ``[0, min(cap, base * 2**attempt)]``. ``attempt`` counts retries from 0 (the first retry).

    Full jitter spreads the retries of many clients that failed together, so they do not return in
    step and knock the recovering provider over again.
    """
    if base <= 0 or cap <= 0:
        return 0.0
    attempt = max(attempt, 0)
    # 2**attempt overflows float for large attempts; past the cap the exponent no longer matters.
    ceiling = cap if attempt >= 64 else min(cap, base * (2.0**attempt))
    return rng.uniform(0.0, ceiling)
