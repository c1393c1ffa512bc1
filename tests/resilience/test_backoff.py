"""Retry rules, Retry-After parsing and full-jitter backoff (omen/resilience/backoff.py)."""

from __future__ import annotations

import email.utils
import random

import pytest

from omen.errors import OmenError, bad_request, model_not_found, upstream_timeout, upstream_unreachable
from omen.providers.upstream_errors import normalise_error
from omen.resilience.backoff import (
    MAX_RETRY_AFTER_S,
    RETRYABLE_STATUSES,
    backoff_delay,
    is_retryable,
    retry_after_s,
)


def err(status: int = 429, **headers: str) -> OmenError:
    return OmenError(status, "x", headers={k.replace("_", "-"): v for k, v in headers.items()})


# ---- is_retryable ---------------------------------------------------------------------------------


def test_retryable_statuses_are_the_documented_set():
    assert frozenset({408, 409, 429, 500, 501, 502, 503, 504, 529}) == RETRYABLE_STATUSES


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUSES))
def test_retryable_status(status):
    assert is_retryable(OmenError(status, "boom", type="server_error"))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422, 505, 599])
def test_not_retryable_status(status):
    assert not is_retryable(OmenError(status, "no"))


def test_connect_failures_and_first_byte_timeouts_are_retryable():
    assert is_retryable(upstream_unreachable("openai", "ConnectError: refused"))
    assert is_retryable(upstream_timeout("openai", "first byte", 30))


def test_client_errors_of_omen_itself_are_not_retryable():
    assert not is_retryable(bad_request("messages must not be empty", param="messages"))
    assert not is_retryable(model_not_found("nope"))


def test_normalised_upstream_errors():
    assert is_retryable(normalise_error("anthropic", 529, b'{"error":{"type":"overloaded_error","message":"x"}}'))
    assert not is_retryable(normalise_error("openai", 400, b'{"error":{"message":"bad"}}'))


# ---- retry_after_s --------------------------------------------------------------------------------


def test_retry_after_seconds_any_case():
    assert retry_after_s(err(**{"Retry-After": "7"})) == 7.0
    assert retry_after_s(err(retry_after="1.5")) == 1.5
    assert retry_after_s(err(**{"RETRY-AFTER": " 3 "})) == 3.0


def test_retry_after_ms_wins_over_retry_after():
    assert retry_after_s(err(retry_after="2", retry_after_ms="250")) == 0.25


def test_retry_after_from_a_normalised_upstream_429():
    e = normalise_error("openai", 429, b'{"error":{"message":"slow down"}}', [("Retry-After", "12")])
    assert retry_after_s(e) == 12.0


def test_retry_after_http_date():
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_s(err(retry_after=date), now=now) == 30.0
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert retry_after_s(err(retry_after=past), now=now) == 0.0


@pytest.mark.parametrize("value", ["soon", "", "Wed, 99 Foo 2026", "nan", "inf"])
def test_retry_after_unreadable(value):
    assert retry_after_s(err(retry_after=value)) is None


def test_retry_after_absent_negative_and_huge():
    assert retry_after_s(OmenError(503, "x")) is None
    assert retry_after_s(err(retry_after="-5")) == 0.0
    assert retry_after_s(err(retry_after="99999999")) == MAX_RETRY_AFTER_S


def test_unreadable_ms_falls_back_to_retry_after():
    assert retry_after_s(err(retry_after="4", retry_after_ms="x")) == 4.0


# ---- backoff_delay --------------------------------------------------------------------------------


def test_full_jitter_stays_within_the_exponential_ceiling():
    rng = random.Random(7)
    for attempt in range(8):
        ceiling = min(8.0, 0.25 * 2**attempt)
        draws = [backoff_delay(attempt, 0.25, 8.0, rng) for _ in range(2000)]
        assert all(0.0 <= d <= ceiling for d in draws)
        # Full jitter uses the whole range, not just its top (seeded: exact and repeatable).
        assert min(draws) < 0.05 * ceiling
        assert max(draws) > 0.95 * ceiling


def test_backoff_is_capped_for_any_attempt():
    rng = random.Random(1)
    assert all(backoff_delay(a, 0.25, 8.0, rng) <= 8.0 for a in (10, 63, 64, 1000, 10**6))


def test_backoff_repeatable_with_the_same_seed():
    a = [backoff_delay(i % 5, 0.1, 2.0, random.Random(42)) for i in range(20)]
    b = [backoff_delay(i % 5, 0.1, 2.0, random.Random(42)) for i in range(20)]
    assert a == b


def test_backoff_zero_base_or_cap_means_no_wait():
    rng = random.Random(0)
    assert backoff_delay(3, 0.0, 8.0, rng) == 0.0
    assert backoff_delay(3, 0.5, 0.0, rng) == 0.0
    assert 0.0 <= backoff_delay(-1, 0.5, 8.0, rng) <= 0.5  # a negative attempt counts as the first
