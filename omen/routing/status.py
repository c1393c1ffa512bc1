"""``GET /v1/providers/status``: per provider and per deployment, whether it is serving.

Each deployment reports ``status`` (``operational`` | ``degraded`` | ``down``, from R1's
``health_state``: breaker state and the recent error share and latency), EWMA latency (time to the
response headers and total), the success rate over the sliding window, requests in flight, the
breaker's state and when the status last changed. A provider's status is the best of its deployments'
(one serving deployment keeps it usable), and it is ``down`` only when all of them are.

Figures are this worker's view: every worker process keeps its own statistics.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from omen.routing.deployments import Deployment
from omen.routing.groups import Deployments

_RANK = {"operational": 0, "degraded": 1, "down": 2}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


class StatusTracker:
    """Remembers when each deployment's reported status last changed (the breaker knows only its
    own transitions; a deployment can turn degraded without one)."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[str, float]] = {}

    def observe(self, d: Deployment, status: str) -> float:
        key = id(d)
        seen = self._last.get(key)
        if seen is None:
            changed = d.breaker.changed_at if d.breaker is not None else time.time()
            self._last[key] = (status, changed)
            return changed
        if seen[0] != status:
            now = time.time()
            self._last[key] = (status, now)
            return now
        return seen[1]


def deployment_status(d: Deployment, tracker: StatusTracker, groups: list[str]) -> dict[str, Any]:
    stats = d.stats
    status = d.health()
    changed = tracker.observe(d, status)
    window, failed = stats.window_counts()
    out: dict[str, Any] = {
        "id": d.id,
        "provider": d.provider_id,
        "model": d.upstream_model,
        "models": groups,
        "status": status,
        "latency_ms": _round(stats.ewma_latency_ms),
        "ttft_ms": _round(stats.ewma_ttft_ms),
        "p95_ttft_ms": _round(stats.p95_ttft_ms()),
        "success_rate": round(stats.success_rate, 4),
        "error_rate": round(stats.error_rate, 4),
        "requests": stats.requests,
        "window_requests": window,
        "window_failures": failed,
        "in_flight": stats.in_flight,
        "breaker": d.breaker.snapshot() if d.breaker is not None else {"state": "closed"},
        "last_change": _iso(changed),
    }
    if isinstance(out["breaker"].get("changed_at"), float):
        out["breaker"]["changed_at"] = _iso(out["breaker"]["changed_at"])
    if d.limiter is not None:
        out["limits"] = d.limiter.snapshot()
    return out


def providers_status(
    deployments: Deployments, provider_types: dict[str, str], tracker: StatusTracker
) -> dict[str, Any]:
    served_as: dict[int, list[str]] = {}
    for name, group in deployments.groups.items():
        if name != group.name:
            continue  # an alias of a group already listed
        for d in group.deployments:
            served_as.setdefault(id(d), []).append(name)
    by_provider: dict[str, list[dict[str, Any]]] = {}
    for d in deployments.all():
        if d.provider_id == "demo":
            continue
        entry = deployment_status(d, tracker, served_as.get(id(d), [d.id]))
        by_provider.setdefault(d.provider_id, []).append(entry)
    data = []
    for pid in sorted(set(provider_types) | set(by_provider)):
        entries = by_provider.get(pid, [])
        statuses = [e["status"] for e in entries]
        status = min(statuses, key=_RANK.__getitem__) if statuses else "operational"
        if statuses and status != "down" and any(s != "operational" for s in statuses):
            status = "degraded"  # some deployment of it is failing even though another serves
        latencies = [e["latency_ms"] for e in entries if e["latency_ms"] is not None]
        total = sum(d["requests"] for d in entries)
        window = sum(e["window_requests"] for e in entries)
        failed = sum(e["window_failures"] for e in entries)
        success = (window - failed) / window if window else 1.0
        changes = [e["last_change"] for e in entries if e["last_change"]]
        data.append(
            {
                "id": pid,
                "type": provider_types.get(pid, pid),
                "status": status,
                "latency_ms": round(sum(latencies) / len(latencies), 2) if latencies else None,
                "success_rate": round(success, 4),
                "requests": total,
                "in_flight": sum(e["in_flight"] for e in entries),
                "last_change": max(changes) if changes else None,
                "deployments": entries,
            }
        )
    return {"object": "list", "updated_at": _iso(time.time()), "data": data}
