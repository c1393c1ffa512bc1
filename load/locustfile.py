"""Locust scenarios for OMEN in front of the fake upstreams (start everything with load/run.py).

Every request is checked byte for byte against what the fakes are known to answer (tests/fakes:
"Echo: <last user message>" in exactly N stream chunks, hash-derived embeddings, one tool call with
the prompt as its first argument), so a corrupted, truncated or re-ordered response is a failure,
not just a non-200. Each request carries an ``X-Request-ID`` and is written to a ledger (JSON lines,
``$OMEN_LOAD_LEDGER``) when it starts and when it ends; run.py joins the ledger with OMEN's access log.

Scenarios (task weights): non-streaming chat, streaming chat with and without
``stream_options.include_usage``, tool calls (streamed and not), embeddings (float and base64),
``GET /v1/models``, an Ollama-backed model streaming, and client disconnects mid-stream.
"""

from __future__ import annotations

import base64
import json
import os
import random
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import gevent
import orjson
from locust import FastHttpUser, between, constant_throughput, events, task
from locust.contrib.fasthttp import ResponseContextManager
from locust.user.task import LOCUST_STATE_STOPPING, LOCUST_STATE_WAITING

LOAD = Path(__file__).resolve().parent
ROOT = LOAD.parent
for _p in (str(LOAD), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from load_checks import (  # noqa: E402
    parse_sse,
    stream_usage_problems,
    tool_call_problems,
    usage_pair,
    usage_problems,
)
from load_shared import (  # noqa: E402
    CHAT_MODELS,
    DEFAULT_CHUNKS,
    EMBEDDING_MODELS,
    ENV_CHUNKS,
    ENV_LEDGER,
    ENV_PHASE,
    ENV_SEED,
    ENV_STATS,
    ENV_THROUGHPUT,
    ENV_TIMEOUT,
    LISTED_MODELS,
    MODEL_KINDS,
    OLLAMA_MODEL,
    REQUEST_ID_PREFIX,
)

from tests.fakes.common import (  # noqa: E402
    count_tokens,
    echo_text,
    embedding_vector,
    messages_tokens,
    prompt_text,
    split_words,
)

CHUNKS = int(os.environ.get(ENV_CHUNKS, DEFAULT_CHUNKS))
TIMEOUT = float(os.environ.get(ENV_TIMEOUT, "30"))
PHASE = os.environ.get(ENV_PHASE, "x")
THROUGHPUT = float(os.environ.get(ENV_THROUGHPUT, "0") or 0)
SEED = int(os.environ.get(ENV_SEED, "0") or 0) or random.randrange(1 << 30)
CHAT = "/v1/chat/completions"
MAX_TOKENS = 4 * CHUNKS  # never cuts a reply: the fakes always answer exactly CHUNKS pieces


# --------------------------------------------------------------------------------------------------
# ledger


class Ledger:
    """Append-only JSON lines; written from greenlets of one process, flushed per line."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()
        path = os.environ.get(ENV_LEDGER)
        if path:
            self._file = open(path, "ab")  # noqa: SIM115 - lives as long as the process

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        with self._lock:
            self._file.write(orjson.dumps(record) + b"\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


LEDGER = Ledger()


@events.quitting.add_listener
def _quitting(environment: Any, **_: Any) -> None:
    """Save the final request stats for run.py (``--json-file`` would suppress locust's summary)."""
    LEDGER.close()
    path = os.environ.get(ENV_STATS)
    if path and environment.runner is not None:
        stats = environment.runner.stats
        # not stats.serialize_stats(): that resets every entry, and locust prints its summary after us
        entries = [e.serialize() for e in stats.entries.values() if e.num_requests or e.num_failures]
        doc = {"entries": entries, "errors": list(stats.serialize_errors().values())}
        Path(path).write_text(json.dumps(doc))  # histogram keys are ints: stdlib json, not orjson


# --------------------------------------------------------------------------------------------------
# realistic payloads: a system prompt plus a few turns, 1-8 KB of text


VOCABULARY = (
    "the gateway model request response stream token latency provider upstream client server "
    "retry timeout budget cache prompt system user assistant tool function argument schema json "
    "please summarise explain compare the following paragraph in three bullet points with care "
    "customer invoice order shipment refund account balance quarterly report revenue growth "
    "kubernetes deployment replica pod container image registry rollout health probe ingress "
    "python function returns list dictionary error exception traceback import module package "
    "weather city forecast temperature humidity wind rain tomorrow weekend travel plan hotel "
    "always answer concisely never reveal secrets cite sources when possible and be polite"
)
WORDS = VOCABULARY.split()


def words_text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def conversation(rng: random.Random) -> list[dict[str, str]]:
    target = rng.randint(800, 7400)  # characters of text; with JSON framing the body is ~1-8 KB
    system = words_text(rng, int(target * rng.uniform(0.25, 0.6)))
    last = words_text(rng, rng.randint(30, 240))
    turns = rng.randint(1, 3)
    per_message = max(30, (target - len(system) - len(last)) // (2 * turns))
    messages = [{"role": "system", "content": system}]
    for _ in range(turns):
        messages.append({"role": "user", "content": words_text(rng, per_message)})
        messages.append({"role": "assistant", "content": words_text(rng, per_message)})
    messages.append({"role": "user", "content": last})
    return messages


def tools_for(rng: random.Random) -> list[dict[str, Any]]:
    catalogue = [
        ("get_weather", {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}),
        ("search_orders", {"query": {"type": "string"}, "limit": {"type": "integer"}}),
        ("run_sql", {"statement": {"type": "string"}}),
        ("create_ticket", {"title": {"type": "string"}, "priority": {"type": "integer"}}),
    ]
    picked = rng.sample(catalogue, rng.randint(1, 3))
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": f"{name.replace('_', ' ')} for the user",
                "parameters": {"type": "object", "properties": props, "required": [next(iter(props))]},
            },
        }
        for name, props in picked
    ]


