"""The attempt executor: serve one request from its route plan, failing over between deployments.

For each candidate of the plan, in order, within one deadline (``routing.timeout_s``) and at most
``1 + routing.retries`` upstream requests:

1. the deployment's circuit breaker must admit the request (an open breaker is skipped, not tried);
2. a slot of its limiter (a deployment without limits has none: nothing to wait for); a refused slot
   (queue full, rate budget spent, queue timeout) moves on to the next candidate;
3. the call is built for that deployment (its upstream model) and sent;
4. an error status is translated by the provider; a retryable one (R1 ``is_retryable``: 408, 409,
   429, 5xx, 529, connect failures, first-byte timeouts) and a deployment-specific one (401, 403, 404)
   is recorded, the executor backs off (full jitter; an upstream's ``Retry-After`` is honoured when the
   next candidate is on the same provider, whose quota it speaks for) and tries the next candidate;
   a context-window error switches to the group's ``context_window_fallbacks``, a content-filter
   refusal to its ``content_filter_fallbacks``; any other error goes to the client as it is;
5. a 2xx response is handed to the relay; its outcome (time to headers, total time, success) goes to
   the deployment's statistics and breaker when it ends.

Nothing is retried once a response byte went to the client (``ctx.response_started``): a stream that
breaks later ends with an in-stream error. A model served by one deployment is tried once, so its
error (and ``Retry-After``) reaches the client as before.

Hedging (group ``hedge = true``): when the first attempt has no response headers after
``hedge_after_ms`` (else the group's observed p95 time to headers), the next candidate starts in
parallel; the first 2xx wins and the other attempt is cancelled, which closes its upstream connection.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from typing import Any

import trio

from omen.catalog import check_chat
from omen.errors import OmenError
from omen.media import inline_images
from omen.pipeline.context import RequestContext
from omen.pipeline.gateway import Gateway
from omen.pipeline.relay import local_work, operation, relay_response, while_connected
from omen.providers.base import Call, Provider
from omen.resilience.backoff import backoff_delay, is_retryable, retry_after_s
from omen.routing.deployments import Deployment
from omen.routing.router import Candidate, RoutePlan
from omen.server.asgi import Receive, Send

_rng = random.Random()

# Errors that say "this deployment cannot serve it" rather than "this request is wrong".
_DEPLOYMENT_STATUSES = frozenset({401, 403, 404})
_CONTEXT_CODES = frozenset({"context_length_exceeded", "context_window_exceeded", "string_above_max_length"})
_CONTEXT_WORDS = (
    "context length",
    "context window",
    "maximum context",
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "reduce the length",
)
_FILTER_CODES = frozenset({"content_filter", "content_policy_violation", "responsible_ai_policy_violation"})


def is_context_window_error(error: OmenError) -> bool:
    if error.status not in (400, 413, 422):
        return False
    if error.code in _CONTEXT_CODES:
        return True
    message = error.message.lower()
    return any(word in message for word in _CONTEXT_WORDS)


def is_content_filter_error(error: OmenError) -> bool:
    return error.status == 400 and error.code in _FILTER_CODES


def fails_over(error: OmenError) -> bool:
    return is_retryable(error) or error.status in _DEPLOYMENT_STATUSES


class _Skip:
    """A candidate that was not tried: its breaker is open or its limiter refused a slot."""

    __slots__ = ("error",)

    def __init__(self, error: OmenError) -> None:
        self.error = error


class _Race:
    """The shared state of a hedged pair: who won, and how to cancel the other."""

    __slots__ = ("headers", "scopes", "winner")

    def __init__(self) -> None:
        self.winner: int | None = None
        self.scopes: dict[int, trio.CancelScope] = {}
        self.headers = trio.Event()  # the first attempt got response headers or ended

    def claim(self, key: int) -> bool:
        if self.winner is not None:
            return False
        self.winner = key
        for other, scope in self.scopes.items():
            if other != key:
                scope.cancel()
        return True


def _circuit_open(d: Deployment) -> OmenError:
    wait = d.breaker.retry_in_s() if d.breaker is not None else 0.0
    seconds = max(1, math.ceil(wait))
    return OmenError(
        503,
        f"Deployment '{d.id}' is unavailable: its circuit breaker is open after repeated failures "
        f"(next probe in {wait:.0f}s).",
        type="server_error",
        code="deployment_unavailable",
        headers={"Retry-After": str(seconds)},
    )


def _deadline_error(seconds: float) -> OmenError:
    return OmenError(
        504,
        f"No deployment answered within the routing deadline of {seconds:g}s.",
        type="server_error",
        code="upstream_timeout",
    )


def _abandon(d: Deployment) -> None:
    """An attempt that produced no verdict on the deployment (cancelled: the client left, or a hedge
    lost): leave its statistics and breaker as they were."""
    stats = d.stats
    if stats.in_flight > 0:
        stats.in_flight -= 1
    if d.breaker is not None:
        d.breaker.release_probe()


class Attempts:
    """One request's attempts (see the module docstring)."""

    def __init__(self, gw: Gateway, plan: RoutePlan, name: str, call: Call, ctx: RequestContext, send: Send) -> None:
        self.gw = gw
        self.plan = plan
        self.name = name
        self.call = call
        self.ctx = ctx
        self.send = send
        routing = gw.config.routing
        self.routing = routing
        self.deadline = trio.current_time() + routing.timeout_s if routing.timeout_s > 0 else math.inf
        self.budget = 1 + max(0, routing.retries)
        self.notes: list[str] = []
        self.images_inlined = False
        self._tokens: int | None = None

    # ---- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        plan = self.plan
        ctx = self.ctx
        queue = deque(_by_capacity(plan.candidates))
        last: OmenError | None = None
        skipped: list[OmenError] = []
        failures = 0
        used_fallbacks: set[str] = set()
        hedge = plan.hedge
        while queue and ctx.attempts < self.budget:
            if trio.current_time() >= self.deadline:
                last = last or _deadline_error(self.routing.timeout_s)
                break
            cand = queue.popleft()
            if hedge and queue:
                hedge = False
                result = await self._hedged(cand, queue)
            else:
                result = await self._attempt(cand)
            if result is None or ctx.response_started:
                if isinstance(result, OmenError):
                    raise result
                return  # served (or the response started and ended in-stream): never retried
            if isinstance(result, _Skip):
                skipped.append(result.error)
                self._note(f"skipped {cand.deployment.id} ({result.error.code})")
                continue
            last = result
            group = cand.group
            switch = None
            if group is not None and is_context_window_error(result) and group.context_window_fallbacks:
                switch = ("context_window_fallbacks", group.context_window_fallbacks)
            elif group is not None and is_content_filter_error(result) and group.content_filter_fallbacks:
                switch = ("content_filter_fallbacks", group.content_filter_fallbacks)
            if switch is not None and switch[0] + group.name not in used_fallbacks:
                used_fallbacks.add(switch[0] + group.name)
                try:
                    fresh = self.gw.router.expand(switch[1], f"{switch[0]} of '{group.name}'", self.call_request())
                except OmenError:  # none left after the request's provider preferences: the error stands
                    raise result from None
                queue = deque(_by_capacity(fresh))
                self.budget = ctx.attempts + 1 + max(0, self.routing.retries)  # a new route, a fresh budget
                self._note(f"{switch[0]} after {result.status} from {cand.deployment.id}")
                continue
            if not fails_over(result):
                raise result
            if not queue or ctx.attempts >= self.budget:
                break
            delay = backoff_delay(failures, self.routing.backoff_base_s, self.routing.backoff_max_s, _rng)
            failures += 1
            wait = retry_after_s(result)
            if wait is not None and queue[0].deployment.provider_id == cand.deployment.provider_id:
                delay = max(delay, wait)
            if trio.current_time() + delay >= self.deadline:
                self._note(f"deadline: no retry after {result.status} from {cand.deployment.id}")
                break
            self._note(f"failover after {result.status} from {cand.deployment.id}")
            if delay > 0:
                await trio.sleep(delay)
        if last is not None:
            raise last
        if skipped:
            raise skipped[0]
        raise _deadline_error(self.routing.timeout_s)

    def _note(self, text: str) -> None:
        self.notes.append(text)
        self.ctx.route_reason = "; ".join([self.plan.reason, *self.notes])

    def call_request(self) -> Any:
        return getattr(self.call, "request", None)

    # ---- one attempt ---------------------------------------------------------------------------

    def _call_for(self, cand: Candidate) -> Call:
        call = self.call
        upstream = cand.deployment.upstream_model
        if call.upstream_model != upstream:
            call = dataclasses.replace(call, upstream_model=upstream)
        return call

    def tokens(self) -> int:
        """The request's estimated tokens for a limiter's TPM budget: prompt bytes / 4 + output limit."""
        if self._tokens is None:
            request = self.call_request()
            limit = getattr(request, "max_completion_tokens", None) or getattr(request, "max_tokens", None) or 0
            self._tokens = len(self.call.raw) // 4 + int(limit)
        return self._tokens

    async def _attempt(self, cand: Candidate, race: _Race | None = None, key: int = 0) -> OmenError | _Skip | None:
        d = cand.deployment
        provider = self.gw.providers[d.provider_id]
        call = self._call_for(cand)
        if self.name == "chat" and call.request is not None:
            check_chat(d.capabilities, cand.public_model, call.request)  # 400 before any upstream work
            if not self.images_inlined and getattr(provider, "inline_images", False):
                await inline_images(call.request, self.gw.config.images)
                self.images_inlined = True
        if getattr(provider, "local", False):
            return await self._local(cand, provider, call)
        breaker = d.breaker
        if breaker is not None and not breaker.allow():
            return _Skip(_circuit_open(d))
        limiter = d.limiter
        if limiter is None:
            return await self._send(cand, provider, call, race, key)
        try:
            async with limiter.slot(self.tokens()):
                return await self._send(cand, provider, call, race, key)
        except OmenError as exc:  # only the slot raises: _send returns its errors
            if breaker is not None:
                breaker.release_probe()
            return _Skip(exc)

    async def _send(
        self, cand: Candidate, provider: Provider, call: Call, race: _Race | None, key: int
    ) -> OmenError | None:
        ctx = self.ctx
        d = cand.deployment
        key_op = (d.provider_id, self.name)
        op = self.gw.operations.get(key_op)
        if op is None:
            op = self.gw.operations[key_op] = operation(provider, self.name)
        ctx.attempts += 1
        if race is None:
            self._serving(d)
        stats = d.stats
        stats.start()
        started = trio.current_time()
        ttft: float | None = None
        verdict: bool | None = None  # None: no verdict (cancelled)
        try:
            request = op.build(call)
            response = None
            timeouts = provider.config.timeouts
            if self.deadline < started + min(timeouts.first_byte, timeouts.total):
                # the request's deadline comes before the exchange's own first-byte deadline
                with trio.move_on_at(self.deadline):
                    response = await self.gw.exchange.open(provider, request)
                if response is None:  # the request's deadline, not the deployment, ran out: no verdict
                    return _deadline_error(self.routing.timeout_s)
            else:  # a cancel scope costs more than everything else here: none when it cannot fire first
                response = await self.gw.exchange.open(provider, request)
            ttft = trio.current_time() - started
            try:
                if response.status >= 400:
                    if race is not None and key == 0:
                        race.headers.set()
                    body = await response.read()
                    error = provider.error(response.status, response.headers, body)
                    verdict = not is_retryable(error)
                    if race is None or race.winner is None:
                        self._serving(d)
                    return error
                if race is not None:
                    if key == 0:
                        race.headers.set()
                    if not race.claim(key):
                        return None  # the other attempt won; this response is closed below
                    self._serving(d)
                    self._note(f"hedge won by {d.id}")
                if response.deadline > self.deadline:
                    response.deadline = self.deadline  # the routing deadline covers the whole request
                await relay_response(response, op, call, ctx, self.send)
                verdict = ctx.error is None
                return None
            finally:
                await response.aclose()
        except OmenError as exc:
            if ctx.response_started:
                verdict = False
                raise  # a failure after the response started is the relay's to report in-stream
            verdict = not is_retryable(exc)
            return exc
        finally:
            if race is not None and key == 0:
                race.headers.set()
            if verdict is None:
                _abandon(d)
            else:
                stats.finish(verdict, ttft, trio.current_time() - started)
                if d.breaker is not None:
                    d.breaker.record(verdict)

    def _serving(self, d: Deployment) -> None:
        ctx = self.ctx
        ctx.provider = d.provider_id
        ctx.upstream_model = d.upstream_model
        ctx.deployment = d.id

    async def _local(self, cand: Candidate, provider: Provider, call: Call) -> None:
        """A model answered inside the gateway (the demo model)."""
        result = getattr(provider, f"{self.name}_result", None)
        stream = getattr(provider, f"{self.name}_stream", None)
        if result is None:
            raise OmenError(
                400,
                f"The model '{cand.public_model}' does not support this endpoint.",
                code="unsupported_endpoint",
                param="model",
            )
        self._serving(cand.deployment)
        self.ctx.attempts += 1
        await local_work(result, stream, call, self.ctx, self.send)
        return None

    # ---- hedging -------------------------------------------------------------------------------

    def _hedge_delay_s(self, cand: Candidate) -> float | None:
        group = cand.group or self.plan.group
        if group is None:
            return None
        if group.hedge_after_ms is not None:
            return group.hedge_after_ms / 1000.0
        p95 = group.p95_first_byte_ms()
        return None if p95 is None else p95 / 1000.0

    async def _hedged(self, first: Candidate, queue: deque[Candidate]) -> OmenError | _Skip | None:
        delay = self._hedge_delay_s(first)
        if delay is None:
            return await self._attempt(first)
        race = _Race()
        results: dict[int, OmenError | _Skip | None] = {}

        async def run(cand: Candidate, key: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                race.scopes[key] = scope
                task_status.started()
                try:
                    results[key] = await self._attempt(cand, race, key)
                except OmenError as exc:  # kept as the attempt's result, not an ExceptionGroup
                    results[key] = exc
                finally:
                    if key == 0:
                        race.headers.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(run, first, 0)
            with trio.move_on_after(delay):
                await race.headers.wait()
            if not race.headers.is_set() and self.ctx.attempts < self.budget:
                second = queue.popleft()
                self._note(f"hedged {first.deployment.id} with {second.deployment.id} after {delay * 1000:.0f}ms")
                await nursery.start(run, second, 1)
        if race.winner is not None:
            return results.get(race.winner)
        # nobody won: report the most telling failure (an attempt's error over a skip)
        errors = [r for r in results.values() if isinstance(r, OmenError)]
        if errors:
            return errors[-1]
        skips = [r for r in results.values() if isinstance(r, _Skip)]
        return skips[0] if skips else _deadline_error(self.routing.timeout_s)


def _by_capacity(candidates: list[Candidate]) -> list[Candidate]:
    """Plan order, except that deployments with no free slot go after those with one, and those whose
    limiter would refuse outright go last (their refusal is the backpressure answer if all else fails)."""
    if len(candidates) == 1 or all(c.deployment.limiter is None for c in candidates):
        return candidates
    free: list[Candidate] = []
    busy: list[Candidate] = []
    full: list[Candidate] = []
    for c in candidates:
        d = c.deployment
        if d.limiter is None or d.free_capacity() > 0:
            free.append(c)
        elif d.saturated():
            full.append(c)
        else:
            busy.append(c)
    return free + busy + full


async def execute(
    gw: Gateway, plan: RoutePlan, name: str, call: Call, ctx: RequestContext, receive: Receive, send: Send
) -> None:
    """Serve ``call`` from ``plan`` while the client stays connected."""
    attempts = Attempts(gw, plan, name, call, ctx, send)
    await while_connected(receive, ctx, attempts.run)
