"""OpenAI-format endpoints, shared by the openai/generic, xai and azure fakes (providers.md §1-3).

Flavours: xAI puts a cumulative ``usage`` on every stream chunk; Azure answers with a real model
name (not the deployment), adds ``prompt_filter_results`` / ``content_filter_results`` and opens
streams with its ``"choices":[]`` prompt-filter chunk (id "", model "", created 0).
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson

from .common import (
    DEFAULT_MODELS,
    SSE_CT,
    SSE_DONE,
    ApiError,
    Ctx,
    Plan,
    count_tokens,
    echo_text,
    embedding_vector,
    json_plan,
    limit_pieces,
    messages_tokens,
    pick_tools,
    prompt_text,
    reply_text,
    split_arguments,
    split_words,
    sse,
    tool_arguments,
    tool_call_id,
)

_SAFE = {"filtered": False, "severity": "safe"}
AZURE_PROMPT_FILTER = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            "hate": _SAFE,
            "jailbreak": {"filtered": False, "detected": False},
            "self_harm": _SAFE,
            "sexual": _SAFE,
            "violence": _SAFE,
        },
    }
]
AZURE_CONTENT_FILTER = {
    "hate": _SAFE,
    "protected_material_code": {"filtered": False, "detected": False},
    "protected_material_text": {"filtered": False, "detected": False},
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the last "
    "5 minutes, please wait a moment and try again."
)


def _bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, type="invalid_request_error", param=param, code=code)


def _missing(name: str) -> ApiError:
    return _bad(f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")


def request_object(ctx: Ctx) -> dict[str, Any]:
    if not isinstance(ctx.body, dict):
        raise _bad(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
        )
    return ctx.body


def check_model(ctx: Ctx, model: Any, *, required: bool = True) -> str:
    """Validate the body model (Azure: the deployment) and return the model to put in the response."""
    if ctx.kind == "azure":
        deployment = ctx.params.get("deployment") or model
        if not deployment:
            raise _missing("model")
        deployments = ctx.opts.deployments
        if deployments is not None and deployment not in deployments:
            raise ApiError(404, body={"error": {"code": "DeploymentNotFound", "message": DEPLOYMENT_NOT_FOUND}})
        return ""
    if not isinstance(model, str) or not model:
        if required:
            raise _bad("you must provide a model parameter")
        return ""
    if ctx.opts.models is not None and model not in ctx.opts.models:
        raise ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            type="invalid_request_error",
            code="model_not_found",
        )
    return model


def usage_obj(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _include_usage(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options")
    return isinstance(opts, dict) and opts.get("include_usage") is True


def _n(body: dict[str, Any]) -> int:
    n = body.get("n", 1)
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
        raise _bad(f"{n!r} is not a valid value for 'n'", param="n", code="invalid_value")
    return n


class _Streamer:
    """Builds the SSE events of one streamed reply with the kind's quirks."""

    def __init__(self, ctx: Ctx, obj_type: str, rid: str, model: str, prompt_tokens: int, include_usage: bool):
        self.ctx = ctx
        self.azure = ctx.kind == "azure"
        self.xai = ctx.kind == "xai"
        self.include_usage = include_usage
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.head = {
            "id": rid,
            "object": obj_type,
            "created": ctx.opts.created,
            "model": model,
            "system_fingerprint": ctx.opts.system_fingerprint,
        }
        self.events: list[bytes] = []
        if self.azure:
            self.events.append(
                sse(
                    {
                        "choices": [],
                        "created": 0,
                        "id": "",
                        "model": "",
                        "object": "",
                        "prompt_filter_results": AZURE_PROMPT_FILTER,
                    }
                )
            )

    def emit(self, choice: dict[str, Any], tokens: int = 0, filtered: bool = False) -> None:
        self.completion_tokens += tokens
        if self.azure:
            choice["content_filter_results"] = AZURE_CONTENT_FILTER if filtered else {}
        obj = dict(self.head)
        obj["choices"] = [choice]
        if self.xai:
            obj["usage"] = usage_obj(self.prompt_tokens, self.completion_tokens)
        elif self.include_usage:
            obj["usage"] = None
        self.events.append(sse(obj))

    def finish(self) -> list[bytes]:
        if self.include_usage:
            obj = dict(self.head)
            obj["choices"] = []
            obj["usage"] = usage_obj(self.prompt_tokens, self.completion_tokens)
            self.events.append(sse(obj))
        self.events.append(SSE_DONE)
        return self.events


