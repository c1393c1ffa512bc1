"""Active health probes (``[routing.health] probe_interval_s > 0``): every deployment is asked for
something cheap on an interval (R1 ``ProbeLoop``, jittered), and the outcome feeds its statistics and
circuit breaker as traffic would, so a deployment that recovers is noticed while no traffic reaches it
and one that fails is noticed before a user's request does.

The probe is the provider's model-list request when it has one (no tokens spent), else a one-token
chat completion. Runs in the server's lifespan nursery.
"""

from __future__ import annotations

import orjson
import trio

from omen.api.chat import ChatCompletionRequest, UserMessage
from omen.pipeline.gateway import Gateway
from omen.providers.base import ChatCall, UpstreamRequest
from omen.resilience.health import ProbeLoop
from omen.routing.deployments import Deployment


def probe_request(gw: Gateway, d: Deployment) -> UpstreamRequest:
    provider = gw.providers[d.provider_id]
    request = provider.models_request()
    if request is not None:
        return request
    chat = ChatCompletionRequest(model=d.upstream_model, messages=[UserMessage(content="ping")], max_tokens=1)
    body = orjson.dumps({"model": d.upstream_model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1})
    call = ChatCall(raw=body, upstream_model=d.upstream_model, public_model=d.upstream_model, request=chat)
    return provider.chat_request(call)


async def probe(gw: Gateway, d: Deployment) -> tuple[bool, float]:
    """``(ok, seconds)``: ok when the deployment answered with a success status."""
    provider = gw.providers[d.provider_id]
    started = trio.current_time()
    response = await gw.exchange.open(provider, probe_request(gw, d))
    try:
        await response.read()
    finally:
        await response.aclose()
    return response.status < 400, trio.current_time() - started


def record(d: Deployment, ok: bool, seconds: float) -> None:
    d.stats.observe(ok, seconds, seconds)
    if d.breaker is not None:
        d.breaker.record(ok)


def targets(gw: Gateway) -> list[Deployment]:
    return [
        d
        for d in gw.deployments.by_id.values()
        if d.provider_id in gw.providers and not getattr(gw.providers[d.provider_id], "local", False)
    ]


async def run_probes(gw: Gateway) -> None:
    health = gw.config.routing.health
    if health.probe_interval_s <= 0:
        return
    loop: ProbeLoop[Deployment] = ProbeLoop(record)
    gw.probes = loop
    await loop.run(targets(gw), health, lambda d: probe(gw, d))
