"""The attempt executor: serve one request from its route plan, retrying and failing over between deployments.

The plan's candidates are tried in order, within one deadline (``routing.timeout_s``, counted from the
request's start; waits, attempts and the relayed answer included). For each attempt:

1. the deployment's circuit breaker must admit the request (an open breaker is skipped, not tried);
2. a slot of its limiter (a deployment without limits has none: nothing to wait for); a refused slot
   (queue full, rate budget spent, queue timeout) moves on to the next candidate, never retried;
3. the call is built for that deployment (its upstream model) and sent;
4. a 2xx response is handed to the relay; its outcome (time to headers, total time, success) goes to
   the deployment's statistics and breaker when it ends. An error status is translated by the
   provider and decides what comes next (below).

**Retries and failover.** A retryable failure (R1 ``is_retryable``: 408, 409, 429, 500-504, 529,
connect failures, first-byte timeouts) is retried *on the same deployment* first, then the request
fails over to the next candidate:

- ``retries`` (the model's own ``retries``, else ``[routing] retries``) is the request's retry budget:
  the number of repeated attempts on a deployment that just failed, shared by all deployments of the
  request. Moving to another candidate (failover, a tier, the ``fallbacks``/``models`` lists, context
  and content-filter fallbacks) does not spend it: those are bounded by the plan (at most 16) and the
  deadline. ``retries = 0`` never repeats an attempt, so a single-deployment model passes the first
  error (and its ``Retry-After``) to the client as it is.
- A retry waits ``max(full-jitter backoff, Retry-After)``; the backoff exponent counts the retries of
  that deployment (0, 1, 2...: ``uniform(0, min(backoff_max_s, backoff_base_s * 2**n))``). A
  deployment's ``Retry-After`` always applies to that deployment.
- No retry when: the budget is spent; the failure opened the deployment's breaker; the wait would end
  at or after the deadline (then the next candidate is tried at once, or, when none is left, the
  client gets the error now, with its ``Retry-After``, and the route reason names the wait that did
  not fit); or the deployment asked (``Retry-After``) for a pause longer than ``backoff_max_s`` while
  another candidate is left (that one is tried at once instead).
- Failover to the next candidate is immediate, except that a ``Retry-After`` also holds for the next
  candidate when it is on the same provider (the provider account's quota); if that wait would cross
  the deadline the request ends with the error.
- A deployment-specific error (401, 403, 404) and a 429 ``insufficient_quota`` (billing, not a rate
  limit) fail over without a retry. A context-window error
  switches to the group's ``context_window_fallbacks``, a content-filter refusal to its
  ``content_filter_fallbacks``; any other error (a bad request) goes to the client as it is.

Nothing is retried once a response byte went to the client (``ctx.response_started``): a stream that
breaks later ends with an in-stream error.

**Content-filter refusals with a 200.** When the group has ``content_filter_fallbacks``, a non-streamed
2xx answer is read before it is sent: if any choice has ``finish_reason = "content_filter"`` the answer
is held back and the fallbacks are tried (retries and failover as above, each fallback deployment in
turn). The first answer that is not a refusal is sent; if every fallback refuses (or fails), the client
gets the last refusal as a normal 200. A stream cannot be taken back: its refusal arrives after its
first bytes went out, so streamed requests get the refusal as it comes.

**Hedging** (group ``hedge = true``): when the first attempt has no response headers after
``hedge_after_ms`` (else the group's observed p95 time to headers), the next candidate starts in
parallel; the first 2xx wins and the other attempt is cancelled, which closes its upstream connection.
The hedge is a failover, not a retry: it does not spend the retry budget.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from typing import Any

import orjson
import trio

from omen.catalog import check_chat
from omen.errors import OmenError
from omen.media import inline_images
from omen.pipeline.context import RequestContext
from omen.pipeline.gateway import Gateway
from omen.pipeline.relay import local_work, operation, relay_response, while_connected
from omen.providers.base import Call, Provider, Result
from omen.resilience.backoff import backoff_delay, is_retryable, retry_after_s
from omen.routing.deployments import Deployment
from omen.routing.groups import ModelGroup
from omen.routing.router import Candidate, RoutePlan
from omen.server.asgi import JSON_CT, Receive, Send, send_response

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
# A 429 that is a billing state, not a rate limit (OpenAI's convention, also Anthropic 402, Bedrock
# ServiceQuotaExceeded, xAI): the same deployment will refuse again, another one may not.
_NO_RETRY_CODES = frozenset({"insufficient_quota"})


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


def is_refusal(body: bytes) -> bool:
    """A chat/completions answer (OpenAI format) with a choice whose ``finish_reason`` is
    ``content_filter``: providers map their refusals to it (Anthropic ``refusal``, Gemini ``SAFETY``,
    Bedrock guardrails...)."""
    if b"content_filter" not in body:  # the common case costs one byte search
        return False
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    choices = data.get("choices") if isinstance(data, dict) else None
    return isinstance(choices, list) and any(
        isinstance(c, dict) and c.get("finish_reason") == "content_filter" for c in choices
    )


class _Skip:
    """A candidate that was not tried: its breaker is open or its limiter refused a slot."""

    __slots__ = ("error",)

    def __init__(self, error: OmenError) -> None:
        self.error = error


class _Answer:
    """A non-streamed 2xx answer read before it was sent (screened for a content-filter refusal). An
    attempt returns it only when it is a refusal: the executor then tries the content-filter fallbacks
    and sends it only if none answers better."""

    __slots__ = ("cand", "result")

    def __init__(self, cand: Candidate, result: Result) -> None:
        self.cand = cand
        self.result = result


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
        group = plan.group
        retries = group.retries if group is not None and group.retries is not None else routing.retries
        self.retries_left = max(0, retries)  # the request's retry budget (failovers do not spend it)
        self.filtering = False  # trying content_filter_fallbacks: a refusal moves on to the next one
        self.held: _Answer | None = None  # the last refusal held back, sent if nothing better comes
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
        used_fallbacks: set[str] = set()
        hedge = plan.hedge
        again: Candidate | None = None  # a candidate to retry, else the queue's next
        streak = 0  # retries of the current candidate so far: the backoff exponent
        while again is not None or queue:
            if trio.current_time() >= self.deadline:
                last = last or _deadline_error(self.routing.timeout_s)
                break
            if again is not None:
                cand, again = again, None
                result = await self._attempt(cand)
            else:
                cand = queue.popleft()
                streak = 0
                if hedge and queue:
                    hedge = False
                    cand, result = await self._hedged(cand, queue)
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
            d = cand.deployment
            group = cand.group
            if isinstance(result, _Answer):
                fresh = self._switch(group, "content_filter_fallbacks", used_fallbacks, queue)
                if fresh is None and not (self.filtering and queue):
                    await self._deliver(result)  # nothing left to try: the refusal is the answer
                    return
                self.held = result
                if fresh is not None:
                    queue = fresh
                    self._note(f"content_filter_fallbacks after a refusal (200) from {d.id}")
                else:
                    self._note(f"refusal (200) from {d.id}: next content-filter fallback")
                continue
            last = result
            fresh = None
            kind = ""
            if is_context_window_error(result):
                fresh = self._switch(group, "context_window_fallbacks", used_fallbacks, queue)
                kind = "context_window_fallbacks"
            elif is_content_filter_error(result):
                fresh = self._switch(group, "content_filter_fallbacks", used_fallbacks, queue)
                kind = "content_filter_fallbacks"
                if fresh is None and self.filtering and queue:
                    self._note(f"refusal ({result.status}) from {d.id}: next content-filter fallback")
                    continue
            if fresh is not None:
                queue = fresh
                self._note(f"{kind} after {result.status} from {d.id}")
                continue
            if not fails_over(result):
                break
            if is_retryable(result) and self.retries_left > 0 and result.code not in _NO_RETRY_CODES:
                wait = self._retry_wait(cand, result, streak, bool(queue))
                if wait is not None:
                    self.retries_left -= 1
                    streak += 1
                    self._note(f"retry {d.id} after {result.status} in {wait:.2f}s")
                    if wait > 0:
                        await trio.sleep(wait)
                    again = cand
                    continue
            if not queue:
                break
            wait = 0.0
            after = retry_after_s(result)
            if after is not None and queue[0].deployment.provider_id == d.provider_id:
                wait = after  # the provider account's quota: it speaks for its other deployments too
            if wait > 0 and trio.current_time() + wait >= self.deadline:
                self._note(f"deadline: no failover after {result.status} from {d.id} (Retry-After {wait:g}s)")
                break
            self._note(f"failover after {result.status} from {d.id}")
            if wait > 0:
                await trio.sleep(wait)
        if self.held is not None:  # no fallback answered better than the refusal held back
            why = f"{last.status} from {ctx.deployment}" if last is not None else "none left"
            self._note(f"answered with the refusal from {self.held.cand.deployment.id} (last fallback: {why})")
            await self._deliver(self.held)
            return
        if last is not None:
            raise last
        if skipped:
            raise skipped[0]
        raise _deadline_error(self.routing.timeout_s)

    def _switch(
        self, group: ModelGroup | None, kind: str, used: set[str], queue: deque[Candidate]
    ) -> deque[Candidate] | None:
        """The new route after a context-window error or a content-filter refusal: ``group``'s fallbacks
        of that ``kind``, once per group and kind; None when it has none (or they were used, or none is
        left after the request's provider preferences). The rest of the old route is dropped (the same
        request would fail the same way there), except while already trying content-filter fallbacks:
        a fallback's own fallbacks go first, the other fallbacks stay behind them."""
        if group is None or not getattr(group, kind):
            return None
        key = f"{kind} {group.name}"
        if key in used:
            return None
        used.add(key)
        try:
            fresh = self.gw.router.expand(getattr(group, kind), f"{kind} of '{group.name}'", self.call_request())
        except OmenError:
            return None
        if not fresh:
            return None
        route = deque(_by_capacity(fresh))
        if kind == "content_filter_fallbacks":
            if self.filtering:
                have = {id(c.deployment) for c in route}
                route.extend(c for c in queue if id(c.deployment) not in have)
            self.filtering = True
        return route

    def _retry_wait(self, cand: Candidate, error: OmenError, streak: int, more: bool) -> float | None:
        """Seconds to wait before retrying ``cand`` after ``error``; None when it is not retried
        (``more``: another candidate is left). The reason is noted."""
        d = cand.deployment
        routing = self.routing
        if d.breaker_state() == "open":
            self._note(f"no retry of {d.id}: its breaker opened")
            return None
        after = retry_after_s(error)
        wait = backoff_delay(streak, routing.backoff_base_s, routing.backoff_max_s, _rng)
        if after is not None and after > wait:
            wait = after
            if more and after > routing.backoff_max_s:
                self._note(f"no retry of {d.id}: Retry-After {after:g}s, another deployment can serve now")
                return None
        if trio.current_time() + wait >= self.deadline:
            what = f"Retry-After {after:g}s" if after is not None and wait == after else f"backoff {wait:.2f}s"
            self._note(f"deadline: no retry of {d.id} ({what} ends past the {routing.timeout_s:g}s deadline)")
            return None
        return wait

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

    async def _attempt(
        self, cand: Candidate, race: _Race | None = None, key: int = 0
    ) -> OmenError | _Skip | _Answer | None:
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
    ) -> OmenError | _Answer | None:
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
                if self._screens(cand) and (not call.stream or op.stream is None):
                    # read the answer before sending it: a refusal goes to the content-filter fallbacks
                    result = op.parse(call, await response.read())
                    verdict = True  # a refusal is the deployment working as it should
                    if is_refusal(result.body):
                        return _Answer(cand, result)
                    await self._deliver(_Answer(cand, result))
                    return None
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

    def _screens(self, cand: Candidate) -> bool:
        """Is a 2xx answer from ``cand`` checked for a content-filter refusal before it is sent?"""
        group = cand.group
        return self.filtering or (group is not None and bool(group.content_filter_fallbacks))

    async def _deliver(self, answer: _Answer) -> None:
        """Send a non-streamed answer that was read (and screened) before sending, as the relay would."""
        ctx = self.ctx
        self._serving(answer.cand.deployment)
        result = answer.result
        ctx.usage = result.usage
        output = ctx.output
        body = result.body if output is None else output.result_body(result)
        ctx.status = 200
        ctx.mark_first_byte()
        ctx.response_started = True
        ctx.response_ending = True
        await send_response(self.send, 200, body, [JSON_CT, *ctx.route_headers()])

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

    async def _hedged(
        self, first: Candidate, queue: deque[Candidate]
    ) -> tuple[Candidate, OmenError | _Skip | _Answer | None]:
        """The first candidate, hedged with the next one; returns the candidate whose result counts."""
        delay = self._hedge_delay_s(first)
        if delay is None:
            return first, await self._attempt(first)
        race = _Race()
        results: dict[int, OmenError | _Skip | _Answer | None] = {}
        cands = {0: first}

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
            if not race.headers.is_set():
                second = cands[1] = queue.popleft()
                self._note(f"hedged {first.deployment.id} with {second.deployment.id} after {delay * 1000:.0f}ms")
                await nursery.start(run, second, 1)
        if race.winner is not None:
            return cands[race.winner], results.get(race.winner)
        # nobody won: report the most telling failure (an attempt's error over a skip)
        errors = [(k, r) for k, r in results.items() if isinstance(r, OmenError)]
        if errors:
            k, error = errors[-1]
            return cands[k], error
        skips = [(k, r) for k, r in results.items() if isinstance(r, _Skip)]
        if skips:
            return cands[skips[0][0]], skips[0][1]
        return first, _deadline_error(self.routing.timeout_s)


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
