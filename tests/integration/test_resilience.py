"""Failover, retries, circuit breakers, backpressure and hedging through the real server, with fake
upstreams misbehaving on purpose (tests/fakes Fault) and the openai SDK as the client.

Timing is never asserted on OMEN's wall clock: waits are checked through when the fakes received each
request (a watcher task notes the arrival as the fake records it), and outcomes through the fakes'
request counts and disconnects, the response headers and the access log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
import trio

from tests.conftest import RunningOmen, openai_provider, running_omen
from tests.fakes import FakeUpstream, Fault, open_fake_upstream

HI = [{"role": "user", "content": "hello"}]


@dataclass
class Env:
    ups: list[FakeUpstream]
    omen: RunningOmen
    client: openai.AsyncOpenAI
    http: httpx.AsyncClient


def group(*deployments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"deployments": list(deployments), **extra}


def dep(i: int, **extra: Any) -> dict[str, Any]:
    return {"provider": f"p{i}", "model": "gpt-4o-mini", "id": f"d{i}", **extra}


@asynccontextmanager
async def env(
    tmp_path: Any,
    models: dict[str, Any],
    *,
    fakes: int = 2,
    routing: dict[str, Any] | None = None,
    timeouts: dict[str, float] | None = None,
    share: bool = False,
) -> AsyncIterator[Env]:
    """``fakes`` fake OpenAI upstreams p0..pN-1 (``share``: one fake behind all N provider ids)."""
    async with AsyncExitStack() as stack:
        count = 1 if share else fakes
        ups = [await stack.enter_async_context(open_fake_upstream("openai")) for _ in range(count)]
        providers = {}
        for i in range(fakes):
            provider = openai_provider(ups[0 if share else i])
            if timeouts:
                provider["timeouts"] = timeouts
            providers[f"p{i}"] = provider
        tree: dict[str, Any] = {"providers": providers, "models": models}
        tree["routing"] = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, **(routing or {})}
        omen = await stack.enter_async_context(running_omen(tree, tmp_path=tmp_path))
        client = openai.AsyncOpenAI(base_url=omen.v1, api_key="k", max_retries=0)
        stack.push_async_callback(client.close)
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=omen.v1, timeout=20))
        yield Env(ups, omen, client, http)


async def arrivals(up: FakeUpstream, count: int, out: list[float]) -> None:
    """Note when each of the next ``count`` requests arrives at ``up`` (trio clock)."""
    seen = up.request_count
    for _ in range(count):
        target = seen + 1
        await up.wait_for(lambda t=target: up.request_count >= t, timeout=15, what="a request")
        out.append(trio.current_time())
        seen = target


# ---- failover -------------------------------------------------------------------------------------------


async def test_bursts_of_5xx_fail_over_and_no_request_is_lost(tmp_path) -> None:
    # three tier-1 deployments that fail (one for good, two in bursts) and a tier-2 one that serves
    models = {"smart": group(dep(0), dep(1), dep(2), dep(3, priority=2))}
    async with env(tmp_path, models, fakes=4, routing={"retries": 3}) as e:
        e.ups[0].fault = Fault(status=500)  # down for good
        e.ups[1].fault = Fault(status=503, times=6)  # a burst
        e.ups[2].fault = Fault(status=529, times=3)  # Anthropic-style overload burst
        results: list[Any] = []

        async def one(i: int) -> None:
            raw = await e.client.chat.completions.with_raw_response.create(
                model="smart", messages=[{"role": "user", "content": f"hello {i}"}]
            )
            results.append((raw.parse(), raw.headers))

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(one, i)
        assert len(results) == 30  # every client succeeded
        for reply, headers in results:
            assert reply.choices[0].message.content.startswith("Echo: hello")
            assert headers["x-omen-deployment"] in ("d1", "d2", "d3")
            # at most every candidate once plus the 3 retries (failovers do not spend the budget)
            assert 1 <= int(headers["x-omen-attempts"]) <= 4 + 3
        retried = [h for _, h in results if int(h["x-omen-attempts"]) > 1]
        assert retried
        for h in retried:
            reason = h["x-omen-route-reason"]
            assert "failover after" in reason or "retry " in reason
        assert e.ups[0].request_count > 0  # it was tried (until its breaker opened)


async def test_429_retry_after_is_honoured_on_the_same_provider(tmp_path) -> None:
    # two deployments of one provider account (one fake): its Retry-After speaks for both. m1 asks for
    # longer than backoff_max_s while m2 is left, so m1 is not retried; m2 waits out the account's pause.
    models = {"duo": group(dep(0, model="m1", id="m1"), dep(0, model="m2", id="m2"), strategy="least-busy")}
    async with env(tmp_path, models, fakes=1) as e:
        up = e.ups[0]
        up.fault_once(Fault.rate_limited(retry_after=1))
        times: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(arrivals, up, 2, times)
            raw = await e.client.chat.completions.with_raw_response.create(model="duo", messages=HI)
        assert raw.headers["x-omen-attempts"] == "2"
        assert up.requests[0].status == 429 and up.requests[1].status == 200
        assert up.requests[0].json["model"] != up.requests[1].json["model"]  # failover, not a retry
        assert "no retry of" in raw.headers["x-omen-route-reason"]
        assert times[1] - times[0] >= 0.95  # the second request waited out the Retry-After


async def test_429_on_another_provider_fails_over_without_waiting(tmp_path) -> None:
    models = {"duo": group(dep(0), dep(1, priority=2))}
    async with env(tmp_path, models) as e:
        e.ups[0].fault = Fault.rate_limited(retry_after=30)
        raw = await e.client.chat.completions.with_raw_response.create(model="duo", messages=HI)
        assert raw.headers["x-omen-deployment"] == "d1" and raw.headers["x-omen-attempts"] == "2"
        record = await e.omen.log_for(raw.headers["x-request-id"])
        assert record["attempts"] == 2 and "failover after 429 from d0" in record["route_reason"]
        assert record["latency_ms"] < 30_000  # a 30 s Retry-After of p0 did not hold up p1


async def test_connection_resets_are_retried_then_fail_over(tmp_path) -> None:
    models = {"duo": group(dep(0), dep(1, priority=2))}
    async with env(tmp_path, models, routing={"retries": 1}) as e:
        e.ups[0].fault = Fault(reset_before_headers=True, rst=True)
        for stream in (False, True):
            response = await e.client.chat.completions.with_raw_response.create(model="duo", messages=HI, stream=stream)
            assert response.headers["x-omen-deployment"] == "d1"
            assert response.headers["x-omen-attempts"] == "3"  # d0, its retry, then d1
            reason = response.headers["x-omen-route-reason"]
            assert "retry d0 after 502" in reason and "failover after 502 from d0" in reason
        assert [r.outcome for r in e.ups[0].requests] == ["reset"] * 4


async def test_hang_before_headers_moves_to_the_next_deployment(tmp_path) -> None:
    # retries = 0: a first-byte timeout is retryable; this is about leaving the hung deployment
    models = {"duo": group(dep(0), dep(1, priority=2))}
    async with env(tmp_path, models, timeouts={"first_byte": 0.3}, routing={"retries": 0}) as e:
        e.ups[0].fault = Fault(delay_headers=10)
        raw = await e.client.chat.completions.with_raw_response.create(model="duo", messages=HI)
        assert raw.parse().choices[0].message.content == "Echo: hello"
        assert raw.headers["x-omen-deployment"] == "d1" and raw.headers["x-omen-attempts"] == "2"
        await e.ups[0].wait_disconnect()  # the hung request was abandoned, its connection closed


async def test_context_window_error_goes_to_the_larger_model(tmp_path) -> None:
    too_long = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    models = {
        "small": group(dep(0), context_window_fallbacks=["big"]),
        "big": {"provider": "p1", "model": "gpt-4o"},
    }
    async with env(tmp_path, models) as e:
        e.ups[0].fault = Fault(status=400, body=too_long)
        raw = await e.client.chat.completions.with_raw_response.create(model="small", messages=HI)
        assert raw.headers["x-omen-deployment"] == "p1/gpt-4o"
        assert "context_window_fallbacks after 400" in raw.headers["x-omen-route-reason"]
        assert e.ups[1].last_request.json["model"] == "gpt-4o"
        # without such a fallback a 400 is the client's: returned as it is, nothing retried
        e.ups[0].fault = Fault(status=400, message="bad temperature")
        count = e.ups[1].request_count
        with pytest.raises(openai.BadRequestError):
            await e.client.chat.completions.create(model="small", messages=HI, temperature=1)
        assert e.ups[1].request_count == count


async def test_content_filter_refusal_goes_to_the_configured_fallback(tmp_path) -> None:
    models = {
        "filtered": group(dep(0), content_filter_fallbacks=["lenient"]),
        "lenient": {"provider": "p1", "model": "other-model"},
    }
    async with env(tmp_path, models) as e:
        e.ups[0].fault = Fault.azure_content_filter()
        raw = await e.client.chat.completions.with_raw_response.create(model="filtered", messages=HI)
        assert raw.headers["x-omen-deployment"] == "p1/other-model" and raw.headers["x-omen-attempts"] == "2"
        assert "content_filter_fallbacks after 400 from d0" in raw.headers["x-omen-route-reason"]


async def test_a_200_content_filter_refusal_goes_to_the_fallbacks(tmp_path) -> None:
    refuse = Fault(finish_reason="content_filter")
    models = {
        "filtered": group(dep(0), content_filter_fallbacks=["lenient", "other"]),
        "lenient": {"provider": "p1", "model": "lenient-model"},
        "other": {"provider": "p2", "model": "other-model"},
    }
    async with env(tmp_path, models, fakes=3) as e:
        p0, p1, p2 = e.ups
        p0.fault = refuse
        raw = await e.client.chat.completions.with_raw_response.create(model="filtered", messages=HI)
        reply = raw.parse()  # the refused answer never reached the client
        assert reply.choices[0].finish_reason == "stop" and reply.model == "lenient-model"
        assert raw.headers["x-omen-deployment"] == "p1/lenient-model" and raw.headers["x-omen-attempts"] == "2"
        assert "content_filter_fallbacks after a refusal (200) from d0" in raw.headers["x-omen-route-reason"]
        # the first fallback refuses too: the next one answers
        p1.fault = refuse
        raw = await e.client.chat.completions.with_raw_response.create(model="filtered", messages=HI)
        assert raw.parse().choices[0].finish_reason == "stop"
        assert raw.headers["x-omen-deployment"] == "p2/other-model" and raw.headers["x-omen-attempts"] == "3"
        # every fallback refuses: the last refusal is the answer, a normal 200
        p2.fault = refuse
        raw = await e.client.chat.completions.with_raw_response.create(model="filtered", messages=HI)
        reply = raw.parse()
        assert raw.http_response.status_code == 200 and reply.choices[0].finish_reason == "content_filter"
        assert reply.model == "other-model" and raw.headers["x-omen-deployment"] == "p2/other-model"
        assert raw.headers["x-omen-attempts"] == "3"
        assert [up.request_count for up in e.ups] == [3, 3, 2]
        # a fallback may refuse with a 400 instead; a refusal held back beats a later error
        p2.fault = Fault.azure_content_filter()
        raw = await e.client.chat.completions.with_raw_response.create(model="filtered", messages=HI)
        assert raw.parse().choices[0].finish_reason == "content_filter"
        assert raw.headers["x-omen-deployment"] == "p1/lenient-model" and raw.headers["x-omen-attempts"] == "3"
        reason = raw.headers["x-omen-route-reason"]
        assert "answered with the refusal from p1/lenient-model (last fallback: 400 from p2/other-model)" in reason
        assert [up.request_count for up in e.ups] == [4, 4, 3]
        # a stream cannot be taken back: its refusal reaches the client, no fallback is tried
        stream = await e.client.chat.completions.create(model="filtered", messages=HI, stream=True)
        finishes = [c.choices[0].finish_reason async for c in stream if c.choices and c.choices[0].finish_reason]
        assert finishes == ["content_filter"]
        assert [up.request_count for up in e.ups] == [5, 4, 3]


async def test_retries_0_passes_the_first_error_through(tmp_path) -> None:
    models = {"solo": {"provider": "p0", "model": "gpt-4o-mini"}, "patient": {"provider": "p0", "retries": 1}}
    async with env(tmp_path, models, fakes=1, routing={"retries": 0}) as e:
        up = e.ups[0]
        up.fault_once(Fault.rate_limited(retry_after=7))
        response = await e.http.post("/chat/completions", json={"model": "solo", "messages": HI})
        assert response.status_code == 429 and response.headers["retry-after"] == "7"
        assert response.headers["x-omen-attempts"] == "1" and up.request_count == 1
        up.fault_once(Fault(status=503))
        response = await e.http.post("/chat/completions", json={"model": "solo", "messages": HI})
        assert response.status_code == 503 and up.request_count == 2
        # a model's own retries override [routing] retries
        up.fault_once(Fault(status=503))
        response = await e.http.post("/chat/completions", json={"model": "patient", "messages": HI})
        assert response.status_code == 200 and response.headers["x-omen-attempts"] == "2"
        assert [r.status for r in up.requests[2:]] == [503, 200]


# ---- retries on the same deployment -------------------------------------------------------------------


async def test_single_deployment_recovers_from_one_503(tmp_path) -> None:
    models = {"solo": {"provider": "p0", "model": "gpt-4o-mini"}}
    async with env(tmp_path, models, fakes=1) as e:
        up = e.ups[0]
        for stream in (False, True):
            up.fault_once(Fault(status=503))
            raw = await e.client.chat.completions.with_raw_response.create(model="solo", messages=HI, stream=stream)
            assert raw.headers["x-omen-attempts"] == "2"  # the attempts header counts the retry
            assert raw.headers["x-omen-deployment"] == "p0/gpt-4o-mini"
            assert "retry p0/gpt-4o-mini after 503" in raw.headers["x-omen-route-reason"]
            if stream:
                async for _ in raw.parse():
                    pass
            else:
                assert raw.parse().choices[0].message.content == "Echo: hello"
        assert [r.status for r in up.requests] == [503, 200, 503, 200]


async def test_single_deployment_waits_out_a_429_retry_after(tmp_path) -> None:
    models = {"solo": {"provider": "p0", "model": "gpt-4o-mini"}}
    async with env(tmp_path, models, fakes=1) as e:
        up = e.ups[0]
        up.fault_once(Fault.rate_limited(retry_after=0.2))  # longer than backoff_max_s (0.05): Retry-After rules
        times: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(arrivals, up, 2, times)
            raw = await e.client.chat.completions.with_raw_response.create(model="solo", messages=HI)
        assert raw.parse().choices[0].message.content == "Echo: hello"
        assert raw.headers["x-omen-attempts"] == "2"
        assert [r.status for r in up.requests] == [429, 200]
        assert times[1] - times[0] >= 0.18  # the retry came after the Retry-After (as the fake saw it)


async def test_retries_then_fallback_and_the_attempts_header_counts_them(tmp_path) -> None:
    models = {"duo": group(dep(0), dep(1, priority=2))}
    async with env(tmp_path, models, routing={"retries": 2}) as e:
        e.ups[0].fault = Fault(status=503)
        raw = await e.client.chat.completions.with_raw_response.create(model="duo", messages=HI)
        assert raw.headers["x-omen-deployment"] == "d1"
        assert raw.headers["x-omen-attempts"] == "4"  # d0, two retries of d0, then d1
        reason = raw.headers["x-omen-route-reason"]
        assert reason.count("retry d0 after 503") == 2 and "failover after 503 from d0" in reason
        assert e.ups[0].request_count == 3 and e.ups[1].request_count == 1
        # a deployment-specific error (401) fails over without a retry
        e.ups[0].fault = Fault(status=401)
        raw = await e.client.chat.completions.with_raw_response.create(model="duo", messages=HI)
        assert raw.headers["x-omen-deployment"] == "d1" and raw.headers["x-omen-attempts"] == "2"
        assert e.ups[0].request_count == 4
        # so does a 429 that is a billing state (insufficient_quota), not a rate limit
        quota = {
            "message": "You exceeded your current quota.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
        e.ups[0].fault = Fault(status=429, body={"error": {**quota, "param": None}})
        raw = await e.client.chat.completions.with_raw_response.create(model="duo", messages=HI)
        assert raw.headers["x-omen-deployment"] == "d1" and raw.headers["x-omen-attempts"] == "2"
        assert e.ups[0].request_count == 5


async def test_retry_after_past_the_deadline_ends_at_once(tmp_path) -> None:
    models = {"solo": {"provider": "p0", "model": "gpt-4o-mini"}}
    async with env(tmp_path, models, fakes=1, routing={"timeout_s": 5, "retries": 3}) as e:
        e.ups[0].fault = Fault.rate_limited(retry_after=30)
        response = await e.http.post("/chat/completions", json={"model": "solo", "messages": HI})
        assert response.status_code == 429 and response.headers["retry-after"] == "30"
        assert response.headers["x-omen-attempts"] == "1" and e.ups[0].request_count == 1
        reason = response.headers["x-omen-route-reason"]
        assert "deadline: no retry of p0/gpt-4o-mini (Retry-After 30s ends past the 5s deadline)" in reason
        record = await e.omen.log_for(response.headers["x-request-id"])
        assert record["latency_ms"] < 5000  # answered without waiting for the deadline


# ---- never retried once the response started ---------------------------------------------------------


async def test_stall_mid_stream_is_not_retried(tmp_path) -> None:
    models = {"duo": group(dep(0), dep(1, priority=2))}
    async with env(tmp_path, models, timeouts={"idle": 0.3}) as e:
        e.ups[0].fault = Fault(stall_after_chunks=2)
        response = await e.http.post("/chat/completions", json={"model": "duo", "messages": HI, "stream": True})
        assert response.status_code == 200
        payloads = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert payloads[-1] == "[DONE]" and "idle" in payloads[-2]  # an error event, then [DONE]
        assert e.ups[1].request_count == 0  # bytes had reached the client: no second attempt
        assert response.headers["x-omen-attempts"] == "1"


# ---- circuit breaker ----------------------------------------------------------------------------------


async def test_breaker_opens_after_the_threshold_and_recovers_through_half_open(tmp_path) -> None:
    breaker = {"window_s": 30, "min_requests": 4, "error_rate": 0.5, "cooldown_s": 0.5, "half_open_probes": 1}
    routing = {"breaker": breaker}
    models = {"duo": group(dep(0), dep(1, priority=2))}
    async with env(tmp_path, models, routing=routing) as e:
        bad = e.ups[0]
        bad.fault = Fault(status=500)
        for _ in range(10):
            reply = await e.client.chat.completions.create(model="duo", messages=HI)
            assert reply.choices[0].message.content == "Echo: hello"
        assert bad.request_count == 4  # the breaker opened at the threshold: no more requests reach it
        status = (await e.http.get(e.omen.url + "/v1/providers/status")).json()
        d0 = next(d for p in status["data"] for d in p["deployments"] if d["id"] == "d0")
        assert d0["status"] == "down" and d0["breaker"]["state"] == "open"
        bad.clear_faults()
        await trio.sleep(0.6)  # the cooldown passes: the next request is the half-open probe
        raw = await e.client.chat.completions.with_raw_response.create(model="duo", messages=HI)
        assert raw.headers["x-omen-deployment"] == "d0" and bad.request_count == 5
        status = (await e.http.get(e.omen.url + "/v1/providers/status")).json()
        d0 = next(d for p in status["data"] for d in p["deployments"] if d["id"] == "d0")
        assert d0["breaker"]["state"] == "closed"
        for _ in range(3):
            raw = await e.client.chat.completions.with_raw_response.create(model="duo", messages=HI)
            assert raw.headers["x-omen-deployment"] == "d0"


async def test_all_breakers_open_answers_503_with_retry_after(tmp_path) -> None:
    routing = {"retries": 5, "breaker": {"min_requests": 2, "error_rate": 0.5, "cooldown_s": 30}}
    models = {"solo": {"provider": "p0", "model": "gpt-4o-mini"}}
    async with env(tmp_path, models, fakes=1, routing=routing) as e:
        e.ups[0].fault = Fault(status=502)
        first = await e.http.post("/chat/completions", json={"model": "solo", "messages": HI})
        # the retry's failure opened the breaker, which ends the retries (5 were allowed)
        assert first.status_code == 502 and first.headers["x-omen-attempts"] == "2"
        assert "no retry of p0/gpt-4o-mini: its breaker opened" in first.headers["x-omen-route-reason"]
        response = await e.http.post("/chat/completions", json={"model": "solo", "messages": HI})
        assert response.status_code == 503 and response.json()["error"]["code"] == "deployment_unavailable"
        assert int(response.headers["retry-after"]) >= 1
        assert e.ups[0].request_count == 2  # never sent into the open breaker


# ---- deadline -------------------------------------------------------------------------------------------


async def test_retries_stop_at_the_deadline(tmp_path) -> None:
    # five deployments that each take 0.4 s to fail (d0 is retried first: 10 retries allowed); with a
    # 1 s deadline only three attempts can start, and the third is cut off by the deadline
    models = {"many": group(*(dep(i, priority=i + 1) for i in range(5)))}
    async with env(tmp_path, models, fakes=5, share=True, routing={"retries": 10, "timeout_s": 1.0}) as e:
        e.ups[0].fault = Fault(status=503, delay_headers=0.4)
        response = await e.http.post("/chat/completions", json={"model": "many", "messages": HI})
        assert response.status_code in (503, 504)
        assert e.ups[0].request_count == 3
        assert response.headers["x-omen-attempts"] == "3"


# ---- backpressure ---------------------------------------------------------------------------------------


async def test_backpressure_queue_full_is_429_and_queue_timeout_503(tmp_path) -> None:
    models = {
        "tight": group(dep(0, max_concurrent=1, max_queue=0)),
        "queued": group(dep(1, max_concurrent=1, max_queue=1, queue_timeout_s=0.2)),
    }
    async with env(tmp_path, models) as e:
        for up in e.ups:
            up.fault = Fault(delay_headers=1.0)
        responses: dict[str, httpx.Response] = {}

        async def post(key: str, model: str) -> None:
            responses[key] = await e.http.post("/chat/completions", json={"model": model, "messages": HI})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post, "first", "tight")
            nursery.start_soon(post, "q-first", "queued")
            await e.ups[0].wait_requests(1)
            await e.ups[1].wait_requests(1)
            nursery.start_soon(post, "second", "tight")
            nursery.start_soon(post, "q-second", "queued")
        assert responses["first"].status_code == 200 and responses["q-first"].status_code == 200
        full = responses["second"]
        assert full.status_code == 429 and full.json()["error"]["code"] == "deployment_queue_full"
        assert int(full.headers["retry-after"]) >= 1
        waited = responses["q-second"]
        assert waited.status_code == 503 and waited.json()["error"]["code"] == "deployment_queue_timeout"
        assert int(waited.headers["retry-after"]) >= 1
        assert e.ups[0].request_count == 1 and e.ups[1].request_count == 1  # no pile-up upstream


async def test_saturated_deployment_is_skipped_for_a_free_one(tmp_path) -> None:
    models = {"pair": group(dep(0, max_concurrent=1, max_queue=0, weight=100), dep(1, weight=1))}
    async with env(tmp_path, models) as e:
        e.ups[0].fault = Fault(delay_headers=0.5)
        e.ups[1].fault = Fault(delay_headers=0.5)
        responses: list[httpx.Response] = []

        async def post() -> None:
            responses.append(await e.http.post("/chat/completions", json={"model": "pair", "messages": HI}))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(post)
        assert [r.status_code for r in responses] == [200] * 4
        assert e.ups[0].request_count == 1  # one slot: the others went to d1 without waiting


# ---- hedging --------------------------------------------------------------------------------------------


async def test_hedge_wins_when_the_first_byte_is_slow_and_the_loser_is_cancelled(tmp_path) -> None:
    models = {"hedged": group(dep(0), dep(1, priority=2), hedge=True, hedge_after_ms=100)}
    async with env(tmp_path, models) as e:
        slow, fast = e.ups
        slow.fault = Fault(delay_headers=5)
        for stream in (False, True):
            raw = await e.client.chat.completions.with_raw_response.create(model="hedged", messages=HI, stream=stream)
            assert raw.headers["x-omen-deployment"] == "d1"
            assert raw.headers["x-omen-attempts"] == "2"
            assert "hedged d0 with d1" in raw.headers["x-omen-route-reason"]
            await slow.wait_disconnect()  # the losing attempt was cancelled: its upstream saw the hang-up
        assert slow.request_count == 2 and fast.request_count == 2
        # a fast first deployment is not hedged
        slow.clear_faults()
        raw = await e.client.chat.completions.with_raw_response.create(model="hedged", messages=HI)
        assert raw.headers["x-omen-deployment"] == "d0" and raw.headers["x-omen-attempts"] == "1"
