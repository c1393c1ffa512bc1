"""The policy engine: every match field, rule order, deny, rewrites and caps, time windows, splits, and
the config-time validation the loader runs."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import orjson
import pytest

from omen.api.chat import ChatCompletionRequest
from omen.config.loader import ConfigError, load_config
from omen.config.schema import PolicyRule
from omen.routing.policy import (
    PolicyDecision,
    PolicyEngine,
    RequestFacts,
    apply_rewrite,
    facts_from,
    patch_body,
    validate_rules,
)

SUNDAY_NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # 2026-11-22 is a Sunday


def rule(**fields: Any) -> PolicyRule:
    return msgspec.convert(fields, PolicyRule)  # as the loader builds it from TOML


def facts(model: str = "gpt-4o", **fields: Any) -> RequestFacts:
    fields.setdefault("now", SUNDAY_NOON)
    return RequestFacts(model=model, **fields)


def chat(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **fields}
    return msgspec.json.decode(orjson.dumps(body), type=ChatCompletionRequest)


def decide(rules: list[PolicyRule], f: RequestFacts) -> PolicyDecision | None:
    return PolicyEngine(rules, rng=random.Random(0)).evaluate(f)


def matches(r: PolicyRule, f: RequestFacts) -> bool:
    return decide([r], f) is not None


# ---- facts -----------------------------------------------------------------------------------------


class _Intent:
    name = "code"
    reason = "fenced code"
    source = "classifier"


def test_facts_from_a_request() -> None:
    req = chat(user="body-user", metadata={"env": "prod", "session_id": "s-meta"}, tags={"env": "staging"})
    f = facts_from(req, {"X-Omen-Team": "ml", "Accept": "x"}, "master", "code", now=SUNDAY_NOON)
    assert (f.model, f.intent, f.api_key_id, f.team) == ("gpt-4o", "code", "master", "ml")
    assert f.user == "body-user" and f.session == "s-meta"
    assert f.metadata == {"env": "staging", "session_id": "s-meta"}  # tags win over metadata
    assert f.headers["accept"] == "x" and f.now == SUNDAY_NOON


def test_facts_user_and_session_precedence() -> None:
    req = chat(user="body-user", safety_identifier="safety-id", metadata={"session_id": "s-meta"})
    headers = [(b"x-omen-user", b"header-user"), (b"X-Omen-Session", b"s-head")]  # the ASGI form
    f = facts_from(req, headers, None, None)
    assert (f.user, f.session) == ("header-user", "s-head")
    assert facts_from(req, {}, None, None).user == "body-user"
    assert facts_from(chat(safety_identifier="safety-id"), {}, None, None).user == "safety-id"
    assert facts_from(chat(), {}, None, None).user is None
    # a user/team from an authenticated key wins over anything the client says
    keyed = facts_from(req, {"x-omen-team": "t", "x-omen-user": "u"}, "k1", None, team="key-team", user="key-user")
    assert (keyed.team, keyed.user) == ("key-team", "key-user")


def test_facts_take_an_intent_object_and_normalise_time_to_utc() -> None:
    moscow = timezone(timedelta(hours=3))
    f = facts_from(chat(), {}, None, _Intent(), now=datetime(2026, 11, 23, 1, 30, tzinfo=moscow))
    assert f.intent == "code"
    assert (f.now.weekday(), f.now.hour) == (6, 22)  # Sunday 22:30 UTC
    assert RequestFacts(model="m", headers={"X-A": "1"}).headers == {"x-a": "1"}


# ---- match fields ----------------------------------------------------------------------------------


def test_api_keys() -> None:
    r = rule(api_keys=["master"], route="a")
    assert matches(r, facts(api_key_id="master"))
    assert not matches(r, facts(api_key_id=None)) and not matches(r, facts(api_key_id="vk-1"))
    assert matches(rule(api_keys=["vk-1", "vk-2"], route="a"), facts(api_key_id="vk-2"))


def test_teams_and_users() -> None:
    assert matches(rule(teams=["ml"], route="a"), facts(team="ml"))
    assert not matches(rule(teams=["ml"], route="a"), facts(team="web"))
    assert not matches(rule(teams=["ml"], route="a"), facts())
    assert matches(rule(users=["ann", "bob"], route="a"), facts(user="bob"))
    assert not matches(rule(users=["ann"], route="a"), facts(user="annie"))
    # through the request: header team, body user
    f = facts_from(chat(user="ann"), {"x-omen-team": "ml"}, None, None, now=SUNDAY_NOON)
    assert matches(rule(teams=["ml"], users=["ann"], route="a"), f)


def test_models_are_fnmatch_patterns_auto_included() -> None:
    r = rule(models=["gpt-4*", "claude-?-sonnet"], route="a")
    assert matches(r, facts("gpt-4o")) and matches(r, facts("claude-3-sonnet"))
    assert not matches(r, facts("gpt-3.5-turbo")) and not matches(r, facts("claude-35-sonnet"))
    assert matches(rule(models=["auto"], route="a"), facts("auto"))
    assert not matches(rule(models=["auto"], route="a"), facts("autopilot"))
    assert not matches(rule(models=["GPT-4O"], route="a"), facts("gpt-4o"))  # case-sensitive, on every OS


def test_intents_need_a_classified_intent() -> None:
    r = rule(intents=["code", "reasoning"], route="a")
    assert matches(r, facts("auto", intent="code"))
    assert not matches(r, facts("auto", intent="chat"))
    assert not matches(r, facts("auto", intent=None))  # not classified: an intents rule cannot match


def test_headers_names_are_case_insensitive_values_fnmatch() -> None:
    r = rule(headers={"X-Tenant": "acme-*"}, route="a")
    assert matches(r, facts(headers={"x-tenant": "acme-eu"}))
    assert matches(r, facts(headers={"X-TENANT": "acme-us"}))
    assert not matches(r, facts(headers={"x-tenant": "globex"}))
    assert not matches(r, facts())  # an absent header does not match, not even "*"
    both = rule(headers={"x-a": "1", "x-b": "*"}, route="a")
    assert matches(both, facts(headers={"x-a": "1", "x-b": ""})) and not matches(both, facts(headers={"x-a": "1"}))


def test_metadata_and_tags() -> None:
    r = rule(metadata={"env": "prod*", "tier": "gold"}, route="a")
    assert matches(r, facts(metadata={"env": "production", "tier": "gold"}))
    assert not matches(r, facts(metadata={"env": "production"}))
    f = facts_from(chat(metadata={"env": "prod"}, tags={"tier": "gold"}), {}, None, None, now=SUNDAY_NOON)
    assert matches(r, f)


def test_hours_in_utc_with_a_fixed_now() -> None:
    office = rule(hours="09:00-18:00", route="a")
    at = lambda h, m=0: facts(now=datetime(2026, 11, 22, h, m, tzinfo=UTC))  # noqa: E731
    assert matches(office, at(9)) and matches(office, at(17, 59)) and matches(office, at(12))
    assert not matches(office, at(8, 59)) and not matches(office, at(18)) and not matches(office, at(23))
    whole_day = rule(hours="00:00-24:00", route="a")
    assert matches(whole_day, at(0)) and matches(whole_day, at(23, 59))


def test_hours_wrapping_midnight() -> None:
    night = rule(hours="22:00-06:00", route="a")
    at = lambda h, m=0: facts(now=datetime(2026, 11, 22, h, m, tzinfo=UTC))  # noqa: E731
    assert matches(night, at(22)) and matches(night, at(23, 59)) and matches(night, at(0)) and matches(night, at(5, 59))
    assert not matches(night, at(6)) and not matches(night, at(12)) and not matches(night, at(21, 59))
    # a non-UTC now is compared in UTC: 01:00 at +03:00 is 22:00 UTC
    plus3 = timezone(timedelta(hours=3))
    assert matches(night, facts(now=datetime(2026, 11, 23, 1, 0, tzinfo=plus3)))


def test_days() -> None:
    weekend = rule(days=["sat", "Sun"], route="a")
    assert matches(weekend, facts(now=SUNDAY_NOON))
    assert not matches(weekend, facts(now=SUNDAY_NOON + timedelta(days=1)))  # Monday
    assert matches(weekend, facts(now=SUNDAY_NOON - timedelta(days=1)))  # Saturday
    weeknights = rule(days=["mon", "tue", "wed", "thu", "fri"], hours="20:00-23:00", route="a")
    assert matches(weeknights, facts(now=datetime(2026, 11, 23, 21, 0, tzinfo=UTC)))
    assert not matches(weeknights, facts(now=datetime(2026, 11, 22, 21, 0, tzinfo=UTC)))


def test_every_given_field_must_match() -> None:
    r = rule(api_keys=["master"], teams=["ml"], models=["auto"], intents=["code"], metadata={"env": "prod"}, route="a")
    full = {"api_key_id": "master", "team": "ml", "intent": "code", "metadata": {"env": "prod"}}
    assert matches(r, facts("auto", **full))
    for key, wrong in [("api_key_id", "vk"), ("team", "web"), ("intent", "chat"), ("metadata", {"env": "dev"})]:
        assert not matches(r, facts("auto", **{**full, key: wrong})), key
    assert not matches(r, facts("gpt-4o", **full))
    assert matches(rule(route="a"), facts())  # no match fields: matches everything


# ---- order, route, deny ----------------------------------------------------------------------------


def test_first_matching_rule_wins() -> None:
    rules = [
        rule(name="code-local", models=["auto"], intents=["code"], route="local"),
        rule(name="auto-default", models=["auto"], route="smart"),
        rule(name="everything", route="fallback"),
    ]
    assert decide(rules, facts("auto", intent="code")) == PolicyDecision("code-local", "route", "local")
    assert decide(rules, facts("auto", intent="chat")).rule == "auto-default"
    d = decide(rules, facts("gpt-4o"))
    assert (d.rule, d.action, d.target, d.arm) == ("everything", "route", "fallback", None)
    assert decide(rules[:2], facts("gpt-4o")) is None
    assert decide([], facts()) is None
    assert "routes to 'local'" in decide(rules, facts("auto", intent="code")).describe()


def test_unnamed_rules_are_named_by_position() -> None:
    d = decide([rule(models=["x"], route="a"), rule(route="b")], facts())
    assert d.rule == "policies[1]"


def test_deny_with_message_and_default() -> None:
    rules = [
        rule(name="no-interns-at-night", teams=["interns"], hours="20:00-08:00", action="deny"),
        rule(name="no-gpt5", models=["gpt-5*"], action="deny", message="gpt-5 is not enabled for you"),
        rule(name="rest", route="a"),
    ]
    d = decide(rules, facts("gpt-5-mini"))
    assert d.action == "deny" and d.target is None
    error = d.error()
    assert (error.status, error.code, error.message) == (403, "policy_denied", "gpt-5 is not enabled for you")
    night = facts(team="interns", now=datetime(2026, 11, 22, 23, 0, tzinfo=UTC))
    error = decide(rules, night).error()
    assert error.status == 403 and error.code == "policy_denied" and "'no-interns-at-night'" in error.message
    assert error.body()["error"]["type"] == "permission_error"
    assert decide(rules, facts(team="interns")).target == "a"  # at noon the deny does not apply


# ---- rewrites --------------------------------------------------------------------------------------


def test_rewrites_accumulate_then_the_first_route_decides() -> None:
    rules = [
        rule(name="cheap", teams=["web"], action="rewrite", cap={"max_tokens": 1024}, set={"temperature": 0}),
        rule(name="tighter", models=["gpt-4*"], action="rewrite", cap={"max_tokens": 512}),
        rule(name="looser", action="rewrite", cap={"max_tokens": 4096}, set={"temperature": 0.5, "seed": 7}),
        rule(name="to-smart", models=["gpt-4o"], route="smart"),
        rule(name="never-reached", action="rewrite", set={"seed": 1}),
    ]
    d = decide(rules, facts("gpt-4o", team="web"))
    assert (d.rule, d.action, d.target) == ("to-smart", "route", "smart")
    assert d.rewrites == ("cheap", "tighter", "looser")
    assert d.cap == {"max_tokens": 512}  # the lowest cap wins
    assert d.set == {"temperature": 0.5, "seed": 7}  # a later set wins
    only = decide(rules, facts("claude-3", team="web"))  # no route rule matches: rewrite only
    assert (only.action, only.rule, only.target) == ("rewrite", "cheap", None)
    assert only.rewrites == ("cheap", "looser", "never-reached") and only.set["seed"] == 1
    assert "rewrite by" in only.describe()


def test_a_deny_after_rewrites_drops_them() -> None:
    rules = [rule(action="rewrite", cap={"max_tokens": 10}), rule(name="stop", action="deny")]
    d = decide(rules, facts())
    assert d.action == "deny" and d.set == {} and d.cap == {} and d.rewrites == ()


def test_a_route_rule_may_carry_its_own_rewrite() -> None:
    d = decide([rule(name="canary", route="new", cap={"max_tokens": 256})], facts())
    assert (d.action, d.target, d.cap, d.rewrites) == ("route", "new", {"max_tokens": 256}, ("canary",))


def test_apply_rewrite_sets_then_caps() -> None:
    req = chat(temperature=1.2, max_tokens=4000, top_p=0.9, n=3)
    d = PolicyDecision(
        "r", "rewrite", set={"temperature": 0, "user": "pinned", "max_tokens": 9000}, cap={"max_tokens": 1000, "n": 1}
    )
    changed = apply_rewrite(req, d)
    assert changed == ["temperature", "user", "max_tokens", "n"]
    assert req.temperature == 0.0 and isinstance(req.temperature, float)  # TOML's 0 becomes the field's float
    assert (req.user, req.max_tokens, req.n, req.top_p) == ("pinned", 1000, 1, 0.9)  # a set cannot beat a cap
    assert apply_rewrite(req, d) == []  # idempotent


def test_caps_lower_only_and_leave_absent_parameters_alone() -> None:
    req = chat(temperature=0.3, presence_penalty=1.5)
    changed = apply_rewrite(
        req, PolicyDecision("r", "rewrite", cap={"temperature": 0.7, "presence_penalty": 1.0, "n": 2})
    )
    assert changed == ["presence_penalty"]
    assert (req.temperature, req.presence_penalty, req.n) == (0.3, 1.0, None)  # absent n stays absent


def test_output_length_caps_cover_both_names_and_absent_lengths() -> None:
    cap = PolicyDecision("r", "rewrite", cap={"max_tokens": 1024})
    absent = chat()
    assert apply_rewrite(absent, cap) == ["max_tokens"] and absent.max_tokens == 1024  # "unlimited" is capped too
    newer = chat(max_completion_tokens=8000)
    assert apply_rewrite(newer, cap) == ["max_completion_tokens"]
    assert (newer.max_completion_tokens, newer.max_tokens) == (1024, None)  # no second length field added
    small = chat(max_completion_tokens=100)
    assert apply_rewrite(small, cap) == [] and small.max_completion_tokens == 100


def test_patch_body_carries_the_rewrite_into_forwarded_bytes() -> None:
    raw = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5000,"x_vendor":1}'
    req = msgspec.json.decode(raw, type=ChatCompletionRequest)
    changed = apply_rewrite(req, PolicyDecision("r", "rewrite", set={"temperature": 0.2}, cap={"max_tokens": 100}))
    body = orjson.loads(patch_body(raw, req, changed))
    assert (body["max_tokens"], body["temperature"], body["x_vendor"]) == (100, 0.2, 1)
    assert patch_body(raw, req, []) is raw


# ---- splits through the engine ---------------------------------------------------------------------

AB_RULE = rule(
    name="ab-smart",
    models=["smart"],
    split=[{"model": "smart-a", "weight": 60}, {"model": "smart-b", "weight": 40}],
    sticky="user",
)


def test_sticky_user_never_switches_arm_even_across_engines() -> None:
    users = [f"user-{i}" for i in range(20)]
    engine = PolicyEngine([AB_RULE], rng=random.Random(1))
    first = {u: engine.evaluate(facts("smart", user=u)).arm for u in users}
    assert set(first.values()) == {"smart-a", "smart-b"}
    for _ in range(1_000):
        for u in users[:3]:
            assert engine.evaluate(facts("smart", user=u)).arm == first[u]
    fresh = PolicyEngine([AB_RULE], rng=random.Random(999))  # another process, another RNG
    for u in users:
        d = fresh.evaluate(facts("smart", user=u))
        assert (d.arm, d.target, d.split_by) == (first[u], first[u], "user")


def test_sticky_split_over_10000_users_within_2_points() -> None:
    engine = PolicyEngine([AB_RULE])
    counts = Counter(engine.evaluate(facts("smart", user=f"u{i}@corp.example")).arm for i in range(10_000))
    assert abs(counts["smart-a"] / 100 - 60) <= 2 and abs(counts["smart-b"] / 100 - 40) <= 2


def test_random_split_without_an_id_within_2_points() -> None:
    engine = PolicyEngine([AB_RULE], rng=random.Random(2026))
    decisions = [engine.evaluate(facts("smart")) for _ in range(10_000)]  # sticky by user, but no user
    assert {d.split_by for d in decisions} == {"random"}
    counts = Counter(d.arm for d in decisions)
    assert abs(counts["smart-a"] / 100 - 60) <= 2


def test_canary_by_session_five_percent() -> None:
    canary = rule(
        name="canary",
        split=[{"model": "stable", "weight": 95}, {"model": "next", "weight": 5}],
        sticky="session",
    )
    engine = PolicyEngine([canary])
    sessions = [facts_from(chat(), {"x-omen-session": f"sess-{i}"}, None, None) for i in range(10_000)]
    counts = Counter(engine.evaluate(f).arm for f in sessions)
    assert 3.0 <= counts["next"] / 100 <= 7.0, counts
    by_meta = facts_from(chat(metadata={"session_id": "sess-7"}), {}, None, None)
    assert engine.evaluate(by_meta).arm == engine.evaluate(sessions[7]).arm
    assert engine.evaluate(by_meta).split_by == "session"


def test_non_sticky_split_uses_the_injected_rng() -> None:
    r = rule(split=[{"model": "a", "weight": 1}, {"model": "b", "weight": 1}])
    one = [PolicyEngine([r], rng=random.Random(5)).evaluate(facts(user="same")).arm for _ in range(1)]
    e1, e2 = PolicyEngine([r], rng=random.Random(5)), PolicyEngine([r], rng=random.Random(5))
    seq1 = [e1.evaluate(facts(user="same")).arm for _ in range(100)]
    assert seq1 == [e2.evaluate(facts(user="same")).arm for _ in range(100)]
    assert set(seq1) == {"a", "b"} and seq1[0] == one[0]  # not sticky: the same user moves between arms


# ---- validation ------------------------------------------------------------------------------------

KNOWN = {"smart", "smart-a", "smart-b", "gpt-4o-mini"}


def problems(**fields: Any) -> dict[str, str]:
    return dict(validate_rules([rule(**fields)], KNOWN))


def test_valid_rules_have_no_problems() -> None:
    rules = [
        rule(name="rw", teams=["web"], action="rewrite", set={"temperature": 0, "reasoning_effort": "low"}),
        rule(name="cap", action="rewrite", cap={"max_tokens": 1024, "temperature": 0.7}),
        rule(name="deny", models=["gpt-5*"], action="deny", message="no"),
        AB_RULE,
        rule(models=["auto"], intents=["code"], hours="22:00-06:00", days=["sat", "sun"], route="smart"),
    ]
    assert validate_rules(rules, KNOWN) == []


def test_unknown_rewrite_parameters_are_config_errors() -> None:
    got = problems(action="rewrite", set={"temprature": 0.1})
    assert "routing.policies[0].set.temprature" in got and "temperature" in got["routing.policies[0].set.temprature"]
    assert "routing.policies[0].set.model" in problems(action="rewrite", set={"model": "x"})
    assert "routing.policies[0].set.stream" in problems(action="rewrite", set={"stream": True})  # not numeric/str
    assert "routing.policies[0].set.max_tokens" in problems(action="rewrite", set={"max_tokens": "many"})
    assert "routing.policies[0].set.temperature" in problems(action="rewrite", set={"temperature": True})
    assert "routing.policies[0].cap.user" in problems(action="rewrite", cap={"user": 1})
    assert "routing.policies[0].cap.max_tokens" in problems(action="rewrite", cap={"max_tokens": 10.5})
    assert "routing.policies[0].cap.top_p" in problems(action="rewrite", cap={"top_p": -1})


def test_other_rule_problems() -> None:
    assert "routing.policies[0].route" in problems(route="ghost")
    assert "routing.policies[0].split[1].model" in problems(
        split=[{"model": "smart", "weight": 1}, {"model": "ghost", "weight": 1}]
    )
    assert "routing.policies[0].split" in problems(split=[{"model": "smart", "weight": 0}])
    assert "routing.policies[0]" in problems(route="smart", split=[{"model": "smart", "weight": 1}])  # both
    assert "routing.policies[0]" in problems()  # a route rule with neither
    assert "routing.policies[0].name" in problems(split=[{"model": "smart", "weight": 1}], sticky="user")
    assert "routing.policies[0].sticky" in problems(name="x", route="smart", sticky="user")  # no split
    assert "routing.policies[0].sticky" in problems(name="x", split=[{"model": "smart", "weight": 1}], sticky="ip")
    assert "routing.policies[0].action" in problems(action="block")
    assert "routing.policies[0].route" in problems(action="deny", route="smart")
    assert "routing.policies[0].message" in problems(route="smart", message="hi")
    assert "routing.policies[0]" in problems(action="deny", cap={"max_tokens": 1})
    assert "routing.policies[0]" in problems(action="rewrite")
    assert "routing.policies[0].hours" in problems(route="smart", hours="9-17")
    assert "routing.policies[0].hours" in problems(route="smart", hours="25:00-02:00")
    assert "routing.policies[0].hours" in problems(route="smart", hours="10:00-10:00")
    assert "routing.policies[0].days" in problems(route="smart", days=["monday"])
    assert "routing.policies[0].intents" in problems(route="smart", intents=["coding"])
    assert "routing.policies[0].teams" in problems(route="smart", teams=[])
    dup = validate_rules([rule(name="a", route="smart"), rule(name="a", route="smart")], KNOWN)
    assert [p for p, _ in dup] == ["routing.policies[1].name"]


def test_the_loader_reports_policy_problems(tmp_path) -> None:
    path = tmp_path / "omen.toml"
    path.write_text(
        '[providers.openai]\napi_key = "k"\n[models."gpt-4o-mini"]\nprovider = "openai"\n'
        '[[routing.policies]]\nname = "cap-web"\naction = "rewrite"\ncap = { max_tokns = 100 }\n'
        '[[routing.policies]]\nmodels = ["auto"]\nroute = "nowhere"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    text = str(info.value)
    assert "routing.policies[0].cap.max_tokns" in text and "routing.policies[1].route" in text
    path.write_text(
        '[providers.openai]\napi_key = "k"\n[models."gpt-4o-mini"]\nprovider = "openai"\n'
        '[[routing.policies]]\nname = "cap-web"\naction = "rewrite"\ncap = { max_tokens = 100 }\n'
    )
    policies = load_config(str(path), env={}).config.routing.policies
    engine = PolicyEngine(policies)
    assert engine.evaluate(facts()).cap == {"max_tokens": 100.0}
