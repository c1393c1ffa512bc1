"""The router's plans: groups, strategies, tiers, fallbacks, ``auto``, policies, provider preferences and
the capability filter, built from real configs (omen.toml through the loader) with a seeded RNG.
Unit tests of pure logic: no sockets, no clocks but the statistics' own."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from omen.api.chat import ChatCompletionRequest
from omen.config.loader import load_config
from omen.errors import OmenError
from omen.pipeline.gateway import Gateway
from omen.providers.base import ChatCall
from omen.routing.router import RoutePlan, Router
from tests.conftest import to_toml

DEAD = "http://127.0.0.1:9/v1"  # never contacted: planning does no I/O


def provider(kind: str = "openai", **extra: Any) -> dict[str, Any]:
    if kind == "ollama":
        return {"type": "ollama", "base_url": "http://127.0.0.1:9", **extra}
    return {"type": kind, "api_key": "k", "base_url": DEAD, **extra}


BASE: dict[str, Any] = {
    "providers": {"a": provider(), "b": provider(), "c": provider(), "local": provider("ollama")},
    "models": {
        "solo": {"provider": "a", "model": "gpt-4o-mini", "aliases": ["fast"]},
        "smart": {
            "strategy": "weighted",
            "fallbacks": ["solo"],
            "deployments": [
                {"provider": "a", "model": "gpt-4o", "weight": 3},
                {"provider": "b", "model": "gpt-4o", "weight": 1},
                {"provider": "local", "model": "qwen2.5:7b", "priority": 2},
            ],
        },
    },
}


def build(tmp_path: Path, tree: dict[str, Any], seed: int = 7) -> tuple[Gateway, Router]:
    path = tmp_path / "omen.toml"
    path.write_text(to_toml(tree))
    config = load_config(str(path), env={}).config
    gw = Gateway.from_config(config)
    return gw, Router(config, gw.table, gw.deployments, gw.providers, rng=random.Random(seed))


def chat(model: str, text: str = "hello", **extra: Any) -> ChatCompletionRequest:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return msgspec.json.decode(orjson.dumps(body), type=ChatCompletionRequest)


def ids(plan: RoutePlan) -> list[str]:
    return [c.deployment.id for c in plan.candidates]


def with_models(**models: Any) -> dict[str, Any]:
    return {**BASE, "models": {**BASE["models"], **models}}


# ---- single models and the fast path ---------------------------------------------------------------


def test_single_model_is_a_prebuilt_plan(tmp_path) -> None:
    gw, router = build(tmp_path, BASE)
    plan = router.plan("solo", chat("solo"))
    assert ids(plan) == ["a/gpt-4o-mini"] and plan.reason == "model"
    assert router.plan("solo", chat("solo")) is plan  # built once, at startup
    alias = router.plan("fast", chat("fast"))
    assert alias.candidates[0].deployment is plan.candidates[0].deployment
    assert alias.candidates[0].public_model == "fast" and alias.public_model == "solo"
    # a configured model is a group of one, so its deployment has statistics and a breaker
    assert gw.deployments.group("solo").single is plan.candidates[0].deployment
    assert plan.candidates[0].deployment.breaker is not None


def test_names_outside_the_config_resolve_through_the_table(tmp_path) -> None:
    _, router = build(tmp_path, BASE)
    plan = router.plan("b/some-model", chat("b/some-model"))
    assert ids(plan) == ["b/some-model"] and plan.candidates[0].reason == "provider-prefix"
    again = router.plan("b/some-model", chat("b/some-model"))
    assert again.candidates[0].deployment is plan.candidates[0].deployment  # stats kept per deployment
    with pytest.raises(OmenError) as exc:
        router.plan("nope", chat("nope"))
    assert exc.value.status == 404 and exc.value.code == "model_not_found"


# ---- strategies and tiers -----------------------------------------------------------------------


def test_weighted_lands_within_two_points_over_10000_decisions(tmp_path) -> None:
    _, router = build(tmp_path, BASE)
    first = Counter(router.plan("smart", chat("smart")).candidates[0].deployment.id for _ in range(10_000))
    assert abs(first["a/gpt-4o"] / 10_000 - 0.75) < 0.02
    assert abs(first["b/gpt-4o"] / 10_000 - 0.25) < 0.02
    assert "local/qwen2.5:7b" not in first  # tier 2 never comes first while tier 1 can serve


def test_tiers_then_fallbacks_in_order(tmp_path) -> None:
    _, router = build(tmp_path, BASE)
    plan = router.plan("smart", chat("smart"))
    assert set(ids(plan)[:2]) == {"a/gpt-4o", "b/gpt-4o"}
    assert ids(plan)[2:] == ["local/qwen2.5:7b", "a/gpt-4o-mini"]
    assert [c.tier for c in plan.candidates[:3]] == [1, 1, 2]
    assert plan.candidates[3].reason.startswith("fallback of 'smart'")
    assert "group 'smart'" in plan.reason and plan.group is not None and plan.group.name == "smart"


def test_least_busy_latency_and_cost(tmp_path) -> None:
    tree = with_models(
        busy={
            "strategy": "least-busy",
            "deployments": [{"provider": "a", "model": "m"}, {"provider": "b", "model": "m"}],
        },
        quick={"strategy": "latency", "deployments": [{"provider": p, "model": "m"} for p in "abc"]},
    )
    gw, router = build(tmp_path, tree)
    busy = gw.deployments.group("busy").deployments
    busy[0].stats.in_flight = 5
    assert ids(router.plan("busy", chat("busy")))[0] == "b/m"
    busy[1].stats.in_flight = 9
    assert ids(router.plan("busy", chat("busy")))[0] == "a/m"

    a, b, c = gw.deployments.group("quick").deployments
    a.stats.finish(True, 0.5, 2.0)
    b.stats.finish(True, 0.1, 3.0)
    # c has never been tried: it goes first so it gets measured
    assert ids(router.plan("quick", chat("quick")))[0] == "c/m"
    c.stats.finish(True, 0.9, 1.0)
    assert ids(router.plan("quick", chat("quick", stream=True), stream=True)) == ["b/m#2", "a/m#2", "c/m"]
    assert ids(router.plan("quick", chat("quick"))) == ["c/m", "a/m#2", "b/m#2"]  # total latency

    # prices from the catalog (gpt-4o, gpt-4o-mini) for the request's estimated tokens
    tree = with_models(
        cheap={
            "strategy": "cost",
            "deployments": [
                {"provider": "a", "model": "gpt-4o", "id": "dear"},
                {"provider": "b", "model": "gpt-4o-mini", "id": "bargain"},
                {"provider": "c", "model": "house-model", "id": "unpriced"},
            ],
        }
    )
    _, router = build(tmp_path, tree)
    plan = router.plan("cheap", chat("cheap", "x" * 4000, max_tokens=500))
    assert ids(plan) == ["bargain", "dear", "unpriced"]  # unknown prices last
    assert plan.candidates[0].score < plan.candidates[1].score


def test_score_prefers_healthy_fast_deployments(tmp_path) -> None:
    tree = with_models(
        scored={"strategy": "score", "deployments": [{"provider": p, "model": "m"} for p in "abc"]},
    )
    tree["routing"] = {"breaker": {"min_requests": 2, "error_rate": 0.5, "cooldown_s": 60}}
    gw, router = build(tmp_path, tree)
    a, b, c = gw.deployments.group("scored").deployments
    for _ in range(3):
        a.stats.finish(False, None, 0.1)
        a.breaker.record(False)
    b.stats.finish(True, 2.0, 4.0)
    c.stats.finish(True, 0.2, 0.4)
    plan = router.plan("scored", chat("scored"))
    assert a.breaker.state == "open"
    assert ids(plan) == ["c/m", "b/m", "a/m"]
    scores = [cand.score for cand in plan.candidates]
    assert scores == sorted(scores, reverse=True)


def test_sticky_group_keeps_a_user_on_one_deployment(tmp_path) -> None:
    tree = with_models(
        ab={
            "sticky": "user",
            "deployments": [
                {"provider": "a", "model": "m", "weight": 90, "id": "control"},
                {"provider": "b", "model": "m", "weight": 10, "id": "canary"},
            ],
        }
    )
    _, router = build(tmp_path, tree)
    for user in ("alice", "bob", "carol"):
        firsts = {ids(router.plan("ab", chat("ab", user=user)))[0] for _ in range(50)}
        assert len(firsts) == 1  # never switches
    header = {ids(router.plan("ab", chat("ab"), headers={"x-omen-user": "dave"}))[0] for _ in range(20)}
    assert len(header) == 1
    share = Counter(ids(router.plan("ab", chat("ab", user=f"user-{i}")))[0] for i in range(10_000))
    assert abs(share["canary"] / 10_000 - 0.10) < 0.02


def test_priority_hint_orders_by_cost(tmp_path) -> None:
    tree = with_models(
        mixed={
            "deployments": [
                {"provider": "a", "model": "gpt-4o", "id": "dear", "weight": 100},
                {"provider": "b", "model": "gpt-4o-mini", "id": "bargain", "weight": 1},
            ],
        }
    )
    _, router = build(tmp_path, tree)
    plan = router.plan("mixed", chat("mixed", tags={"priority": "low-cost"}))
    assert ids(plan) == ["bargain", "dear"] and "low-cost" in plan.reason
    plan = router.plan("mixed", chat("mixed"), headers={"x-omen-priority": "low-cost"})
    assert ids(plan)[0] == "bargain"


# ---- request-level models and provider preferences --------------------------------------------------


def test_request_models_fallback_list(tmp_path) -> None:
    _, router = build(tmp_path, BASE)
    plan = router.plan("solo", chat("solo", models=["c/other", "smart"]))
    assert ids(plan)[:2] == ["a/gpt-4o-mini", "c/other"]
    assert set(ids(plan)[2:4]) == {"a/gpt-4o", "b/gpt-4o"}
    assert plan.candidates[1].reason == "models[0]"


def test_provider_preferences(tmp_path) -> None:
    _, router = build(tmp_path, BASE)
    plan = router.plan("smart", chat("smart", provider={"order": ["b", "local"]}))
    assert ids(plan)[:2] == ["b/gpt-4o", "local/qwen2.5:7b"]
    assert set(ids(plan)[2:]) == {"a/gpt-4o", "a/gpt-4o-mini"}
    plan = router.plan("smart", chat("smart", provider={"order": ["b"], "allow_fallbacks": False}))
    assert ids(plan) == ["b/gpt-4o"]
    plan = router.plan("smart", chat("smart", provider={"ignore": ["a"]}))
    assert ids(plan) == ["b/gpt-4o", "local/qwen2.5:7b"]
    plan = router.plan("smart", chat("smart", provider={"allow_fallbacks": False}))
    assert len(plan.candidates) == 1
    with pytest.raises(OmenError) as exc:
        router.plan("smart", chat("smart", provider={"order": ["nobody"], "allow_fallbacks": False}))
    assert exc.value.status == 400 and exc.value.param == "provider"


def test_capabilities_filter_and_require_parameters(tmp_path) -> None:
    tree = with_models(
        vis={
            "deployments": [
                {"provider": "a", "model": "gpt-3.5-turbo", "id": "blind"},  # catalog: no vision
                {"provider": "b", "model": "gpt-4o", "id": "sighted"},
                {"provider": "c", "model": "house-model", "id": "unknown"},
            ],
        }
    )
    _, router = build(tmp_path, tree)
    image = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    body = {"model": "vis", "messages": [{"role": "user", "content": image}]}
    request = msgspec.json.decode(orjson.dumps(body), type=ChatCompletionRequest)
    plan = router.plan("vis", request)
    assert "blind" not in ids(plan) and set(ids(plan)) == {"sighted", "unknown"}
    body["provider"] = {"require_parameters": True}
    request = msgspec.json.decode(orjson.dumps(body), type=ChatCompletionRequest)
    assert ids(router.plan("vis", request)) == ["sighted"]  # unknown support does not count


# ---- auto and policies ------------------------------------------------------------------------------

AUTO_TREE: dict[str, Any] = {
    **BASE,
    "routing": {
        "auto": {"code": "smart", "vision": "solo", "default": "solo", "prefer_local_for": ["reasoning"]},
    },
}


def test_auto_maps_intents_to_models(tmp_path) -> None:
    _, router = build(tmp_path, AUTO_TREE)
    code = "Fix this function:\n```python\ndef add(a, b):\n    return a - b\n```"
    plan = router.plan("auto", chat("auto", code))
    assert plan.intent is not None and plan.intent.name == "code"
    assert plan.public_model == "smart" and ids(plan)[0] in ("a/gpt-4o", "b/gpt-4o")
    assert "auto: intent code" in plan.reason
    plan = router.plan("auto", chat("auto", "hi there"))
    assert plan.intent.name == "chat" and ids(plan) == ["a/gpt-4o-mini"]  # default
    hinted = router.plan("auto", chat("auto", "hi there", tags={"intent": "code"}))
    assert hinted.intent.name == "code" and hinted.intent.source == "hint" and hinted.public_model == "smart"


def test_auto_prefer_local(tmp_path) -> None:
    _, router = build(tmp_path, AUTO_TREE)
    plan = router.plan("auto", chat("auto", "x", tags={"intent": "reasoning"}))
    # reasoning -> default "solo", but reasoning is in prefer_local_for: the Ollama deployment first
    assert ids(plan) == ["local/qwen2.5:7b", "a/gpt-4o-mini"]
    assert "local first" in plan.reason


def test_auto_without_mapping_is_a_400(tmp_path) -> None:
    _, router = build(tmp_path, BASE)
    with pytest.raises(OmenError) as exc:
        router.plan("auto", chat("auto", "hello"))
    assert exc.value.status == 400 and exc.value.code == "auto_not_configured"


POLICY_TREE: dict[str, Any] = {
    **BASE,
    "routing": {
        "policies": [
            {"name": "no-interns", "teams": ["interns"], "action": "deny", "message": "Not for interns."},
            {"name": "cap", "models": ["solo"], "action": "rewrite", "cap": {"max_tokens": 100}},
            {"name": "to-smart", "headers": {"x-route": "smart"}, "action": "route", "route": "smart"},
        ]
    },
}


def test_policies_deny_rewrite_route(tmp_path) -> None:
    _, router = build(tmp_path, POLICY_TREE)
    with pytest.raises(OmenError) as exc:
        router.plan("solo", chat("solo"), headers={"x-omen-team": "interns"})
    assert exc.value.status == 403 and exc.value.message == "Not for interns."
    request = chat("solo", max_tokens=5000)
    plan = router.plan("solo", request)
    assert request.max_tokens == 100 and plan.rewrites == ["max_tokens"]
    assert plan.policy is not None and plan.policy.rule == "cap" and "cap" in plan.reason
    plan = router.plan("solo", chat("solo"), headers=[(b"x-route", b"smart")])
    assert plan.public_model == "smart" and "to-smart" in plan.reason
    assert not router.plan("solo", chat("solo", max_tokens=50)).rewrites  # under the cap: unchanged


# ---- what reaches an OpenAI-compatible upstream -----------------------------------------------------


def test_routing_fields_are_stripped_from_forwarded_bodies(tmp_path) -> None:
    gw, _ = build(tmp_path, BASE)
    openai = gw.providers["a"]
    raw = orjson.dumps(
        {
            "model": "solo",
            "messages": [{"role": "user", "content": "hi"}],
            "models": ["smart"],
            "provider": {"order": ["a"]},
            "tags": {"intent": "code"},
            "custom_field": 1,
        }
    )
    request = msgspec.json.decode(raw, type=ChatCompletionRequest)
    call = ChatCall(raw=raw, upstream_model="gpt-4o-mini", public_model="solo", request=request)
    sent = orjson.loads(openai.chat_request(call).body)
    assert "models" not in sent and "provider" not in sent and "tags" not in sent
    assert sent["custom_field"] == 1 and sent["model"] == "gpt-4o-mini"
    plain = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    request = msgspec.json.decode(plain, type=ChatCompletionRequest)
    call = ChatCall(raw=plain, upstream_model="gpt-4o-mini", public_model="gpt-4o-mini", request=request)
    assert openai.chat_request(call).body is plain  # nothing to strip: the client's bytes as they are
