"""The policy engine: ordered ``[[routing.policies]]`` rules that route, deny or rewrite a request.

A rule matches when every match field it gives matches (a field left out matches anything). Rules are
evaluated in order with these semantics:

- ``rewrite`` rules accumulate: each matching one adds its ``set`` and ``cap`` and evaluation goes on.
  A later ``set`` of the same parameter wins over an earlier one; of two caps on one parameter the lower
  wins. When the request is rewritten, every ``set`` is applied first and every ``cap`` after, so a cap
  is a ceiling that no ``set`` can lift.
- the first matching ``route`` or ``deny`` rule decides and ends evaluation. A ``route`` rule may carry
  its own ``set``/``cap``, applied with the accumulated ones; a ``deny`` drops them (nothing is sent).
- when only rewrite rules matched, the decision is ``rewrite``: the model asked for is kept.
- when nothing matched, :meth:`PolicyEngine.evaluate` returns ``None``.

A ``route`` rule names one ``route`` or ``split`` arms (A/B tests, canaries). With ``sticky`` set and
the user's (or session's) id known, the arm is a stable hash of that id salted with the rule's name, so
a user stays on one arm across requests, workers and restarts; otherwise the arm is drawn by weight.

Nothing here does I/O; :func:`validate_rules` is the config-time check ``omen.config.loader`` runs.
"""

from __future__ import annotations

import random
import re
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, Protocol

import msgspec
import orjson

from omen.api.chat import ChatCompletionRequest
from omen.config.schema import PolicyRule
from omen.errors import OmenError
from omen.routing.split import random_arm, sticky_arm

ACTIONS = ("route", "deny", "rewrite")
INTENTS = ("code", "reasoning", "vision", "tools", "long", "chat")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
STICKY_BY = ("user", "session")

TEAM_HEADER = "x-omen-team"
USER_HEADER = "x-omen-user"
SESSION_HEADER = "x-omen-session"
SESSION_METADATA = "session_id"

# max_tokens and max_completion_tokens say the same thing (the second is OpenAI's newer name); a cap on
# either caps whichever the client sent, so a client cannot step around a cap by using the other name.
_OUTPUT_LENGTH = ("max_tokens", "max_completion_tokens")


def _rewritable_fields() -> dict[str, type]:
    """Request parameters a rewrite may touch: the optional int, float and str fields of the struct.

    Derived from ChatCompletionRequest so a parameter added there becomes rewritable without a second
    list to keep in step. ``model`` is left out: routing, not rewriting, decides where a request goes.
    """
    out: dict[str, type] = {}
    for info in msgspec.structs.fields(ChatCompletionRequest):
        args = typing.get_args(info.type) if isinstance(info.type, types.UnionType) else (info.type,)
        kinds = [a for a in args if a is not type(None)]
        if info.name != "model" and len(kinds) == 1 and kinds[0] in (int, float, str):
            out[info.name] = kinds[0]
    return out


REWRITABLE: dict[str, type] = _rewritable_fields()  # parameter -> int | float | str
CAPPABLE = tuple(name for name, kind in REWRITABLE.items() if kind in (int, float))


class _Named(Protocol):
    name: str


# ---- facts and decisions ------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class RequestFacts:
    """What the rules can see of one request. Header names are lower-case; ``now`` is UTC."""

    model: str
    intent: str | None = None  # None: not classified (an ``intents`` rule then does not match)
    api_key_id: str | None = None  # "master" for the master key; virtual key ids later
    team: str | None = None
    user: str | None = None
    session: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)  # request metadata merged with tags
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if any(name != name.lower() for name in self.headers):
            object.__setattr__(self, "headers", {k.lower(): v for k, v in self.headers.items()})
        now = self.now.replace(tzinfo=UTC) if self.now.tzinfo is None else self.now.astimezone(UTC)
        object.__setattr__(self, "now", now)


