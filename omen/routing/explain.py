"""What the router decided and why, as JSON: ``GET/POST /admin/routing/explain`` and chat requests sent
with ``x-omen-dry-run: 1``. Built from a :class:`RoutePlan` and the deployments' current state; it
calls no provider."""

from __future__ import annotations

from typing import Any

from omen.routing.deployments import Deployment
from omen.routing.router import Candidate, RoutePlan


def deployment_state(d: Deployment) -> dict[str, Any]:
    """The live figures the strategies and the executor read for one deployment."""
    stats = d.stats
    state: dict[str, Any] = {
        "health": d.health(),
        "breaker": d.breaker_state(),
        "in_flight": stats.in_flight,
        "requests": stats.requests,
        "error_rate": round(stats.error_rate, 4),
        "latency_ms": _round(stats.ewma_latency_ms),
        "ttft_ms": _round(stats.ewma_ttft_ms),
        "free_capacity": round(d.free_capacity(), 4),
        "saturated": d.saturated(),
    }
    return state


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _candidate(c: Candidate) -> dict[str, Any]:
    d = c.deployment
    out: dict[str, Any] = {
        "deployment": d.id,
        "provider": d.provider_id,
        "upstream_model": d.upstream_model,
        "model": c.public_model,
        "tier": c.tier,
        "weight": d.weight,
        "reason": c.reason,
        "score": c.score,
        "state": deployment_state(d),
    }
    pricing = d.capabilities.pricing
    if pricing is not None:
        out["pricing"] = {"input": pricing.input, "output": pricing.output}
    return out


def explain(plan: RoutePlan) -> dict[str, Any]:
    intent = plan.intent
    policy = plan.policy
    return {
        "object": "routing.explain",
        "model": plan.requested,
        "public_model": plan.public_model,
        "intent": None if intent is None else {"name": intent.name, "reason": intent.reason, "source": intent.source},
        "policy": None
        if policy is None
        else {
            "rule": policy.rule,
            "action": policy.action,
            "target": policy.target,
            "arm": policy.arm,
            "split_by": policy.split_by,
            "set": policy.set,
            "cap": policy.cap,
            "rewrites": list(policy.rewrites),
            "description": policy.describe(),
        },
        "rewritten": list(plan.rewrites),
        "strategy": plan.group.strategy if plan.group is not None else None,
        "hedge": plan.hedge,
        "candidates": [_candidate(c) for c in plan.candidates],
        "reason": plan.reason,
    }
