"""Run-time tokens: the TokenCache on its own (controlled clock), then end to end through the real OMEN
server against the fake GigaChat (OAuth endpoint + API): one exchange for a burst of requests, refresh
before expiry, one refresh and success when the API refuses a revoked or expired token."""

from __future__ import annotations

import time
import uuid

import openai
import pytest
import trio

from omen.providers.base import Token
from omen.transport.tokens import TokenCache
from tests.fakes import Fault
from tests.fakes.gigachat_wire import OAUTH_PATH, state
from tests.integration.test_matrix_gigachat import HI, gigachat


class Clock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- TokenCache -------------------------------------------------------------------------------------------


async def test_cache_reuses_then_refreshes_before_expiry():
    clock = Clock()
    cache = TokenCache(clock)
    issued: list[str] = []

    async def fetch() -> Token:
        issued.append(f"t{len(issued) + 1}")
        return Token(issued[-1], clock.now + 1800)  # GigaChat's 30 minutes

    assert await cache.get("g", fetch) == "t1"
    clock.now += 1800 - 61
    assert await cache.get("g", fetch) == "t1"
    clock.now += 1  # 60 s before expiry: refreshed while t1 is still valid
    assert await cache.get("g", fetch) == "t2"
    assert cache.refreshes == 2


async def test_cache_margin_is_a_tenth_of_a_short_lifetime():
    clock = Clock()
    cache = TokenCache(clock)
    values = iter(["a", "b"])

    async def fetch() -> Token:
        return Token(next(values), clock.now + 10)

    assert await cache.get("g", fetch) == "a"
    clock.now += 8.9
    assert await cache.get("g", fetch) == "a"
    clock.now += 0.1
    assert await cache.get("g", fetch) == "b"


async def test_cache_single_flight():
    cache = TokenCache()
    calls = 0

    async def fetch() -> Token:
        nonlocal calls
        calls += 1
        await trio.sleep(0.05)  # every other task arrives while this exchange is in flight
        return Token(f"t{calls}", 4_000_000_000)

    results: list[str] = []

    async def one() -> None:
        results.append(await cache.get("g", fetch))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(one)
    assert calls == 1 and results == ["t1"] * 50


async def test_cache_invalidate_only_the_refused_value_and_per_provider():
    cache = TokenCache()
    values = iter(["a", "b", "c"])

    async def fetch() -> Token:
        return Token(next(values), 4_000_000_000)

    assert await cache.get("g", fetch) == "a"
    assert await cache.get("other", fetch) == "b"  # tokens are per provider
    cache.invalidate("g", "stale")  # a late 401 for an older token does not drop the current one
    assert await cache.get("g", fetch) == "a"
    cache.invalidate("g", "a")
    assert await cache.get("g", fetch) == "c"
    assert await cache.get("other", fetch) == "b"


async def test_cache_failed_exchange_is_not_cached():
    cache = TokenCache()
    attempts = 0

    async def fetch() -> Token:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("token endpoint down")
        return Token("ok", 4_000_000_000)

    with pytest.raises(RuntimeError):
        await cache.get("g", fetch)
    assert await cache.get("g", fetch) == "ok" and attempts == 2


# ---- end to end: OMEN <-> fake GigaChat ---------------------------------------------------------------------


async def test_concurrent_requests_make_one_token_exchange(tmp_path):
    async with gigachat(tmp_path) as env:
        # a slow token endpoint: every request arrives while the first exchange is in flight
        env.up.fault_once(Fault(delay_headers=0.3, path=OAUTH_PATH))
        answers: list[str] = []

        async def one() -> None:
            answer = await env.client.chat.completions.create(model="giga", messages=HI)
            answers.append(answer.choices[0].message.content)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
        assert answers == ["Echo: ping pong"] * 20
        assert state(env.up).exchanges == 1 and len(env.up.requests_to(OAUTH_PATH)) == 1
        assert {r.headers["authorization"] for r in env.api} == {"Bearer giga-token-1"}
        assert env.omen.app.gateway.exchange.tokens.refreshes == 1


async def test_token_near_expiry_is_refreshed(tmp_path):
    clock = Clock()
    async with gigachat(tmp_path) as env:
        state(env.up).clock = clock  # the fake and OMEN share one clock: no waiting for real expiry
        env.omen.app.gateway.exchange.tokens = TokenCache(clock)
        await env.client.chat.completions.create(model="giga", messages=HI)
        clock.now += 1800 - 61
        await env.client.chat.completions.create(model="giga", messages=HI)
        assert state(env.up).exchanges == 1
        clock.now += 2  # inside the refresh margin, before expiry
        await env.client.chat.completions.create(model="giga", messages=HI)
        assert state(env.up).exchanges == 2
        assert [r.headers["authorization"] for r in env.api] == ["Bearer giga-token-1"] * 2 + ["Bearer giga-token-2"]
        assert [r.status for r in env.api] == [200, 200, 200]  # the old token was never refused
        assert clock.now < state(env.up).tokens["giga-token-1"]  # it was refreshed while still valid
        rquids = [r.headers["rquid"] for r in env.up.requests_to(OAUTH_PATH)]
        assert len(set(rquids)) == 2 and all(uuid.UUID(r).version == 4 for r in rquids)


