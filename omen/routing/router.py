"""The router: which deployments may serve a request, in the order they are tried, and why.

``Router.plan`` resolves, in this order:

1. the request's intent, when ``model = "auto"`` or a policy rule matches on intents (R2 classifier);
2. the policy engine (``[[routing.policies]]``): deny (403), rewrite parameters, or route to a model
   or a split arm;
3. ``auto``: intent -> ``[routing.auto]`` model; for intents in ``prefer_local_for`` an Ollama
   deployment goes first;
4. the model, then the request's ``models`` fallback list: a configured model (or alias) expands into
   its group's deployments, tier by tier, each tier in the group's strategy order; any other name goes
   through the model table (``<provider>/<model>``, discovered models, model families);
5. the groups' ``fallbacks``;
6. the request's ``provider`` preferences (``order``, ``ignore``, ``allow_fallbacks``,
   ``require_parameters``) and the capability check: a deployment known not to support what the request
   uses is dropped while another can serve it.

A model served by one deployment with no policies, ``auto`` or request-level preferences involved gets
a plan built at startup: the fast path costs one dict lookup. Nothing here does I/O.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omen.api.chat import ChatCompletionRequest, ImagePart, message_text
from omen.catalog.check import check_chat
from omen.config.schema import OmenConfig
from omen.errors import OmenError, model_not_found
from omen.routing.deployments import Deployment
from omen.routing.groups import Deployments, ModelGroup
from omen.routing.intent import Intent, classify, priority_hint
from omen.routing.policy import (
    SESSION_HEADER,
    SESSION_METADATA,
    USER_HEADER,
    PolicyDecision,
    PolicyEngine,
    apply_rewrite,
    facts_from,
)
from omen.routing.strategies import StrategyInput, order_tier, sticky
from omen.routing.table import ModelTable

AUTO = "auto"
MAX_CANDIDATES = 16  # a plan longer than this is a configuration loop, not a fallback chain
_PRIORITY_STRATEGY = {"low-latency": "latency", "low-cost": "cost"}
_DEFAULT_OUTPUT_TOKENS = 256  # cost estimate when the request sets no output limit


@dataclass(slots=True)
class Candidate:
    deployment: Deployment
    public_model: str  # the configured model (group) this deployment serves in this plan
    reason: str  # why it is in the plan at this place ("tier 1, weighted", "fallback of 'smart'"...)
    score: float | None = None  # the strategy's figure (weight, in-flight, latency ms, cost, score)
    group: ModelGroup | None = None
    tier: int = 1


@dataclass(slots=True)
class RoutePlan:
    requested: str  # the model the client asked for
    public_model: str  # the model the request is served as (after auto and policies)
    candidates: list[Candidate]
    reason: str
    intent: Intent | None = None
    policy: PolicyDecision | None = None
    rewrites: list[str] = field(default_factory=list)  # request parameters a policy changed
    group: ModelGroup | None = None  # the primary group, when the model is a configured one

    @property
    def hedge(self) -> bool:
        return self.group is not None and self.group.hedge and len(self.candidates) > 1


class _Headers:
    """The request's headers as a lower-case str mapping, built only if something reads them."""

    __slots__ = ("_map", "_raw")

    def __init__(self, raw: Mapping[str, str] | Iterable[tuple[bytes, bytes]] | None) -> None:
        self._raw = raw
        self._map: dict[str, str] | None = None

    def map(self) -> dict[str, str]:
        if self._map is None:
            raw = self._raw
            if raw is None:
                self._map = {}
            elif isinstance(raw, Mapping):
                self._map = {str(k).lower(): v for k, v in raw.items()}
            else:
                out: dict[str, str] = {}
                for name, value in raw:
                    out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
                self._map = out
        return self._map


def _has_preferences(request: Any) -> bool:
    return getattr(request, "models", None) is not None or getattr(request, "provider", None) is not None