def _stream_plan(ctx: Ctx, events: list[bytes]) -> Plan:
    return Plan(200, [SSE_CT, (b"cache-control", b"no-cache")], events, stream=True)


def _tool_calls(ctx: Ctx, body: dict[str, Any], messages: list[Any], text: str) -> list[tuple[str, str, str]]:
    """``(id, name, arguments-json)`` for each call the fake makes; none after a tool result."""
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        return []
    calls = []
    for i, fn in enumerate(pick_tools(body.get("tools"), body.get("tool_choice"), ctx.opts.tool_calls)):
        name = str(fn.get("name", ""))
        args = orjson.dumps(tool_arguments(fn, text)).decode()
        calls.append((tool_call_id(name, args, i), name, args))
    return calls


def chat(ctx: Ctx) -> Plan:
    body = request_object(ctx)
    model = check_model(ctx, body.get("model"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _missing("messages")
    resp_model = ctx.opts.azure_model if ctx.kind == "azure" else model
    n = _n(body)
    text = prompt_text(messages)
    calls = _tool_calls(ctx, body, messages, text)
    pieces: list[str] = []
    cut = False
    if not calls:
        pieces = split_words(reply_text(ctx.opts, body, echo_text(text)), ctx.opts.chunks)
        pieces, cut = limit_pieces(pieces, body.get("max_completion_tokens", body.get("max_tokens")))
    finish = ctx.finish_reason or ("tool_calls" if calls else "length" if cut else "stop")
    arg_pieces = [split_arguments(args) for _, _, args in calls]
    per_choice = len(pieces) + sum(len(p) for p in arg_pieces)
    prompt_tokens = messages_tokens(messages)
    rid = f"chatcmpl-fake{ctx.seq:08d}"
    azure = ctx.kind == "azure"

    if body.get("stream") is True:
        st = _Streamer(ctx, "chat.completion.chunk", rid, resp_model, prompt_tokens, _include_usage(body))
        for i in range(n):

            def choice(delta: dict[str, Any], finish_reason: str | None = None, i: int = i) -> dict[str, Any]:
                return {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

            st.emit(choice({"role": "assistant", "content": "", "refusal": None}))
            for piece in pieces:
                st.emit(choice({"content": piece}), 1, filtered=True)
            for j, ((cid, name, _), frags) in enumerate(zip(calls, arg_pieces, strict=True)):
                first = {"index": j, "id": cid, "type": "function", "function": {"name": name, "arguments": ""}}
                st.emit(choice({"tool_calls": [first]}))
                for frag in frags:
                    st.emit(choice({"tool_calls": [{"index": j, "function": {"arguments": frag}}]}), 1)
            st.emit(choice({}, finish))
        return _stream_plan(ctx, st.finish())

    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if calls else "".join(pieces),
        "refusal": None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}} for cid, name, args in calls
        ]
    choices = []
    for i in range(n):
        c: dict[str, Any] = {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
        if azure:
            c["content_filter_results"] = AZURE_CONTENT_FILTER
        choices.append(c)
    resp: dict[str, Any] = {"id": rid, "object": "chat.completion", "created": ctx.opts.created, "model": resp_model}
    if not azure:
        resp["service_tier"] = "default"
    resp["system_fingerprint"] = ctx.opts.system_fingerprint
    resp["choices"] = choices
    resp["usage"] = usage_obj(prompt_tokens, per_choice * n)
    if azure:
        resp["prompt_filter_results"] = AZURE_PROMPT_FILTER
    return json_plan(200, resp)


def _prompts(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        if not prompt:
            return [""]
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(isinstance(p, int) for p in prompt):
            return [" ".join(map(str, prompt))]
        if all(isinstance(p, list) for p in prompt):
            return [" ".join(map(str, p)) for p in prompt]
    raise _bad("Invalid prompt: must be a string, an array of strings, or token arrays.", param="prompt")


def completions(ctx: Ctx) -> Plan:
    """Legacy ``/completions``: one choice per prompt; ``suffix`` shows up as `` [suffix: ...]``."""
    body = request_object(ctx)
    model = check_model(ctx, body.get("model"))
    if "prompt" not in body:
        raise _missing("prompt")
    prompts = _prompts(body.get("prompt"))
    resp_model = ctx.opts.azure_model if ctx.kind == "azure" else model
    suffix = body.get("suffix")
    n = _n(body)
    outs: list[tuple[list[str], str]] = []
    for p in prompts:
        default = echo_text(p) + (f" [suffix: {suffix}]" if isinstance(suffix, str) and suffix else "")
        pieces = split_words(reply_text(ctx.opts, body, default), ctx.opts.chunks)
        pieces, cut = limit_pieces(pieces, body.get("max_tokens"))
        if body.get("echo") is True:
            pieces = [p, *pieces]
        outs.append((pieces, ctx.finish_reason or ("length" if cut else "stop")))
    prompt_tokens = count_tokens(prompts)
    rid = f"cmpl-fake{ctx.seq:08d}"
    azure = ctx.kind == "azure"

    if body.get("stream") is True:
        st = _Streamer(ctx, "text_completion", rid, resp_model, prompt_tokens, _include_usage(body))
        for k, (pieces, finish) in enumerate(outs):
            for j in range(n):
                idx = k * n + j
                for piece in pieces:
                    st.emit({"text": piece, "index": idx, "logprobs": None, "finish_reason": None}, 1, True)
                st.emit({"text": "", "index": idx, "logprobs": None, "finish_reason": finish})
        return _stream_plan(ctx, st.finish())

    choices = []
    completion_tokens = 0
    for k, (pieces, finish) in enumerate(outs):
        for j in range(n):
            c: dict[str, Any] = {"text": "".join(pieces), "index": k * n + j, "logprobs": None, "finish_reason": finish}
            if azure:
                c["content_filter_results"] = AZURE_CONTENT_FILTER
            choices.append(c)
            completion_tokens += len(pieces)
    resp: dict[str, Any] = {
        "id": rid,
        "object": "text_completion",
        "created": ctx.opts.created,
        "model": resp_model,
        "system_fingerprint": ctx.opts.system_fingerprint,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if azure:
        resp["prompt_filter_results"] = AZURE_PROMPT_FILTER
    return json_plan(200, resp)


def embedding_inputs(value: Any) -> list[str]:
    """Normalise ``input`` (string, strings, token array, token arrays) to the texts hashed."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [" ".join(map(str, value))]
        if all(isinstance(v, list) for v in value):
            return [" ".join(map(str, v)) for v in value]
    raise _bad("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.")


def encode_base64(vector: list[float]) -> str:
    """OpenAI's base64 embedding: little-endian float32 array."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embeddings(ctx: Ctx) -> Plan:
    body = request_object(ctx)
    model = check_model(ctx, body.get("model"))
    if "input" not in body:
        raise _missing("input")
    texts = embedding_inputs(body["input"])
    dims = body.get("dimensions") or ctx.opts.embedding_dims
    if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
        raise _bad(f"{dims!r} is not a valid value for 'dimensions'", param="dimensions")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise _bad(f"{fmt!r} is not one of ['float', 'base64'] - 'encoding_format'", param="encoding_format")
    data = []
    for i, t in enumerate(texts):
        vec = embedding_vector(t, dims)
        data.append({"object": "embedding", "index": i, "embedding": encode_base64(vec) if fmt == "base64" else vec})
    tokens = count_tokens(texts)
    resp_model = ctx.opts.azure_embedding_model if ctx.kind == "azure" else model
    return json_plan(
        200,
        {
            "object": "list",
            "data": data,
            "model": resp_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
    )


def _model_obj(ctx: Ctx, model: str) -> dict[str, Any]:
    owner = {"xai": "xai", "azure": "system"}.get(ctx.kind, "openai")
    return {"id": model, "object": "model", "created": 1686935002, "owned_by": owner}


def _known_models(ctx: Ctx) -> list[str]:
    return ctx.opts.models if ctx.opts.models is not None else DEFAULT_MODELS[ctx.kind]


def list_models(ctx: Ctx) -> Plan:
    return json_plan(200, {"object": "list", "data": [_model_obj(ctx, m) for m in _known_models(ctx)]})


def get_model(ctx: Ctx) -> Plan:
    model = ctx.params.get("model", "")
    if model not in _known_models(ctx):
        raise ApiError(
            404,
            f"The model '{model}' does not exist",
            type="invalid_request_error",
            param="model",
            code="model_not_found",
        )
    return json_plan(200, _model_obj(ctx, model))
