"""GigaChat's native API (providers.md §8): the OAuth endpoint and the v1 REST API on one fake server.

Point ``auth_url`` at ``up.url(OAUTH_PATH)`` and ``base_url`` at ``up.url(API_BASE)``. The OAuth
endpoint checks ``Authorization: Basic <authorization key>`` (``Options.api_key``; ``None`` accepts any
key), a uuid ``RqUID`` and the form body's ``scope``, and issues tokens whose lifetime, exchange count
and revocation live in :func:`state`. The API accepts only live tokens it issued (when ``api_key`` is
set). Error bodies are ``{"status", "message"}`` (the OAuth endpoint's ``{"code", "message"}``); their
texts are illustrative. Like the real service the fake streams coarse ``data:`` chunks with
``object: "chat.completion"``, sends a function call whole in one delta with its
``functions_state_id``, and usage on the last chunk before ``data: [DONE]``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .common import (
    SSE_CT,
    SSE_DONE,
    ApiError,
    Ctx,
    Options,
    Plan,
    count_tokens,
    echo_text,
    embedding_vector,
    json_plan,
    limit_pieces,
    reply_text,
    split_words,
    sse,
    tool_arguments,
)

OAUTH_PATH = "/api/v2/oauth"
API_BASE = "/api/v1"
SCOPES = ("GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP")
MODELS = ["GigaChat-2", "GigaChat-2-Pro", "GigaChat-2-Max", "Embeddings", "EmbeddingsGigaR"]
VERSION = "2.0.28.2"
# the request fields of GigaChat's v1 chat contract (the SDK's Chat model); the fake refuses others so a
# leaked OpenAI-only field (stop, tools, presence_penalty...) shows up as a 422 in tests
CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "n",
        "stream",
        "max_tokens",
        "repetition_penalty",
        "update_interval",
        "profanity_check",
        "function_call",
        "functions",
        "flags",
        "storage",
        "function_ranker",
        "response_format",
        "reasoning_effort",
    }
)
ROLES = frozenset({"system", "user", "assistant", "function", "search_result", "function_in_progress"})
MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Permission denied",
    404: "No such model",
    413: "Payload too large",
    422: "Invalid params",
    429: "Too many requests",
    500: "Internal Server Error",
    502: "Bad gateway",
    503: "Service unavailable",
}


@dataclass
class GigaChatState:
    """Token bookkeeping of one fake server (``state(up)``); tests change ``lifetime`` and revoke tokens."""

    lifetime: float = 1800.0
    """Seconds an issued token lives (GigaChat: 30 minutes)."""
    scope: str | None = None
    """The only scope accepted (``None``: any of SCOPES)."""
    precached_prompt_tokens: int = 0
    """Reported as cached in chat usage (capped at the prompt's tokens)."""
    clock: Callable[[], float] = time.time
    exchanges: int = 0
    """Tokens issued so far."""
    tokens: dict[str, float] = field(default_factory=dict)
    """Issued token -> expiry (``clock`` seconds), in issue order."""
    revoked: set[str] = field(default_factory=set)

    def revoke(self, token: str | None = None) -> None:
        """Revoke one token, or every token issued so far."""
        self.revoked.update([token] if token is not None else self.tokens)

    @property
    def last_token(self) -> str:
        return list(self.tokens)[-1]


def state(up_or_options: Any) -> GigaChatState:
    """The token state of a fake server (a FakeUpstream or its Options), created on first use."""
    opts: Options = getattr(up_or_options, "options", up_or_options)
    found = opts.__dict__.get("_gigachat_state")
    if found is None:
        found = opts.__dict__["_gigachat_state"] = GigaChatState()
    return found


# ---- routing, auth, errors ---------------------------------------------------------------------------


def resolve(method: str, path: str, query: dict[str, str]) -> tuple[Callable[[Ctx], Plan], dict[str, str]]:
    handler = _ROUTES.get((method, path))
    if handler is not None:
        return handler, {}
    if method == "GET" and path.startswith(f"{API_BASE}/models/"):
        return get_model, {"model": path[len(f"{API_BASE}/models/") :]}
    raise ApiError(404, "Not found")


def check_auth(opts: Options, headers: dict[str, str], path: str, query: dict[str, str]) -> None:
    if path == OAUTH_PATH:
        _check_oauth(opts, headers)
        return
    if opts.api_key is None:
        return
    scheme, _, token = headers.get("authorization", "").partition(" ")
    st = state(opts)
    if scheme.lower() != "bearer" or token not in st.tokens or token in st.revoked:
        raise ApiError(401, "Unauthorized")
    if st.clock() >= st.tokens[token]:
        raise ApiError(401, "Token has expired")


def _check_oauth(opts: Options, headers: dict[str, str]) -> None:
    rquid = headers.get("rquid")
    try:
        uuid.UUID(rquid or "")
    except ValueError:
        raise ApiError(400, body={"code": 5, "message": "RqUID header is missing or not a uuid"}) from None
    if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise ApiError(400, body={"code": 4, "message": "Content-Type must be application/x-www-form-urlencoded"})
    scheme, _, key = headers.get("authorization", "").partition(" ")
    if scheme != "Basic" or not key or (opts.api_key is not None and key != opts.api_key):
        raise ApiError(401, body={"code": 6, "message": "credentials doesn't match db data"})


def error_body(err: ApiError, model: str | None) -> Any:
    return {"status": err.status, "message": err.message or MESSAGES.get(err.status, "Error")}


def mid_stream_error(message: str) -> bytes:
    return sse({"status": 500, "message": message})


# ---- OAuth ---------------------------------------------------------------------------------------------


def oauth(ctx: Ctx) -> Plan:
    st = state(ctx.opts)
    form = ctx.body if isinstance(ctx.body, dict) else {}
    scope = form.get("scope")
    if scope not in SCOPES or (st.scope is not None and scope != st.scope):
        raise ApiError(400, body={"code": 7, "message": "scope from db not fully includes consumed scope"})
    st.exchanges += 1
    token = f"giga-token-{st.exchanges}"
    expires = st.clock() + st.lifetime
    st.tokens[token] = expires
    return json_plan(200, {"access_token": token, "expires_at": int(expires * 1000)})


# ---- chat ------------------------------------------------------------------------------------------------


def _body(ctx: Ctx) -> dict[str, Any]:
    if not isinstance(ctx.body, dict):
        raise ApiError(400, "Invalid JSON body")
    return ctx.body


def _model(ctx: Ctx, body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(422, "model: field required")
    if model not in (ctx.opts.models if ctx.opts.models is not None else MODELS):
        raise ApiError(404, "No such model")
    return model


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise ApiError(422, "messages: at least one message is required")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise ApiError(422, f"messages[{i}].role: invalid role")
        if not isinstance(msg.get("content", ""), str):
            raise ApiError(422, f"messages[{i}].content: str type expected")
        if msg["role"] == "function":
            if not isinstance(msg.get("name"), str):
                raise ApiError(422, f"messages[{i}].name: required for role function")
            try:
                orjson.loads(msg.get("content", ""))
            except orjson.JSONDecodeError:
                raise ApiError(422, f"messages[{i}].content: function result must be JSON") from None
        call = msg.get("function_call")
        if call is not None and not (isinstance(call, dict) and isinstance(call.get("arguments"), dict)):
            raise ApiError(422, f"messages[{i}].function_call.arguments: dict type expected")
        if msg["role"] == "system" and i > 0:
            raise ApiError(422, f"messages[{i}]: system message must be the first one")
    return messages


def _functions(body: dict[str, Any]) -> list[dict[str, Any]]:
    functions = body.get("functions") or []
    if not isinstance(functions, list):
        raise ApiError(422, "functions: list type expected")
    for k, fn in enumerate(functions):
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ApiError(422, f"functions[{k}].name: field required")
        params = fn.get("parameters")
        if not isinstance(params, dict) or params.get("type") != "object":
            raise ApiError(422, f"functions[{k}].parameters: object schema expected")
    return functions


def _chosen(functions: list[dict[str, Any]], choice: Any) -> dict[str, Any] | None:
    """The function the fake calls: the forced one, else the first one under "auto"; none otherwise."""
    if isinstance(choice, dict):
        for fn in functions:
            if fn["name"] == choice.get("name"):
                return fn
        raise ApiError(422, f"function_call.name: unknown function {choice.get('name')!r}")
    if choice == "auto" and functions:
        return functions[0]
    return None


def _prompt(messages: list[dict[str, Any]]) -> str:
    """The trailing function result if the last message is one, else the last user message."""
    if messages[-1].get("role") == "function":
        return messages[-1].get("content", "")
    for msg in reversed(messages):
        if msg.get("role") == "user":
            return msg.get("content", "")
    return ""


def _usage(ctx: Ctx, messages: list[dict[str, Any]], completion: int) -> dict[str, int]:
    prompt = sum(count_tokens(m.get("content", "")) for m in messages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "precached_prompt_tokens": min(state(ctx.opts).precached_prompt_tokens, prompt),
    }


def chat(ctx: Ctx) -> Plan:
    body = _body(ctx)
    unknown = sorted(set(body) - CHAT_FIELDS)
    if unknown:
        raise ApiError(422, f"Unknown field: {unknown[0]}")
    model = _model(ctx, body)
    messages = _check_messages(body.get("messages"))
    functions = _functions(body)
    text = _prompt(messages)
    fn = None if messages[-1].get("role") == "function" else _chosen(functions, body.get("function_call"))
    head = {"created": ctx.opts.created, "model": f"{model}:{VERSION}", "object": "chat.completion"}
    if fn is not None:
        call = {"name": fn["name"], "arguments": tool_arguments(fn, text)}
        state_id = f"77d3fb14-0000-4000-8000-{ctx.seq:012d}"
        usage = _usage(ctx, messages, 1)
        reason = ctx.finish_reason or "function_call"
        if body.get("stream"):
            delta = {"role": "assistant", "content": "", "function_call": call, "functions_state_id": state_id}
            choice = {"delta": delta, "index": 0, "finish_reason": reason}
            return _sse([sse({"choices": [choice], **head, "usage": usage}), SSE_DONE])
        message = {"content": "", "role": "assistant", "function_call": call, "functions_state_id": state_id}
        return _answer(message, reason, head, usage)
    default = echo_text(text)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        default = orjson.dumps(tool_arguments({"parameters": fmt.get("schema")}, text)).decode()
    pieces = split_words(reply_text(ctx.opts, body, default), ctx.opts.chunks)
    pieces, cut = limit_pieces(pieces, body.get("max_tokens"))
    usage = _usage(ctx, messages, len(pieces))
    reason = ctx.finish_reason or ("length" if cut else "stop")
    if body.get("stream"):
        events = []
        for k, piece in enumerate(pieces):
            delta = {"content": piece, "role": "assistant"} if k == 0 else {"content": piece}
            events.append(sse({"choices": [{"delta": delta, "index": 0}], **head}))
        final = {"delta": {"content": ""}, "finish_reason": reason, "index": 0}
        events.append(sse({"choices": [final], **head, "usage": usage}))
        return _sse([*events, SSE_DONE])
    message = {"content": "".join(pieces), "role": "assistant"}
    return _answer(message, reason, head, usage)


def _answer(message: dict[str, Any], reason: str, head: dict[str, Any], usage: dict[str, int]) -> Plan:
    choice = {"message": message, "index": 0, "finish_reason": reason}
    return json_plan(200, {"choices": [choice], **head, "usage": usage})


def _sse(events: list[bytes]) -> Plan:
    return Plan(200, [SSE_CT], events, stream=True)


# ---- embeddings and models ---------------------------------------------------------------------------------


def embeddings(ctx: Ctx) -> Plan:
    body = _body(ctx)
    model = _model(ctx, body)
    texts = body.get("input")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(422, "input: list of strings expected")
    if not model.startswith("Embeddings"):
        raise ApiError(400, f"Model {model} does not support embeddings")
    data = [
        {
            "object": "embedding",
            "embedding": embedding_vector(t, ctx.opts.embedding_dims),
            "index": i,
            "usage": {"prompt_tokens": count_tokens(t)},
        }
        for i, t in enumerate(texts)
    ]
    return json_plan(200, {"object": "list", "data": data, "model": model})


def _model_entry(name: str) -> dict[str, Any]:
    kind = "embedder" if name.startswith("Embeddings") else "chat"
    return {"id": name, "object": "model", "owned_by": "salutedevices", "type": kind}


def list_models(ctx: Ctx) -> Plan:
    names = ctx.opts.models if ctx.opts.models is not None else MODELS
    return json_plan(200, {"object": "list", "data": [_model_entry(n) for n in names]})


def get_model(ctx: Ctx) -> Plan:
    name = ctx.params["model"]
    if name not in (ctx.opts.models if ctx.opts.models is not None else MODELS):
        raise ApiError(404, "No such model")
    return json_plan(200, _model_entry(name))


_ROUTES: dict[tuple[str, str], Callable[[Ctx], Plan]] = {
    ("POST", OAUTH_PATH): oauth,
    ("POST", f"{API_BASE}/chat/completions"): chat,
    ("POST", f"{API_BASE}/embeddings"): embeddings,
    ("GET", f"{API_BASE}/models"): list_models,
}