class Router:
    def __init__(
        self,
        config: OmenConfig,
        table: ModelTable,
        deployments: Deployments,
        providers: Iterable[str],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.table = table
        self.deployments = deployments
        self.providers = frozenset(providers)
        self.rng = rng or random.Random()
        routing = config.routing
        self.auto = routing.auto
        w = routing.score
        self.weights = (w.health, w.latency, w.error_rate, w.cost, w.capacity, w.capability)
        self.policies = PolicyEngine(routing.policies, self.rng) if routing.policies else None
        self._policy_needs_intent = any(rule.intents for rule in routing.policies)
        # The fast path: a plan per single-deployment model (and its aliases), built once.
        self.fixed: dict[str, RoutePlan] = {}
        for name, group in deployments.groups.items():
            group.all_served = all(d.provider_id in self.providers for d in group.deployments)
            single = group.single
            if single is not None and single.provider_id in self.providers:
                via = "alias" if name != group.name else "model"
                candidate = Candidate(single, name, via, group=group)
                self.fixed[name] = RoutePlan(name, group.name, [candidate], via, group=group)
        for name, route in table.routes.items():  # the demo model: a table route with no group
            if name not in self.fixed and deployments.group(name) is None and route.provider_id in self.providers:
                candidate = Candidate(deployments.for_route(route), name, route.via)
                self.fixed[name] = RoutePlan(name, name, [candidate], route.via)

    # ---- planning ------------------------------------------------------------------------------

    def plan(
        self,
        model: str,
        request: Any = None,
        headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]] | None = None,
        key_id: str | None = None,
        *,
        stream: bool = False,
    ) -> RoutePlan:
        """The ordered candidates for ``request`` asking for ``model``. Raises OmenError: 404 for an
        unknown model, 403 for a policy deny, 400 when ``auto`` has no mapping for the intent or no
        deployment satisfies the provider preferences."""
        if self.policies is None and model != AUTO and not _has_preferences(request):
            fixed = self.fixed.get(model)
            if fixed is not None:
                return fixed
        return self._plan(model, request, _Headers(headers), key_id, stream)

    def _plan(self, model: str, request: Any, headers: _Headers, key_id: str | None, stream: bool) -> RoutePlan:
        chat = request if isinstance(request, ChatCompletionRequest) else None
        reasons: list[str] = []
        intent: Intent | None = None
        if chat is not None and (model == AUTO or self._policy_needs_intent):
            intent = self._classify(chat, headers)
        decision: PolicyDecision | None = None
        rewrites: list[str] = []
        target = model
        if self.policies is not None and request is not None:
            decision = self.policies.evaluate(facts_from(request, headers.map(), key_id, intent))
            if decision is not None:
                if decision.action == "deny":
                    raise decision.error()
                if chat is not None and (decision.set or decision.cap):
                    rewrites = apply_rewrite(chat, decision)
                if decision.action == "route" and decision.target:
                    target = decision.target
                reasons.append(decision.describe())
        local_first: Deployment | None = None
        if target == AUTO:
            if intent is None:
                intent = (
                    self._classify(chat, headers)
                    if chat is not None
                    else Intent("chat", "not a chat request", "default")
                )
            target, local_first = self._auto(intent)
            # the classifier's own reason quotes prompt words: it stays in /admin/routing/explain, out of the
            # response header and the access log
            why = f"auto: intent {intent.name} (by {intent.source}) -> '{target}'"
            reasons.append(why + (f"; local first ({local_first.id})" if local_first is not None else ""))
        inp = self._strategy_input(request, chat, headers, stream)
        override = None
        if chat is not None and (chat.tags or "x-omen-priority" in headers.map()):
            hint = priority_hint(chat, headers.map())
            override = _PRIORITY_STRATEGY.get(hint or "")
            if override is not None:
                reasons.append(f"priority {hint}: {override} order")
        candidates: list[Candidate] = []
        seen: set[int] = set()
        if local_first is not None:
            candidates.append(Candidate(local_first, target, "prefer_local_for " + intent.name if intent else "local"))
            seen.add(id(local_first))
        primary = self.deployments.group(target)
        names = [target, *(getattr(request, "models", None) or [])]
        groups: list[ModelGroup] = []
        for i, name in enumerate(names):
            where = "model" if i == 0 else f"models[{i - 1}]"
            group = self._expand(name, where, inp, override, candidates, seen)
            if group is not None:
                groups.append(group)
        visited = {g.name for g in groups}
        queue = list(groups)
        while queue and len(candidates) < MAX_CANDIDATES:
            group = queue.pop(0)
            for name in group.fallbacks:
                fallback = self.deployments.group(name)
                if fallback is not None and fallback.name in visited:
                    continue
                found = self._expand(name, f"fallback of '{group.name}'", inp, override, candidates, seen)
                if found is not None:
                    visited.add(found.name)
                    queue.append(found)
        candidates = self._filter(candidates, request, chat, inp)
        del candidates[MAX_CANDIDATES:]
        if primary is not None:
            reasons.append(f"group '{primary.name}': {len(primary.deployments)} deployment(s), {primary.strategy}")
        elif not reasons:
            reasons.append(candidates[0].reason)
        return RoutePlan(
            requested=model,
            public_model=primary.name if primary is not None else target,
            candidates=candidates,
            reason="; ".join(reasons),
            intent=intent,
            policy=decision,
            rewrites=rewrites,
            group=primary,
        )

    def expand(self, names: Iterable[str], why: str, request: Any = None, *, stream: bool = False) -> list[Candidate]:
        """Candidates for the given models (context-window / content-filter fallbacks of the executor)."""
        chat = request if isinstance(request, ChatCompletionRequest) else None
        inp = self._strategy_input(request, chat, _Headers(None), stream)
        out: list[Candidate] = []
        seen: set[int] = set()
        for name in names:
            try:
                self._expand(name, why, inp, None, out, seen)
            except OmenError:
                continue  # a fallback that no longer resolves (a discovered model gone) is skipped
        return self._filter(out, request, chat, inp)

    # ---- steps -----------------------------------------------------------------------------------

    def _classify(self, chat: ChatCompletionRequest, headers: _Headers) -> Intent:
        return classify(chat, headers.map(), self.auto.long_threshold_tokens)

    def _auto(self, intent: Intent) -> tuple[str, Deployment | None]:
        target = getattr(self.auto, intent.name, None) if intent.name != "default" else None
        target = target or self.auto.default
        if target is None:
            raise OmenError(
                400,
                f"model 'auto' found the intent '{intent.name}', but [routing.auto] maps no model to it "
                "and sets no default.",
                code="auto_not_configured",
                param="model",
            )
        local = None
        if intent.name in self.auto.prefer_local_for:
            local = self._local_deployment(target)
        return target, local

    def _local_deployment(self, target: str) -> Deployment | None:
        """An Ollama deployment for ``prefer_local_for``: the target group's own first, else any
        configured group's (in config order)."""
        group = self.deployments.group(target)
        pools = [group] if group is not None else []
        pools += [g for g in self.deployments.groups.values() if g is not group]
        for pool in pools:
            for tier in pool.tiers:
                for d in tier:
                    if d.local and d.provider_id in self.providers and d.breaker_state() != "open":
                        return d
        return None

    def _strategy_input(
        self, request: Any, chat: ChatCompletionRequest | None, headers: _Headers, stream: bool
    ) -> StrategyInput:
        inp = StrategyInput(rng=self.rng, stream=stream, weights=self.weights)  # type: ignore[arg-type]
        if chat is not None:
            # a cheap estimate (4 characters a token) for the cost strategy and the limiter's TPM
            chars = sum(len(message_text(getattr(m, "content", None))) for m in chat.messages)
            inp.prompt_tokens = chars // 4 + 1
            limit = chat.max_completion_tokens if chat.max_completion_tokens is not None else chat.max_tokens
            inp.output_tokens = limit if limit is not None else _DEFAULT_OUTPUT_TOKENS
            inp.fit = _Fit(chat).fit
        if request is not None:
            heads = headers.map()
            inp.user = heads.get(USER_HEADER) or getattr(request, "user", None) or None
            metadata = {**(getattr(request, "metadata", None) or {}), **(getattr(request, "tags", None) or {})}
            inp.session = heads.get(SESSION_HEADER) or metadata.get(SESSION_METADATA) or None
        return inp

    def _expand(
        self,
        name: str,
        why: str,
        inp: StrategyInput,
        override: str | None,
        out: list[Candidate],
        seen: set[int],
    ) -> ModelGroup | None:
        group = self.deployments.group(name)
        if group is None:
            route = self.table.resolve(name)  # 404 model_not_found for an unknown name
            if route.provider_id not in self.providers:
                raise model_not_found(name)
            d = self.deployments.for_route(route)
            if id(d) not in seen:
                seen.add(id(d))
                out.append(Candidate(d, name, why if why != "model" else route.via))
            return None
        strategy = override or group.strategy
        key = None
        if group.sticky and override is None:
            key = inp.user if group.sticky == "user" else inp.session
            if key:
                strategy = "sticky"
        for number, tier in enumerate(group.tiers, start=1):
            usable = tier if group.all_served else [d for d in tier if d.provider_id in self.providers]
            if not usable:
                continue
            if strategy == "sticky":
                ordered = sticky(usable, inp, key, group.name)
            else:
                ordered = order_tier(strategy, usable, inp)
            label = (
                f"tier {number}, {strategy}" if why == "model" else f"{why}: '{group.name}' tier {number}, {strategy}"
            )
            for d, value in ordered:
                if id(d) in seen:
                    continue
                seen.add(id(d))
                out.append(Candidate(d, name, label, value, group, number))
        return group

    def _filter(
        self, candidates: list[Candidate], request: Any, chat: ChatCompletionRequest | None, inp: StrategyInput
    ) -> list[Candidate]:
        prefs = getattr(request, "provider", None)
        if prefs is not None:
            candidates = _apply_preferences(candidates, prefs)
            if prefs.require_parameters and chat is not None and inp.fit is not None:
                candidates = [c for c in candidates if inp.fit(c.deployment) >= 1.0]
            if not candidates:
                raise OmenError(
                    400,
                    f"No deployment of '{request.model}' satisfies the request's provider preferences.",
                    code="no_route",
                    param="provider",
                )
        if chat is not None and inp.fit is not None and len(candidates) > 1:
            # a deployment known not to support what the request uses is dropped while another can
            # serve it; when none can, the first stays so the client gets the capability error (400)
            able = [c for c in candidates if inp.fit(c.deployment) > 0.0]
            if able:
                candidates = able
        return candidates


