"""Google Gemini's Generative Language API (providers.md §6) as the fake speaks it.

Routes (``v1beta`` and ``v1``): ``POST /models/{m}:generateContent``, ``:streamGenerateContent``
(``?alt=sse``: SSE with CRLF framing and no end marker; without it one JSON array), ``:embedContent``,
``:batchEmbedContents``, ``GET /models`` (``pageSize``/``pageToken``), ``GET /models/{m}``. Unknown
URLs get Google's HTML 404 page.

Auth: ``x-goog-api-key`` header (or ``?key=``, which Google also takes): none -> 403
PERMISSION_DENIED, a wrong one -> 400 INVALID_ARGUMENT with reason API_KEY_INVALID, as Google answers.

Strictness, so translation mistakes fail loudly: unknown request fields and schema keywords outside
Gemini's subset (``additionalProperties``...) are refused the way Google refuses them, roles must be
``user``/``model``, parts must not be empty, and a ``thoughtSignature`` sent back must be one the fake
issued (the first call of each answer carries one, as Gemini 3 does).

The deterministic model answers ``"Echo: <text>"`` (the last user text, or the last function
response's ``output``; inline media are listed as `` [<mime>]``), one token per word. Usage: the
system instruction counts as an implicitly cached prefix (``cachedContentTokenCount``), and a
positive ``thinkingConfig.thinkingBudget`` costs 5 ``thoughtsTokenCount``. A Fault's
``finish_reason`` is a Gemini ``finishReason`` (``SAFETY``, ``MAX_TOKENS``...), or ``blocked:<REASON>``
to block the prompt itself (``promptFeedback.blockReason``, no candidates).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from .common import (
    SSE_CT,
    ApiError,
    Ctx,
    Plan,
    count_tokens,
    echo_text,
    embedding_vector,
    json_plan,
    limit_pieces,
    reply_text,
    split_words,
    tool_arguments,
)

MODELS = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001", "imagen-4.0-generate-001"]
THOUGHT_TOKENS = 5
SIGNATURE_PREFIX = b"fake-signature:"

_GENERATE = ("generateContent", "streamGenerateContent")
_EMBED = ("embedContent", "batchEmbedContents")
_ROUTE = re.compile(r"/(v1beta|v1)/(models|tunedModels)/([^/:]+):(\w+)")
_LIST = re.compile(r"/(v1beta|v1)/models")
_GET = re.compile(r"/(v1beta|v1)/models/([^/:]+)")

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}
_NOT_FOUND_HTML = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 404 (Not Found)!!1</title>\n"
    "  <p><b>404.</b> <ins>That\u2019s an error.</ins>\n  <p>The requested URL <code>{path}</code> was not found on "
    "this server.  <ins>That\u2019s all we know.</ins>\n"
)

# The fields Google accepts; anything else is "Unknown name ...: Cannot find field."
_REQUEST_KEYS = frozenset(
    {"model", "contents", "systemInstruction", "tools", "toolConfig", "safetySettings", "generationConfig"}
    | {"cachedContent"}
)
_CONTENT_KEYS = frozenset({"role", "parts"})
_PART_KEYS = frozenset(
    {
        "text",
        "inlineData",
        "fileData",
        "functionCall",
        "functionResponse",
        "thought",
        "thoughtSignature",
        "executableCode",
        "codeExecutionResult",
        "videoMetadata",
    }
)
_GENERATION_KEYS = frozenset(
    {
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
        "mediaResolution",
        "speechConfig",
        "imageConfig",
    }
)
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
_SCHEMA_TYPES = frozenset({"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
_MODES = frozenset({"AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"})
_NO_CONTENT = frozenset(
    {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "MALFORMED_FUNCTION_CALL", "IMAGE_SAFETY"}
)


# ---- wire helpers ---------------------------------------------------------------------------------------


def google_error(status: int, message: str | None = None, details: list[Any] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {
        "code": status,
        "message": message or _MESSAGES.get(status, "Internal error." if status >= 500 else "Bad request."),
        "status": _STATUS.get(status, "UNKNOWN"),
    }
    if details:
        err["details"] = details
    return {"error": err}


def _fail(status: int, message: str, details: list[Any] | None = None) -> ApiError:
    return ApiError(status, message, body=google_error(status, message, details))


def _unknown_field(name: str, where: str) -> ApiError:
    at = f" at '{where}'" if where else ""
    return _fail(400, f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"


def _json(obj: Any) -> Plan:
    plan = json_plan(200, obj)
    plan.headers[0] = (b"content-type", b"application/json; charset=UTF-8")
    return plan


def signature(name: str) -> str:
    return base64.b64encode(SIGNATURE_PREFIX + name.encode()).decode()


def _models(ctx: Ctx) -> list[str]:
    return ctx.opts.models if ctx.opts.models is not None else MODELS


def _is_embedding(model: str) -> bool:
    return "embedding" in model


def _methods(model: str) -> list[str]:
    if model.startswith("imagen"):
        return ["predict"]
    if _is_embedding(model):
        return ["embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent"]
    return ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]


def _model(ctx: Ctx, method: str) -> str:
    model = ctx.params["model"]
    version = ctx.params["version"]
    supported = method in _methods(model) or (method == "batchEmbedContents" and _is_embedding(model))
    if method == "streamGenerateContent":
        supported = "generateContent" in _methods(model)
    if model not in _models(ctx) or not supported:
        raise _fail(
            404,
            f"models/{model} is not found for API version {version}, or is not supported for {method}. "
            "Call ListModels to see the list of available models and their supported methods.",
        )
    return model


def _body(ctx: Ctx) -> dict[str, Any]:
    if not isinstance(ctx.body, dict):
        raise _fail(400, "Invalid JSON payload received. Expected an object.")
    return ctx.body


def _b64(data: Any, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True) if isinstance(data, str) else b""
    except (binascii.Error, ValueError):
        raise _fail(400, f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed.") from None


# ---- request validation -----------------------------------------------------------------------------------


def check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        raise _fail(400, f"Invalid JSON payload received. Invalid value at '{where}'.")
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS:
            raise _unknown_field(key, where)
        if key == "type" and (not isinstance(value, str) or value.upper() not in _SCHEMA_TYPES):
            raise _fail(
                400,
                f"Invalid JSON payload received. Invalid value at '{where}.type' "
                f'(type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "{value}"',
            )
        if key == "enum" and not all(isinstance(v, str) for v in value):
            raise _fail(400, f"Invalid JSON payload received. Invalid value at '{where}.enum'.")
    for name, sub in (schema.get("properties") or {}).items():
        check_schema(sub, f"{where}.properties[{name}].value")
    if "items" in schema:
        check_schema(schema["items"], f"{where}.items")
    for i, sub in enumerate(schema.get("anyOf") or ()):
        check_schema(sub, f"{where}.any_of[{i}]")
    props = schema.get("properties")
    for name in schema.get("required") or ():
        if not isinstance(props, dict) or name not in props:
            raise _fail(400, f"* GenerateContentRequest.{where}.required[{name}]: property is not defined")
    is_object = str(schema.get("type", "")).upper() == "OBJECT"
    if is_object and isinstance(props, dict) and not props and where.endswith("parameters"):
        raise _fail(400, f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type")


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict) or not part:
        raise _fail(
            400, f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one initialized field"
        )
    for key in part:
        if key not in _PART_KEYS:
            raise _unknown_field(key, where)
    if part.get("text") == "":
        raise _fail(
            400,
            "Unable to submit request because it has an empty text parameter. Add a value to the parameter and try "
            "again.",
        )
    if "inlineData" in part:
        blob = part["inlineData"]
        if (
            not isinstance(blob, dict)
            or not blob.get("mimeType")
            or not _b64(blob.get("data"), f"{where}.inline_data.data")
        ):
            raise _fail(400, f"* GenerateContentRequest.{where}.inline_data: mimeType and data are required")
    if "functionCall" in part:
        fc = part["functionCall"]
        if not isinstance(fc, dict) or not fc.get("name") or not isinstance(fc.get("args", {}), dict):
            raise _fail(400, f"* GenerateContentRequest.{where}.function_call: name is required, args an object")
        sig = part.get("thoughtSignature")
        if sig is not None and not _b64(sig, f"{where}.thought_signature").startswith(SIGNATURE_PREFIX):
            raise _fail(400, "Corrupted thought signature.")
    if "functionResponse" in part:
        fr = part["functionResponse"]
        if not isinstance(fr, dict) or not fr.get("name") or not isinstance(fr.get("response"), dict):
            raise _fail(400, f"* GenerateContentRequest.{where}.function_response: name and response are required")


def _check_request(body: dict[str, Any]) -> None:
    for key in body:
        if key not in _REQUEST_KEYS:
            raise _unknown_field(key, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _fail(400, "* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            raise _fail(400, f"Invalid value at 'contents[{i}]'")
        for key in content:
            if key not in _CONTENT_KEYS:
                raise _unknown_field(key, f"contents[{i}]")
        if content.get("role") not in ("user", "model"):
            raise _fail(400, "Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _fail(400, f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        for j, part in enumerate(parts):
            _check_part(part, f"contents[{i}].parts[{j}]")
    system = body.get("systemInstruction")
    if system is not None:
        if not isinstance(system, dict) or not isinstance(system.get("parts"), list):
            raise _fail(400, "Invalid value at 'system_instruction'")
        for j, part in enumerate(system["parts"]):
            _check_part(part, f"system_instruction.parts[{j}]")
    for t, tool in enumerate(body.get("tools") or ()):
        for d, decl in enumerate(tool.get("functionDeclarations") or ()):
            where = f"tools[{t}].function_declarations[{d}]"
            for key in decl:
                if key not in ("name", "description", "parameters", "parametersJsonSchema", "response", "behavior"):
                    raise _unknown_field(key, where)
            if "parameters" in decl:
                check_schema(decl["parameters"], f"{where}.parameters")
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if config.get("mode", "AUTO") not in _MODES:
        raise _fail(400, f"Invalid value at 'tool_config.function_calling_config.mode', \"{config.get('mode')}\"")
    if config.get("allowedFunctionNames") and config.get("mode") not in ("ANY", "VALIDATED"):
        raise _fail(400, "allowed_function_names is only allowed when function calling mode is ANY.")
    generation = body.get("generationConfig") or {}
    for key in generation:
        if key not in _GENERATION_KEYS:
            raise _unknown_field(key, "generation_config")
    if "responseSchema" in generation:
        check_schema(generation["responseSchema"], "generation_config.response_schema")
    count = generation.get("candidateCount", 1)
    if not isinstance(count, int) or not 1 <= count <= 8:
        raise _fail(400, "* GenerateContentRequest.generation_config.candidate_count: must be between 1 and 8")


# ---- the deterministic model --------------------------------------------------------------------------------


def _texts(parts: list[dict[str, Any]]) -> list[str]:
    return [p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought")]


def _prompt(contents: list[dict[str, Any]]) -> tuple[str, bool]:
    """(what to echo, whether the last turn answers function calls)."""
    last = contents[-1]
    responses = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
    if last["role"] == "user" and responses:
        output = responses[-1]["response"].get("output", responses[-1]["response"])
        return (output if isinstance(output, str) else orjson.dumps(output).decode()), True
    for content in reversed(contents):
        if content["role"] == "user":
            text = " ".join(_texts(content["parts"]))
            media = "".join(f" [{p['inlineData']['mimeType']}]" for p in content["parts"] if "inlineData" in p)
            return text + media, False
    return "", False


def _sample(schema: dict[str, Any], text: str) -> Any:
    """A value that satisfies a (Gemini) response schema, for JSON mode with a schema."""
    kind = str(schema.get("type", "")).upper()
    if "anyOf" in schema:
        return _sample(schema["anyOf"][0], text)
    if kind == "OBJECT":
        return {name: _sample(sub, text) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "ARRAY":
        return [_sample(schema.get("items") or {"type": "STRING"}, text)]
    if kind == "INTEGER":
        return len(text.split())
    if kind == "NUMBER":
        return 0.5
    if kind == "BOOLEAN":
        return True
    if schema.get("enum"):
        return schema["enum"][0]
    return text


def _calls(body: dict[str, Any], ctx: Ctx, text: str) -> list[dict[str, Any]]:
    declarations = [d for tool in body.get("tools") or () for d in tool.get("functionDeclarations") or ()]
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if not declarations or config.get("mode") == "NONE":
        return []
    allowed = config.get("allowedFunctionNames")
    if allowed:
        declarations = [d for d in declarations if d.get("name") in allowed]
    parts = []
    for k, decl in enumerate(declarations[: max(1, ctx.opts.tool_calls)]):
        part: dict[str, Any] = {"functionCall": {"name": decl["name"], "args": tool_arguments(decl, text)}}
        if k == 0:  # as Gemini 3 does for parallel calls: only the first carries the signature
            part["thoughtSignature"] = signature(decl["name"])
        parts.append(part)
    return parts


def _usage(body: dict[str, Any], prompt_tokens: int, output_tokens: int) -> dict[str, Any]:
    system = body.get("systemInstruction") or {}
    cached = count_tokens(_texts(system.get("parts") or []))
    budget = ((body.get("generationConfig") or {}).get("thinkingConfig") or {}).get("thinkingBudget")
    thoughts = THOUGHT_TOKENS if isinstance(budget, int) and budget != 0 else 0
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }
    if cached:
        usage["cachedContentTokenCount"] = cached
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _cut_at_stop(text: str, stops: Any) -> str:
    if not isinstance(stops, list):
        return text
    cut = min((text.find(s) for s in stops if isinstance(s, str) and s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text


def _answer(ctx: Ctx) -> tuple[dict[str, Any], list[list[dict[str, Any]]], str, int]:
    """(request body, parts per stream chunk, finish reason, candidate count)."""
    body = _body(ctx)
    _check_request(body)
    contents = body["contents"]
    text, answered = _prompt(contents)
    generation = body.get("generationConfig") or {}
    calls = [] if answered else _calls(body, ctx, text)
    chunks: list[list[dict[str, Any]]] = []
    reason = "STOP"
    if not calls:
        if generation.get("responseMimeType") == "application/json":
            schema = generation.get("responseSchema")
            value = _sample(schema, text) if isinstance(schema, dict) else {"echo": text}
            default = orjson.dumps(value).decode()
        else:
            default = echo_text(text)
        reply = _cut_at_stop(reply_text(ctx.opts, body, default), generation.get("stopSequences"))
        pieces = split_words(reply, ctx.opts.chunks)
        pieces, cut = limit_pieces(pieces, generation.get("maxOutputTokens"))
        reason = "MAX_TOKENS" if cut else "STOP"
        chunks = [[{"text": p}] for p in pieces]
    else:
        chunks = [calls]
    reason = ctx.finish_reason or reason
    if reason in _NO_CONTENT:
        chunks = []
    return body, chunks, reason, generation.get("candidateCount", 1)


def _prompt_tokens(body: dict[str, Any]) -> int:
    parts = [p for c in body["contents"] for p in c["parts"]]
    parts += (body.get("systemInstruction") or {}).get("parts") or []
    return count_tokens(_texts(parts))


def _head(ctx: Ctx, model: str) -> dict[str, Any]:
    return {"modelVersion": model, "responseId": f"fakeResp{ctx.seq:06d}"}


def _blocked(ctx: Ctx, model: str, body: dict[str, Any], reason: str) -> dict[str, Any]:
    ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]
    return {
        "promptFeedback": {"blockReason": reason, "safetyRatings": ratings},
        "usageMetadata": _usage(body, _prompt_tokens(body), 0),
        **_head(ctx, model),
    }


def _candidate(parts: list[dict[str, Any]] | None, index: int, reason: str | None, stream: bool) -> dict[str, Any]:
    cand: dict[str, Any] = {}
    if parts:
        cand["content"] = {"parts": parts, "role": "model"}
    if reason is not None:
        cand["finishReason"] = reason
        if reason == "MALFORMED_FUNCTION_CALL":
            cand["finishMessage"] = "Malformed function call: print(default_api.get_weather(city=Paris"
    if index or stream:  # proto3 JSON leaves out a zero index; streamed chunks carry it
        cand["index"] = index
    return cand


def generate(ctx: Ctx) -> Plan:
    model = _model(ctx, "generateContent")
    body, chunks, reason, count = _answer(ctx)
    if reason.startswith("blocked:"):
        return _json(_blocked(ctx, model, body, reason.removeprefix("blocked:")))
    parts = [p for chunk in chunks for p in chunk]
    if parts and "text" in parts[0]:
        parts = [{"text": "".join(p["text"] for p in parts)}]
    candidates = [_candidate(parts, i, reason, False) for i in range(count)]
    usage = _usage(body, _prompt_tokens(body), sum(len(c) for c in chunks) * count)
    return _json({"candidates": candidates, "usageMetadata": usage, **_head(ctx, model)})


def stream_generate(ctx: Ctx) -> Plan:
    model = _model(ctx, "streamGenerateContent")
    body, chunks, reason, count = _answer(ctx)
    prompt = _prompt_tokens(body)
    if reason.startswith("blocked:"):
        events = [_blocked(ctx, model, body, reason.removeprefix("blocked:"))]
    else:
        events = []
        for i, parts in enumerate(chunks or [[]]):
            last = i == max(len(chunks), 1) - 1
            output = sum(len(c) for c in chunks[: i + 1]) * count
            event: dict[str, Any] = {
                "candidates": [_candidate(parts, k, reason if last else None, True) for k in range(count)],
                # running totals; the output count appears with the last chunk, as Gemini reports it
                "usageMetadata": _usage(body, prompt, output)
                if last
                else {"promptTokenCount": prompt, "totalTokenCount": prompt},
                **_head(ctx, model),
            }
            events.append(event)
    if ctx.query.get("alt") != "sse":  # Gemini's non-SSE stream form: one JSON array
        return _json(events)
    return Plan(200, [SSE_CT], [_sse(e) for e in events], stream=True)


def _embed_content(request: Any, where: str) -> str:
    content = request.get("content") if isinstance(request, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise _fail(400, f"* {where}.content: contents.parts must not be empty.")
    return " ".join(_texts(parts))


def _dims(ctx: Ctx, request: dict[str, Any]) -> int:
    dims = request.get("outputDimensionality") or ctx.opts.embedding_dims
    if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
        raise _fail(400, "* EmbedContentRequest.output_dimensionality: must be a positive integer")
    return dims


def embed_content(ctx: Ctx) -> Plan:
    _model(ctx, "embedContent")
    body = _body(ctx)
    for key in body:
        if key not in ("model", "content", "taskType", "title", "outputDimensionality"):
            raise _unknown_field(key, "")
    text = _embed_content(body, "EmbedContentRequest")
    return _json({"embedding": {"values": embedding_vector(text, _dims(ctx, body))}})


def batch_embed_contents(ctx: Ctx) -> Plan:
    model = _model(ctx, "batchEmbedContents")
    requests = _body(ctx).get("requests")
    if not isinstance(requests, list) or not requests:
        raise _fail(400, "* BatchEmbedContentsRequest.requests: requests must not be empty")
    vectors = []
    for i, request in enumerate(requests):
        where = f"BatchEmbedContentsRequest.requests[{i}]"
        if not isinstance(request, dict) or request.get("model") != f"models/{model}":
            raise _fail(400, f"* {where}.model: the model must be models/{model}, the batch request's model")
        vectors.append({"values": embedding_vector(_embed_content(request, where), _dims(ctx, request))})
    return _json({"embeddings": vectors})


def _model_entry(name: str) -> dict[str, Any]:
    embedding = _is_embedding(name)
    entry: dict[str, Any] = {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name.replace("-", " ").title(),
        "description": f"Fake {name}",
        "inputTokenLimit": 2048 if embedding else 1048576,
        "outputTokenLimit": 1 if embedding else 65536,
        "supportedGenerationMethods": _methods(name),
    }
    if not embedding and not name.startswith("imagen"):
        entry.update({"temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2, "thinking": True})
    return entry


def list_models(ctx: Ctx) -> Plan:
    names = _models(ctx)
    try:
        size = min(int(ctx.query.get("pageSize") or 50), 1000)
        start = int(ctx.query.get("pageToken") or 0)
    except ValueError:
        raise _fail(400, "Invalid value for pageSize or pageToken.") from None
    out: dict[str, Any] = {"models": [_model_entry(n) for n in names[start : start + size]]}
    if start + size < len(names):
        out["nextPageToken"] = str(start + size)
    return _json(out)


def get_model(ctx: Ctx) -> Plan:
    name = ctx.params["model"]
    if name not in _models(ctx):
        raise _fail(404, f"models/{name} is not found for API version {ctx.params['version']}")
    return _json(_model_entry(name))


_HANDLERS = {
    "generateContent": generate,
    "streamGenerateContent": stream_generate,
    "embedContent": embed_content,
    "batchEmbedContents": batch_embed_contents,
}


# ---- the interface routes.native_wire expects -------------------------------------------------------------


def resolve(method: str, path: str, query: dict[str, str]) -> tuple[Any, dict[str, str]]:
    m = _ROUTE.fullmatch(path)
    if m and method == "POST" and m[4] in _HANDLERS:
        return _HANDLERS[m[4]], {"version": m[1], "model": m[3]}
    if method == "GET" and _LIST.fullmatch(path):
        return list_models, {"version": path.split("/")[1]}
    m = _GET.fullmatch(path)
    if m and method == "GET":
        return get_model, {"version": m[1], "model": m[2]}
    raise ApiError(404, body=_NOT_FOUND_HTML.format(path=path))


def check_auth(opts: Any, headers: dict[str, str], path: str, query: dict[str, str]) -> None:
    if opts.api_key is None:
        return
    key = headers.get("x-goog-api-key") or query.get("key")
    if key == opts.api_key:
        return
    if not key:
        raise _fail(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {
            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
            "locale": "en-US",
            "message": "API key not valid.",
        },
    ]
    raise _fail(400, "API key not valid. Please pass a valid API key.", details)


def error_body(err: ApiError, model: str | None) -> Any:
    details = None
    if err.status == 429:
        delay = err.headers.get("retry-after", "7")
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay}s"},
        ]
    return google_error(err.status, err.message, details)


def mid_stream_error(message: str) -> bytes:
    """Google's SDK expects a failure after the 200 as bare, pretty-printed JSON between the events."""
    body = google_error(500, message)
    return orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"


__all__ = [
    "MODELS",
    "check_auth",
    "check_schema",
    "error_body",
    "google_error",
    "mid_stream_error",
    "resolve",
    "signature",
]