async def test_revoked_token_one_refresh_and_success(tmp_path):
    async with gigachat(tmp_path) as env:
        await env.client.chat.completions.create(model="giga", messages=HI)
        state(env.up).revoke()
        answer = await env.client.chat.completions.create(model="giga", messages=HI)
        assert answer.choices[0].message.content == "Echo: ping pong"
        assert [(r.status, r.headers["authorization"]) for r in env.api] == [
            (200, "Bearer giga-token-1"),
            (401, "Bearer giga-token-1"),
            (200, "Bearer giga-token-2"),
        ]
        assert state(env.up).exchanges == 2
        # streams too: the retry happens before the stream starts, so the client sees one clean stream
        state(env.up).revoke()
        stream = await env.client.chat.completions.create(model="giga", messages=HI, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Echo: ping pong" and state(env.up).exchanges == 3
        assert [r.status for r in env.api[-2:]] == [401, 200]


async def test_burst_after_revocation_refreshes_once(tmp_path):
    async with gigachat(tmp_path) as env:
        await env.client.chat.completions.create(model="giga", messages=HI)
        state(env.up).revoke()
        env.up.fault_once(Fault(delay_headers=0.2, path=OAUTH_PATH))

        async def one() -> None:
            await env.client.chat.completions.create(model="giga", messages=HI)

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(one)
        assert state(env.up).exchanges == 2  # ten 401s, one refresh
        assert [r.status for r in env.api].count(200) == 11


async def test_token_expired_upstream_clock_skew(tmp_path):
    clock = Clock(time.time())  # the fake's clock; OMEN keeps the real one
    async with gigachat(tmp_path) as env:
        state(env.up).clock = clock
        await env.client.chat.completions.create(model="giga", messages=HI)
        clock.now += 1801  # GigaChat considers the token expired while OMEN still thinks it valid
        answer = await env.client.chat.completions.create(model="giga", messages=HI)
        assert answer.choices[0].finish_reason == "stop"
        assert [r.status for r in env.api] == [200, 401, 200] and state(env.up).exchanges == 2


async def test_failed_refresh_is_reported(tmp_path):
    async with gigachat(tmp_path) as env:
        await env.client.chat.completions.create(model="giga", messages=HI)
        state(env.up).revoke()
        env.up.fault_once(Fault(status=503, path=OAUTH_PATH))
        with pytest.raises(openai.InternalServerError) as exc:
            await env.client.chat.completions.create(model="giga", messages=HI)
        assert exc.value.status_code == 502
        assert "'gigachat': the OAuth token exchange failed (HTTP 503)" in exc.value.body["message"]
        # the next request exchanges again and succeeds
        answer = await env.client.chat.completions.create(model="giga", messages=HI)
        assert answer.choices[0].message.content == "Echo: ping pong" and state(env.up).exchanges == 2


async def test_cache_waiters_share_a_failed_exchange():
    """A burst that queued behind a failing exchange gets its error instead of each trying again in turn
    (with a dead token endpoint, N queued requests would otherwise wait N connect timeouts)."""
    cache = TokenCache()
    calls = 0

    async def fetch() -> Token:
        nonlocal calls
        calls += 1
        await trio.sleep(0.05)
        raise RuntimeError(f"token endpoint down ({calls})")

    errors: list[str] = []

    async def one() -> None:
        try:
            await cache.get("g", fetch)
        except RuntimeError as exc:
            errors.append(str(exc))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(one)
    assert calls == 1 and errors == ["token endpoint down (1)"] * 10
    with pytest.raises(RuntimeError, match=r"\(2\)"):  # a later request tries again
        await cache.get("g", fetch)


async def test_cache_cancelled_exchange_is_retried_by_waiters():
    """An exchange abandoned because its own request went away is not an error for the others."""
    cache = TokenCache()
    calls = 0
    started = trio.Event()

    async def fetch() -> Token:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            await trio.sleep_forever()
        return Token("t", 4_000_000_000)

    got: list[str] = []
    first = trio.CancelScope()

    async def owner() -> None:
        with first:
            await cache.get("g", fetch)

    async def waiter() -> None:
        got.append(await cache.get("g", fetch))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(owner)
        await started.wait()
        nursery.start_soon(waiter)
        await trio.sleep(0.01)  # the waiter is queued behind the exchange in flight
        first.cancel()
    assert got == ["t"] and calls == 2


async def test_burst_against_failing_token_endpoint_makes_one_exchange(tmp_path):
    async with gigachat(tmp_path) as env:
        env.up.fault_once(Fault(status=503, delay_headers=0.2, path=OAUTH_PATH))
        statuses: list[int] = []

        async def one() -> None:
            with pytest.raises(openai.InternalServerError) as exc:
                await env.client.chat.completions.create(model="giga", messages=HI)
            statuses.append(exc.value.status_code)
            assert "OAuth token exchange failed (HTTP 503)" in exc.value.body["message"]

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(one)
        assert statuses == [502] * 10
        assert len(env.up.requests_to(OAUTH_PATH)) == 1 and env.api == []