def _apply_preferences(candidates: list[Candidate], prefs: Any) -> list[Candidate]:
    ignore = set(prefs.ignore or ())
    if ignore:
        candidates = [c for c in candidates if c.deployment.provider_id not in ignore and c.deployment.id not in ignore]
    if prefs.order:
        rank = {name: i for i, name in enumerate(prefs.order)}
        big = len(rank)

        def position(c: Candidate) -> int:
            d = c.deployment
            return min(rank.get(d.id, big), rank.get(d.provider_id, big))

        preferred = sorted((c for c in candidates if position(c) < big), key=position)
        rest = [c for c in candidates if position(c) >= big]
        return preferred + (rest if prefs.allow_fallbacks else [])
    if not prefs.allow_fallbacks:
        return candidates[:1]  # OpenRouter: without an order, no fallback means the first choice only
    return candidates


class _Fit:
    """Capability fit of each deployment for one request, computed once per deployment.

    0.0: known not to support something the request uses (``check_chat`` refuses it); 0.5: it uses
    something whose support is unknown; 1.0: everything used is known to be supported."""

    __slots__ = ("_cache", "_needs", "chat")

    def __init__(self, chat: ChatCompletionRequest) -> None:
        self.chat = chat
        self._cache: dict[int, float] = {}
        needs = []
        if any(
            isinstance(p, ImagePart)
            for m in chat.messages
            if isinstance(getattr(m, "content", None), list)
            for p in m.content
        ):
            needs.append("vision")
        if chat.tools or chat.functions:
            needs.append("tools")
        if (chat.response_format or {}).get("type") in ("json_object", "json_schema"):
            needs.append("json_mode")
        self._needs = tuple(needs)

    def fit(self, d: Deployment) -> float:
        key = id(d)
        value = self._cache.get(key)
        if value is None:
            value = self._compute(d)
            self._cache[key] = value
        return value

    def _compute(self, d: Deployment) -> float:
        caps = d.capabilities
        try:
            check_chat(caps, d.upstream_model, self.chat)
        except OmenError:
            return 0.0
        if any(getattr(caps, need) is None for need in self._needs):
            return 0.5
        return 1.0