@dataclass(slots=True, frozen=True)
class PolicyDecision:
    rule: str  # the deciding rule; for a rewrite-only decision the first rewrite rule
    action: str  # "route" | "deny" | "rewrite"
    target: str | None = None  # route: the public model (or group) to serve the request
    arm: str | None = None  # route with a split: the arm chosen (its model)
    set: dict[str, Any] = field(default_factory=dict)  # parameters to set (rewrites accumulated)
    cap: dict[str, float] = field(default_factory=dict)  # parameters to cap (lowest cap per parameter)
    message: str | None = None  # deny: what the client is told
    rewrites: tuple[str, ...] = ()  # names of every rule whose set/cap is in this decision
    split_by: str | None = None  # split arm chosen by "user" | "session" hash, or "random"

    def error(self) -> OmenError:
        """The 403 a deny decision answers with."""
        return OmenError(
            403,
            self.message or _default_deny_message(self.rule),
            type="permission_error",
            code="policy_denied",
        )

    def describe(self) -> str:
        """One line for the routing reason header and the explain endpoint."""
        if self.action == "deny":
            return f"policy '{self.rule}' denies the request"
        parts = []
        if self.action == "route":
            how = f" (split arm, {self.split_by})" if self.arm is not None else ""
            parts.append(f"policy '{self.rule}' routes to '{self.target}'{how}")
        if self.set or self.cap:
            changes = [f"{k}={v}" for k, v in self.set.items()] + [f"{k}<={v:g}" for k, v in self.cap.items()]
            parts.append(f"rewrite by {', '.join(repr(r) for r in self.rewrites)}: {' '.join(changes)}")
        return "; ".join(parts)


def _default_deny_message(rule: str) -> str:
    return f"This request is not allowed by the gateway's policy '{rule}'."


def facts_from(
    request: Any,
    headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]],
    key_id: str | None,
    intent: str | _Named | None,
    *,
    team: str | None = None,
    user: str | None = None,
    now: datetime | None = None,
) -> RequestFacts:
    """The facts of a decoded request (chat or any struct with ``model``, optional ``user``/``metadata``/``tags``).

    ``headers`` is a mapping or the ASGI list of byte pairs. ``team`` and ``user`` given here (from an
    authenticated key, once keys carry them) win over what the client says; otherwise the team comes from
    the ``x-omen-team`` header and the user from ``x-omen-user``, then the request's ``user``, then its
    ``safety_identifier``. The session is ``x-omen-session``, else ``metadata``/``tags`` ``session_id``.
    ``intent`` is the classified intent's name (an ``Intent`` is accepted too) or None when not classified.
    """
    heads = _header_dict(headers)
    metadata: dict[str, str] = dict(getattr(request, "metadata", None) or {})
    metadata.update(getattr(request, "tags", None) or {})  # OMEN's own hints win over generic metadata
    return RequestFacts(
        model=request.model,
        intent=intent if isinstance(intent, str) or intent is None else intent.name,
        api_key_id=key_id,
        team=team or heads.get(TEAM_HEADER) or None,
        user=user
        or heads.get(USER_HEADER)
        or getattr(request, "user", None)
        or getattr(request, "safety_identifier", None)
        or None,
        session=heads.get(SESSION_HEADER) or metadata.get(SESSION_METADATA) or None,
        headers=heads,
        metadata=metadata,
        now=now or datetime.now(UTC),
    )