def expected_reply(messages: list[dict[str, str]]) -> str:
    return "".join(split_words(echo_text(prompt_text(messages)), CHUNKS))


# --------------------------------------------------------------------------------------------------
# one request: timing, locust event, ledger


class RequestTimeout(Exception):
    pass


@dataclass
class Outcome:
    status: int = 0
    body: bytes = b""
    problems: list[str] = field(default_factory=list)
    outcome: str = "ok"  # ok | aborted | raced (stream ended before the abort) | failed | timeout
    usage: list[int] | None = None  # [prompt, completion] as the client saw them
    extra: dict[str, Any] = field(default_factory=dict)


Check = Callable[[Outcome], None]


class OmenUser(FastHttpUser):
    """One simulated client; each task is one scenario."""

    wait_time = constant_throughput(THROUGHPUT) if THROUGHPUT > 0 else between(0.0, 0.1)
    network_timeout = TIMEOUT + 10  # the per-request gevent timeout below fires first
    connection_timeout = TIMEOUT + 10
    max_retries = 0  # a retried request would hide a dropped connection
    concurrency = 2
    _counter = 0

    def stop(self, force: bool = False) -> bool:
        """Never kill a user between its tasks: locust kills a *waiting* user at once, and gevent may
        deliver that kill after the user already woke up and sent its next request, which would cut
        a request off at the end of every run. Let it notice the stop after its wait instead."""
        if not force and self._state == LOCUST_STATE_WAITING:
            self._state = LOCUST_STATE_STOPPING
            return False
        return bool(super().stop(force))

    def on_start(self) -> None:
        OmenUser._counter += 1
        self.rng = random.Random(SEED * 1000 + OmenUser._counter)
        self.conversations = [conversation(self.rng) for _ in range(24)]

    # ---- plumbing --------------------------------------------------------------------------

    def _new_id(self, scenario: str) -> str:
        return f"{REQUEST_ID_PREFIX}{PHASE}-{scenario}-{uuid.uuid4().hex[:20]}"

    def call(
        self,
        scenario: str,
        name: str,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        check: Check,
        *,
        model: str | None = None,
        stream: bool = False,
        include_usage: bool | None = None,
        abort_after_events: int = 0,
    ) -> Outcome:
        """Send one request, read the whole response (or abort a stream after N events), check it,
        and report exactly one locust request event and one ledger end record."""
        rid = self._new_id(scenario)
        data = orjson.dumps(payload) if payload is not None else None
        headers = {"X-Request-ID": rid, "Accept-Encoding": "identity"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        LEDGER.write({"ev": "start", "id": rid, "scenario": scenario, "t": time.time()})
        out = Outcome()
        t0 = time.perf_counter()
        resp: ResponseContextManager | None = None
        try:
            with gevent.Timeout(TIMEOUT, RequestTimeout(f"no complete response within {TIMEOUT:g} s")):
                resp = self.client.request(
                    method, path, name=name, data=data, headers=headers, catch_response=True, stream=True
                )
                with resp:
                    try:
                        self._read(resp, out, abort_after_events)
                        if not out.problems and out.outcome in ("ok", "raced"):
                            check(out)
                        elif not out.problems and out.outcome == "aborted":
                            rep = parse_sse(out.body, complete=False)
                            out.problems += rep.problems
                    except RequestTimeout as exc:
                        out.problems.append(str(exc))
                        out.outcome = "timeout"
                    except Exception as exc:
                        out.problems.append(f"{type(exc).__name__}: {exc}")
                    finally:
                        resp.request_meta["response_time"] = (time.perf_counter() - t0) * 1000
                        resp.request_meta["response_length"] = len(out.body)
                        if out.problems:
                            if out.outcome in ("ok", "raced", "aborted"):
                                out.outcome = "failed"
                            resp.failure("; ".join(out.problems)[:1000])
                        else:
                            resp.success()
        except gevent.GreenletExit:  # killed by locust (a stop_timeout ran out): say so, then die
            out.outcome = "killed"
            out.problems.append("request cut off: locust killed the user")
            self._end(rid, scenario, name, path, model, stream, include_usage, abort_after_events, data, out, t0)
            raise
        except RequestTimeout as exc:  # before the response headers: no locust event was fired yet
            out.outcome = "timeout"
            out.problems.append(str(exc))
            if resp is None:
                self.environment.events.request.fire(
                    request_type=method,
                    name=name,
                    response_time=(time.perf_counter() - t0) * 1000,
                    response_length=0,
                    exception=exc,
                    context={},
                    response=None,
                    url=path,
                )
        if out.outcome in ("failed", "timeout"):
            # geventhttpclient returns a socket to its pool even when a read of the body failed half
            # way: drop every connection of this user so one failure cannot garble the next request
            self.client.client.clientpool.close()
        self._end(rid, scenario, name, path, model, stream, include_usage, abort_after_events, data, out, t0)
        return out

    @staticmethod
    def _end(
        rid: str,
        scenario: str,
        name: str,
        path: str,
        model: str | None,
        stream: bool,
        include_usage: bool | None,
        abort_after_events: int,
        data: bytes | None,
        out: Outcome,
        t0: float,
    ) -> None:
        LEDGER.write(
            {
                "ev": "end",
                "id": rid,
                "scenario": scenario,
                "name": name,
                "path": path,
                "model": model,
                "stream": stream,
                "include_usage": include_usage,
                "expect": "abort" if abort_after_events else "complete",
                "outcome": out.outcome,
                "status": out.status,
                "usage": out.usage,
                "problems": out.problems,
                "req_bytes": len(data or b""),
                "resp_bytes": len(out.body),
                "ms": round((time.perf_counter() - t0) * 1000, 1),
                "t": time.time(),
                **out.extra,
            }
        )

    def _read(self, resp: ResponseContextManager, out: Outcome, abort_after_events: int) -> None:
        error = getattr(resp, "error", None)
        raw = getattr(resp, "_response", None)
        if error is not None or raw is None:
            out.problems.append(f"connection error: {type(error).__name__}: {error}")
            return
        out.status = resp.status_code
        if not abort_after_events or out.status != 200:
            out.body = resp.content or b""
            if out.status != 200:
                out.problems.append(f"HTTP {out.status}: {out.body[:300]!r}")
            return
        # read until N events arrived, then drop the TCP connection without reading the rest
        buf = bytearray()
        while buf.count(b"\n\n") < abort_after_events:
            piece = raw.read(64)
            if not piece:
                break
            buf += piece
        out.body = bytes(buf)
        if raw.message_complete:
            out.body += raw.read()
            out.outcome = "raced"  # the whole stream arrived before we could hang up
            return
        pool, sock = raw._pool, raw._sock
        raw._pool = raw._sock = None
        if sock is not None:
            if pool is not None:
                pool.release_socket(sock)  # closes the socket and frees the pool slot
            else:
                sock.close()
        out.outcome = "aborted"

    def conv(self) -> list[dict[str, str]]:
        return self.rng.choice(self.conversations)

    # ---- scenarios -------------------------------------------------------------------------

    @task(6)
    def chat_nonstream(self) -> None:
        model = self.rng.choice(list(CHAT_MODELS))
        messages = self.conv()
        body = {"model": model, "messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0.2}

        def check(out: Outcome) -> None:
            doc = orjson.loads(out.body)
            choices = doc.get("choices") or [{}]
            msg = choices[0].get("message") or {}
            if doc.get("object") != "chat.completion":
                out.problems.append(f"object is {doc.get('object')!r}")
            if msg.get("content") != expected_reply(messages):
                out.problems.append(f"content mismatch: {str(msg.get('content'))[:120]!r}")
            if choices[0].get("finish_reason") != "stop":
                out.problems.append(f"finish_reason {choices[0].get('finish_reason')!r}")
            out.problems += usage_problems(doc.get("usage"), messages_tokens(messages), CHUNKS)
            out.usage = usage_pair(doc.get("usage"))

        self.call("chat", "chat", "POST", CHAT, body, check, model=model)

    def _stream(self, scenario: str, name: str, model: str, include_usage: bool) -> None:
        messages = self.conv()
        body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": MAX_TOKENS, "stream": True}
        if include_usage:
            body["stream_options"] = {"include_usage": True}

        def check(out: Outcome) -> None:
            rep = parse_sse(out.body)
            out.problems += rep.problems
            out.extra["events"] = rep.events
            out.extra["usage_null_chunks"] = rep.usage_null_chunks
            if rep.content != expected_reply(messages):
                out.problems.append(f"streamed content mismatch: {rep.content[:120]!r}")
            if rep.finish_reasons != ["stop"]:
                out.problems.append(f"finish_reasons {rep.finish_reasons}")
            out.problems += stream_usage_problems(
                rep, MODEL_KINDS.get(model, ""), include_usage, messages_tokens(messages), CHUNKS
            )
            out.usage = usage_pair(rep.usage_chunks[-1]) if rep.usage_chunks else None

        self.call(scenario, name, "POST", CHAT, body, check, model=model, stream=True, include_usage=include_usage)

    @task(6)
    def chat_stream_usage(self) -> None:
        self._stream("stream_usage", "chat [stream+usage]", self.rng.choice(list(CHAT_MODELS)), True)

    @task(4)
    def chat_stream_plain(self) -> None:
        self._stream("stream", "chat [stream]", self.rng.choice(list(CHAT_MODELS)), False)

    @task(3)
    def ollama_stream(self) -> None:
        self._stream("ollama", "ollama [stream]", OLLAMA_MODEL, self.rng.random() < 0.5)

    @task(3)
    def tool_calls(self) -> None:
        model = self.rng.choice([*CHAT_MODELS, OLLAMA_MODEL])
        messages = self.conv()
        tools = tools_for(self.rng)
        stream = self.rng.random() < 0.6
        include_usage = stream and self.rng.random() < 0.5
        body: dict[str, Any] = {"model": model, "messages": messages, "tools": tools, "max_tokens": MAX_TOKENS}
        if self.rng.random() < 0.5:
            body["tool_choice"] = "auto"
        if stream:
            body["stream"] = True
            if include_usage:
                body["stream_options"] = {"include_usage": True}
        text = prompt_text(messages)
        prompt = messages_tokens(messages)

        def check(out: Outcome) -> None:
            if stream:
                rep = parse_sse(out.body)
                out.problems += rep.problems
                out.extra["events"] = rep.events
                out.extra["usage_null_chunks"] = rep.usage_null_chunks
                calls = [rep.tool_calls[i] for i in sorted(rep.tool_calls)]
                reasons = rep.finish_reasons
                if rep.content:
                    out.problems.append(f"tool-call stream has content {rep.content[:80]!r}")
                out.problems += stream_usage_problems(rep, MODEL_KINDS.get(model, ""), include_usage, prompt, None)
                out.usage = usage_pair(rep.usage_chunks[-1]) if rep.usage_chunks else None
            else:
                doc = orjson.loads(out.body)
                choice = (doc.get("choices") or [{}])[0]
                msg = choice.get("message") or {}
                calls = [
                    {"id": c.get("id"), "type": c.get("type"), **(c.get("function") or {})}
                    for c in msg.get("tool_calls") or ()
                ]
                reasons = [choice.get("finish_reason")]
                out.problems += usage_problems(doc.get("usage"), prompt, None)
                out.usage = usage_pair(doc.get("usage"))
            out.problems += tool_call_problems(calls, tools[0], text)
            if reasons != ["tool_calls"]:
                out.problems.append(f"finish_reasons {reasons}, expected ['tool_calls']")

        name = "tools [stream]" if stream else "tools"
        self.call("tools", name, "POST", CHAT, body, check, model=model, stream=stream, include_usage=include_usage)

    @task(3)
    def embeddings(self) -> None:
        model = self.rng.choice(list(EMBEDDING_MODELS))
        fmt = self.rng.choice(["float", "base64"])
        texts = [words_text(self.rng, self.rng.randint(20, 400)) for _ in range(self.rng.randint(1, 4))]
        dims = self.rng.choice([None, 16, 64])
        body: dict[str, Any] = {"model": model, "input": texts[0] if len(texts) == 1 else texts}
        if fmt == "base64":
            body["encoding_format"] = "base64"
        if dims is not None:
            body["dimensions"] = dims

        def check(out: Outcome) -> None:
            doc = orjson.loads(out.body)
            data = doc.get("data")
            if not isinstance(data, list) or len(data) != len(texts):
                out.problems.append(f"expected {len(texts)} embeddings, got {str(data)[:120]}")
                return
            for i, (item, text) in enumerate(zip(data, texts, strict=True)):
                want = embedding_vector(text, dims or 8)
                got = item.get("embedding")
                if fmt == "base64":
                    try:
                        raw = base64.b64decode(got, validate=True)
                        got = list(struct.unpack(f"<{len(raw) // 4}f", raw)) if len(raw) % 4 == 0 else None
                    except (TypeError, ValueError):
                        got = None
                if item.get("index") != i or got != want:
                    out.problems.append(f"embedding {i} ({fmt}, dims {dims}) differs from the upstream's")
                    break
            out.problems += usage_problems(
                {"completion_tokens": 0, **(doc.get("usage") or {})}, count_tokens(texts), None
            )

        self.call("embeddings", f"embeddings [{fmt}]", "POST", "/v1/embeddings", body, check, model=model)

    @task(1)
    def list_models(self) -> None:
        def check(out: Outcome) -> None:
            doc = orjson.loads(out.body)
            ids = {m.get("id") for m in doc.get("data") or () if isinstance(m, dict)}
            if doc.get("object") != "list" or not ids >= LISTED_MODELS:
                out.problems.append(f"models list lacks {sorted(LISTED_MODELS - ids)}")

        self.call("models", "models", "GET", "/v1/models", None, check)

    @task(2)
    def disconnect(self) -> None:
        """Open a stream, read 1-2 events, hang up; then OMEN must still answer."""
        model = self.rng.choice([*CHAT_MODELS, OLLAMA_MODEL])
        body = {"model": model, "messages": self.conv(), "max_tokens": MAX_TOKENS, "stream": True}
        if self.rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
        self.call(
            "disconnect",
            "disconnect mid-stream",
            "POST",
            CHAT,
            body,
            # only called when the stream ended before the hang-up: then it must be a whole stream
            lambda out: out.problems.extend(parse_sse(out.body).problems),
            model=model,
            stream=True,
            abort_after_events=self.rng.randint(1, 2),
        )

        def healthy(out: Outcome) -> None:
            if orjson.loads(out.body) != {"status": "ok"}:
                out.problems.append(f"/health answered {out.body[:120]!r}")

        self.call("health", "health after disconnect", "GET", "/health", None, healthy)
