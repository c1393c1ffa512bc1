"""The routing endpoints through the real server: ``/admin/routing/explain`` (GET, POST and the
``x-omen-dry-run`` header on chat completions), ``/v1/providers/status``, the routing headers on every
response and in the access log, the health probe loop, and the routing extensions never reaching an
upstream."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import trio

from tests.conftest import openai_provider, running_omen
from tests.fakes import Fault, open_fake_upstream

MASTER = "mk-routing"
AUTH = {"Authorization": f"Bearer {MASTER}"}
CODE_PROMPT = "Refactor this:\n```python\ndef total(xs):\n    s = 0\n    for x in xs: s += x\n    return s\n```"


def config(up: Any, **routing: Any) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "providers": {"openai": openai_provider(up), "backup": openai_provider(up)},
        "models": {
            "gpt-4o-mini": {"provider": "openai"},
            "smart": {
                "strategy": "score",
                "fallbacks": ["gpt-4o-mini"],
                "deployments": [
                    {"provider": "openai", "model": "gpt-4o", "id": "primary"},
                    {"provider": "backup", "model": "gpt-4o", "id": "secondary"},
                ],
            },
        },
        "routing": {
            "auto": {"code": "smart", "default": "gpt-4o-mini"},
            "policies": [{"name": "cap-output", "models": ["auto"], "action": "rewrite", "cap": {"max_tokens": 256}}],
            **routing,
        },
    }


async def test_explain_names_the_intent_and_the_candidates(tmp_path) -> None:
    async with (
        open_fake_upstream("openai") as up,
        running_omen(config(up), tmp_path=tmp_path) as omen,
        httpx.AsyncClient(base_url=omen.url, headers=AUTH) as http,
    ):
        response = await http.get("/admin/routing/explain", params={"model": "auto", "prompt": CODE_PROMPT})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "routing.explain" and body["model"] == "auto"
        assert body["intent"]["name"] == "code" and body["intent"]["reason"]
        assert body["public_model"] == "smart" and body["strategy"] == "score"
        assert body["policy"]["rule"] == "cap-output" and body["rewritten"] == ["max_tokens"]
        candidates = body["candidates"]
        assert {c["deployment"] for c in candidates[:2]} == {"primary", "secondary"}
        assert candidates[2]["deployment"] == "openai/gpt-4o-mini"  # the group's fallback
        first = candidates[0]
        assert set(first) >= {"deployment", "provider", "upstream_model", "tier", "reason", "score", "state"}
        assert first["state"]["breaker"] == "closed" and first["state"]["health"] == "operational"
        assert "auto: intent code" in body["reason"]
        # POST: a whole chat body, hints included
        chat = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tags": {"intent": "code"}}
        body = (await http.post("/admin/routing/explain", json=chat)).json()
        assert body["intent"] == {"name": "code", "reason": body["intent"]["reason"], "source": "hint"}
        body = (await http.get("/admin/routing/explain", params={"model": "gpt-4o-mini"})).json()
        assert body["intent"] is None and [c["deployment"] for c in body["candidates"]] == ["openai/gpt-4o-mini"]
        # errors: no model, unknown model, the master key
        assert (await http.get("/admin/routing/explain")).status_code == 400
        assert (await http.get("/admin/routing/explain", params={"model": "nope"})).status_code == 404
        assert (await http.delete("/admin/routing/explain")).status_code == 405
        async with httpx.AsyncClient(base_url=omen.url) as anonymous:
            assert (await anonymous.get("/admin/routing/explain", params={"model": "auto"})).status_code == 401
            assert (await anonymous.get("/v1/providers/status")).status_code == 401
        assert up.request_count == 0  # explaining never calls a provider


async def test_dry_run_header_returns_the_decision_without_calling_a_provider(tmp_path) -> None:
    async with (
        open_fake_upstream("openai") as up,
        running_omen(config(up), tmp_path=tmp_path) as omen,
        httpx.AsyncClient(base_url=omen.v1, headers=AUTH) as http,
    ):
        chat = {"model": "auto", "messages": [{"role": "user", "content": CODE_PROMPT}]}
        response = await http.post("/chat/completions", json=chat, headers={"x-omen-dry-run": "1"})
        assert response.status_code == 200
        body = response.json()
        assert body["object"] == "routing.explain" and body["intent"]["name"] == "code"
        assert "cap-output" in response.headers["x-omen-route-reason"]
        assert up.request_count == 0


async def test_every_response_says_how_it_was_routed(tmp_path) -> None:
    async with (
        open_fake_upstream("openai") as up,
        running_omen(config(up), tmp_path=tmp_path) as omen,
    ):
        client = openai.AsyncOpenAI(base_url=omen.v1, api_key=MASTER, max_retries=0)
        raw = await client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": CODE_PROMPT}], max_tokens=4000
        )
        headers = raw.headers
        assert headers["x-omen-deployment"] in ("primary", "secondary")
        assert headers["x-omen-provider"] in ("openai", "backup") and headers["x-omen-upstream-model"] == "gpt-4o"
        assert headers["x-omen-attempts"] == "1"
        assert "auto: intent code" in headers["x-omen-route-reason"]
        sent = up.last_request.json
        assert sent["model"] == "gpt-4o" and sent["max_tokens"] == 256  # the policy's cap reached the upstream
        record = await omen.log_for(headers["x-request-id"])
        assert record["deployment"] == headers["x-omen-deployment"] and record["attempts"] == 1
        assert "auto: intent code" in record["route_reason"]
        # a plain model: the fast path still names its deployment
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"models": ["smart"], "provider": {"order": ["openai"]}, "tags": {"priority": "low-cost"}},
        )
        assert raw.headers["x-omen-deployment"] == "openai/gpt-4o-mini"
        sent = up.last_request.json
        assert "models" not in sent and "provider" not in sent and "tags" not in sent
        # errors carry them too
        up.fault = Fault(status=400, message="nope")
        response = await httpx.AsyncClient(base_url=omen.v1, headers=AUTH).post(
            "/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert response.status_code == 400 and response.headers["x-omen-attempts"] == "1"
        await client.close()


async def test_providers_status_shape(tmp_path) -> None:
    async with (
        open_fake_upstream("openai") as up,
        running_omen(config(up), tmp_path=tmp_path) as omen,
        httpx.AsyncClient(base_url=omen.url, headers=AUTH) as http,
    ):
        chat = {"model": "smart", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(3):
            assert (await http.post("/v1/chat/completions", json=chat)).status_code == 200
        response = await http.get("/v1/providers/status")
        assert response.status_code == 200
        body = response.json()
        assert body["object"] == "list" and body["updated_at"].endswith("Z")
        providers = {p["id"]: p for p in body["data"]}
        assert set(providers) == {"openai", "backup"}
        openai_status = providers["openai"]
        assert set(openai_status) >= {
            "id", "type", "status", "latency_ms", "success_rate", "requests", "in_flight", "last_change", "deployments"
        }  # fmt: skip
        assert openai_status["status"] == "operational" and openai_status["type"] == "openai"
        deployment = next(d for d in openai_status["deployments"] if d["id"] == "primary")
        assert set(deployment) >= {
            "id", "provider", "model", "models", "status", "latency_ms", "ttft_ms", "success_rate",
            "error_rate", "requests", "in_flight", "breaker", "last_change",
        }  # fmt: skip
        assert deployment["models"] == ["smart"] and deployment["breaker"]["state"] == "closed"
        assert sum(p["requests"] for p in body["data"]) == 3
        assert all(d["success_rate"] == 1.0 for p in body["data"] for d in p["deployments"])


async def test_active_probes_feed_health(tmp_path) -> None:
    health = {"probe_interval_s": 0.05, "probe_timeout_s": 1.0, "jitter": 0.1}
    breaker = {"min_requests": 3, "error_rate": 0.5, "cooldown_s": 60}
    async with (
        open_fake_upstream("openai") as up,
        running_omen(config(up, health=health, breaker=breaker), tmp_path=tmp_path) as omen,
        httpx.AsyncClient(base_url=omen.url, headers=AUTH) as http,
    ):
        await up.wait_for(lambda: len(up.requests_to("/models")) >= 6, timeout=5, what="probes")
        up.fault = Fault(status=503, path="/models")
        deployments = omen.app.gateway.deployments.by_id
        with trio.fail_after(5):
            while deployments["primary"].breaker.state != "open":
                await trio.sleep(0.02)
        status = (await http.get("/v1/providers/status")).json()
        primary = next(d for p in status["data"] for d in p["deployments"] if d["id"] == "primary")
        assert primary["status"] == "down" and primary["requests"] >= 3