def _header_dict(headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    if isinstance(headers, Mapping):
        return {str(k).lower(): v for k, v in headers.items()}
    out: dict[str, str] = {}
    for name, value in headers:
        # latin-1 is HTTP's byte-preserving decoding; the first of repeated headers wins, as in dict lookups
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


# ---- the engine ---------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class _Compiled:
    """A rule with its match fields parsed once, at engine construction."""

    name: str
    rule: PolicyRule
    window: tuple[int, int] | None  # minutes since midnight UTC, [start, end); start > end wraps
    days: frozenset[int] | None  # datetime.weekday() values
    headers: tuple[tuple[str, str], ...]  # (lower-case name, pattern)
    arms: tuple[tuple[str, float], ...]


class PolicyEngine:
    """Evaluates the rules in order (see the module docstring for the semantics).

    ``rng`` draws non-sticky split arms; inject a seeded one in tests. Rules are expected to have passed
    :func:`validate_rules`; malformed ``hours``/``days`` raise ``ValueError`` here all the same.
    """

    def __init__(self, rules: list[PolicyRule], rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._rules = [_compile(i, rule) for i, rule in enumerate(rules)]

    def __len__(self) -> int:
        return len(self._rules)

    def evaluate(self, facts: RequestFacts) -> PolicyDecision | None:
        sets: dict[str, Any] = {}
        caps: dict[str, float] = {}
        rewrites: list[str] = []
        for compiled in self._rules:
            if not _matches(compiled, facts):
                continue
            rule = compiled.rule
            if rule.action == "deny":
                return PolicyDecision(
                    compiled.name, "deny", message=rule.message or _default_deny_message(compiled.name)
                )
            if rule.set or rule.cap:
                _accumulate(sets, caps, rule)
                rewrites.append(compiled.name)
            if rule.action == "rewrite":
                continue
            target, arm, split_by = self._target(compiled, facts)
            return PolicyDecision(
                compiled.name, "route", target, arm, sets, caps, rewrites=tuple(rewrites), split_by=split_by
            )
        if rewrites:
            return PolicyDecision(rewrites[0], "rewrite", set=sets, cap=caps, rewrites=tuple(rewrites))
        return None

    def _target(self, compiled: _Compiled, facts: RequestFacts) -> tuple[str | None, str | None, str | None]:
        rule = compiled.rule
        if not compiled.arms:
            return rule.route, None, None
        key = facts.user if rule.sticky == "user" else facts.session if rule.sticky == "session" else None
        if key:
            arm = sticky_arm(key, compiled.name, compiled.arms)
            return arm, arm, rule.sticky
        arm = random_arm(self._rng, compiled.arms)
        return arm, arm, "random"


def _compile(index: int, rule: PolicyRule) -> _Compiled:
    name = rule.name or f"policies[{index}]"
    if rule.action not in ACTIONS:
        raise ValueError(f"policy '{name}': unknown action '{rule.action}'; expected one of {', '.join(ACTIONS)}")
    days = None
    if rule.days is not None:
        unknown = [d for d in rule.days if d.lower() not in DAYS]
        if unknown:
            raise ValueError(f"policy '{name}': unknown days {unknown}; expected {', '.join(DAYS)}")
        days = frozenset(DAYS.index(d.lower()) for d in rule.days)
    return _Compiled(
        name=name,
        rule=rule,
        window=parse_hours(rule.hours) if rule.hours is not None else None,
        days=days,
        headers=tuple((k.lower(), v) for k, v in rule.headers.items()),
        arms=tuple((arm.model, arm.weight) for arm in rule.split),
    )


def _matches(compiled: _Compiled, facts: RequestFacts) -> bool:
    rule = compiled.rule
    if rule.api_keys is not None and facts.api_key_id not in rule.api_keys:
        return False
    if rule.teams is not None and facts.team not in rule.teams:
        return False
    if rule.users is not None and facts.user not in rule.users:
        return False
    if rule.models is not None and not any(fnmatchcase(facts.model, p) for p in rule.models):
        return False
    if rule.intents is not None and (facts.intent is None or facts.intent not in rule.intents):
        return False
    for name, pattern in compiled.headers:
        value = facts.headers.get(name)
        if value is None or not fnmatchcase(value, pattern):
            return False
    for key, pattern in rule.metadata.items():
        value = facts.metadata.get(key)
        if value is None or not fnmatchcase(value, pattern):
            return False
    if compiled.window is not None and not in_window(compiled.window, facts.now):
        return False
    return compiled.days is None or facts.now.weekday() in compiled.days


def _accumulate(sets: dict[str, Any], caps: dict[str, float], rule: PolicyRule) -> None:
    sets.update(rule.set)
    for name, limit in rule.cap.items():
        caps[name] = min(caps.get(name, limit), limit)


# ---- time windows -------------------------------------------------------------------------------

_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def parse_hours(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` -> (start, end) minutes since midnight; the end may be ``24:00``.

    Start is inclusive and end exclusive; a start after the end wraps past midnight (``22:00-06:00``).
    An empty window (start == end) is refused: it is ambiguous between never and always.
    """
    match = _HOURS.match(text.replace(" ", ""))
    if not match:
        raise ValueError(f"expected 'HH:MM-HH:MM' (UTC), got '{text}'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60:
        raise ValueError(f"not a valid time of day in '{text}'")
    if start == end:
        raise ValueError(f"'{text}' is an empty window; use '00:00-24:00' for the whole day")
    return start, end


def in_window(window: tuple[int, int], now: datetime) -> bool:
    start, end = window
    minute = now.hour * 60 + now.minute
    return start <= minute < end if start < end else minute >= start or minute < end


# ---- rewriting the request ----------------------------------------------------------------------


def apply_rewrite(request: ChatCompletionRequest, decision: PolicyDecision) -> list[str]:
    """Apply the decision's ``set`` then ``cap`` to the request struct; the names of the fields changed.

    A cap lowers a value above it and leaves an absent parameter absent (its upstream default is not
    ours to guess) -- except the output length: with neither ``max_tokens`` nor ``max_completion_tokens``
    sent, the capped one is set to the cap, because an absent length means "as long as the model allows",
    which is what the cap is there to prevent. The struct is what non-OpenAI adapters translate; for
    adapters that forward the client's bytes, :func:`patch_body` carries the same changes into the body.
    """
    before: dict[str, Any] = {}  # first value of every field touched, to report net changes only

    def assign(name: str, value: Any) -> None:
        before.setdefault(name, getattr(request, name))
        setattr(request, name, value)

    for name, value in decision.set.items():
        assign(name, _coerce(name, value))
    for name, limit in decision.cap.items():
        kind = REWRITABLE.get(name)
        if kind not in (int, float):
            raise ValueError(f"'{name}' is not a numeric request parameter that can be capped")
        ceiling: int | float = int(limit) if kind is int else float(limit)
        names = [name]
        if name in _OUTPUT_LENGTH:
            names = [n for n in _OUTPUT_LENGTH if getattr(request, n) is not None] or [name]
        for target in names:
            current = getattr(request, target)
            if (current is None and target in _OUTPUT_LENGTH) or (current is not None and current > ceiling):
                assign(target, ceiling)
    return [n for n, old in before.items() if _differs(old, getattr(request, n))]


def _differs(old: Any, new: Any) -> bool:
    return old != new or type(old) is not type(new)  # 1 -> 1.0 is a change the body must carry


def _coerce(name: str, value: Any) -> Any:
    kind = REWRITABLE.get(name)
    problem = _value_problem(name, value)
    if problem is not None:
        raise ValueError(problem)
    return float(value) if kind is float else value


def patch_body(raw: bytes, request: ChatCompletionRequest, names: Iterable[str]) -> bytes:
    """The client's JSON body with the named fields replaced by the (rewritten) request's values."""
    names = list(names)
    if not names:
        return raw
    body = orjson.loads(raw)
    for name in names:
        body[name] = getattr(request, name)
    return orjson.dumps(body)


# ---- config-time validation ---------------------------------------------------------------------

_Add = Callable[[str, str], None]  # (key under the rule, message)


def _value_problem(name: str, value: Any) -> str | None:
    kind = REWRITABLE.get(name)
    if kind is None:
        return f"'{name}' is not a request parameter a rule can set; known: {', '.join(REWRITABLE)}"
    if kind is str and not isinstance(value, str):
        return f"'{name}' takes a string"
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        return f"'{name}' takes a whole number"
    if kind is float and (not isinstance(value, int | float) or isinstance(value, bool)):
        return f"'{name}' takes a number"
    return None


def validate_rules(
    rules: list[PolicyRule], known_models: Collection[str], base: str = "routing.policies"
) -> list[tuple[str, str]]:
    """Every problem in the rules as (key path, message); empty when they are fine."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        at = f"{base}[{i}]"

        def add(key: str, message: str, at: str = at) -> None:
            problems.append((f"{at}.{key}" if key else at, message))

        if rule.name is not None:
            if rule.name in seen:
                add("name", f"'{rule.name}' is also the name of {base}[{seen[rule.name]}]")
            seen.setdefault(rule.name, i)
        _check_matches(rule, add)
        if rule.action not in ACTIONS:
            add("action", f"unknown action '{rule.action}'; expected one of {', '.join(ACTIONS)}")
            continue
        if rule.action == "route":
            _check_route(rule, known_models, add)
        else:
            for key in ("route", "split", "sticky"):
                if getattr(rule, key):
                    add(key, "only used by action = 'route'")
        if rule.message is not None and rule.action != "deny":
            add("message", "only used by action = 'deny'")
        if rule.action == "deny" and (rule.set or rule.cap):
            add("", "a deny rule sends nothing, so it has nothing to set or cap")
        if rule.action == "rewrite" and not (rule.set or rule.cap):
            add("", "a rewrite rule needs 'set' or 'cap'")
        for name, value in rule.set.items():
            problem = _value_problem(name, value)
            if problem is not None:
                add(f"set.{name}", problem)
        for name, limit in rule.cap.items():
            if name not in CAPPABLE:
                add(f"cap.{name}", f"'{name}' is not a numeric request parameter; cappable: {', '.join(CAPPABLE)}")
            elif limit < 0:
                add(f"cap.{name}", "must not be negative")
            elif REWRITABLE[name] is int and limit != int(limit):
                add(f"cap.{name}", "must be a whole number")
    return problems


def _check_matches(rule: PolicyRule, add: _Add) -> None:
    for key in ("api_keys", "teams", "users", "models", "intents", "days"):
        if getattr(rule, key) == []:
            add(key, "an empty list matches nothing; leave the key out to match any")
    for intent in rule.intents or []:
        if intent not in INTENTS:
            add("intents", f"unknown intent '{intent}'; expected one of {', '.join(INTENTS)}")
    for day in rule.days or []:
        if day.lower() not in DAYS:
            add("days", f"unknown day '{day}'; expected one of {', '.join(DAYS)}")
    if rule.hours is not None:
        try:
            parse_hours(rule.hours)
        except ValueError as exc:
            add("hours", str(exc))


def _check_route(rule: PolicyRule, known_models: Collection[str], add: _Add) -> None:
    if (rule.route is None) == (not rule.split):
        add("", "a route rule needs either 'route' (one model) or 'split' (arms), not both")
    if rule.route is not None and rule.route not in known_models:
        add("route", f"'{rule.route}' is not a configured model")
    for j, arm in enumerate(rule.split):
        if arm.model not in known_models:
            add(f"split[{j}].model", f"'{arm.model}' is not a configured model")
        if arm.weight < 0:
            add(f"split[{j}].weight", "must not be negative")
    if rule.split and sum(max(arm.weight, 0) for arm in rule.split) <= 0:
        add("split", "at least one arm needs a positive weight")
    if rule.sticky is not None:
        if rule.sticky not in STICKY_BY:
            add("sticky", f"expected one of {', '.join(STICKY_BY)}, got '{rule.sticky}'")
        if not rule.split:
            add("sticky", "only used with 'split'")
        if rule.name is None:
            # the name salts the hash; a default like policies[2] would change when rules are reordered
            # and move every sticky user to a new arm
            add("name", "a sticky split needs a 'name' (it keys the users' arms)")
