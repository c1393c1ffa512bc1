"""AWS Bedrock Runtime (providers.md §7): Converse JSON, ConverseStream as real binary event-stream frames
(prelude and message CRC32s), InvokeModel for Titan embeddings, AWS error shapes, SigV4 verification.

The event-stream *encoder* lives here (the gateway only decodes, with botocore); tests check it against
botocore's parser. Authentication: ``Options.api_key`` set to ``credential(access_key_id, secret,
session_token)`` makes every request need a valid SigV4 signature for those credentials, recomputed
with botocore and compared; an ``api_key`` without ':' is a Bedrock API key expected as ``Bearer``.
Failures answer 403 in AWS's shape (``x-amzn-ErrorType`` + ``{"message"}``). The fake sees only the
headers when it checks auth, so it requires ``x-amz-content-sha256`` to be signed (AWS accepts it on
every service) and tests compare it with the recorded body (:func:`verify_recorded`).

The fake model answers ``Echo: <text>`` like the other fakes. It pretends a prompt cache holds the
system prompt: the first system block's tokens are reported as ``cacheReadInputTokens``, any further
system blocks' as ``cacheWriteInputTokens``, and ``inputTokens`` counts only the messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
import time
import zlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .common import (
    ApiError,
    Ctx,
    Plan,
    count_tokens,
    echo_text,
    embedding_vector,
    json_plan,
    limit_pieces,
    reply_text,
    split_arguments,
    split_words,
)

EVENTSTREAM_CT = (b"content-type", b"application/vnd.amazon.eventstream")
ERROR_TYPE_URL = "http://internal.amazon.com/coral/com.amazon.bedrock/"
ACCESS_KEY_ID = "AKIDOMENFAKE00000001"
SECRET_ACCESS_KEY = "fake+secret/key0000000000000000000000000"
MAX_CLOCK_SKEW = 15 * 60  # seconds, as AWS allows
_OPS = re.compile(r"/model/(.+)/(converse|converse-stream|invoke)")
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^,]+),\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})")
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
_IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
_BLOCK_KEYS = frozenset(
    {"text", "image", "document", "video", "toolUse", "toolResult", "reasoningContent", "cachePoint"}
)

_EXCEPTIONS = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_MESSAGES = {
    "ValidationException": "Malformed input request, please reformat your input and try again.",
    "UnrecognizedClientException": "The security token included in the request is invalid.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "Could not resolve the foundation model from the provided model identifier.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
    "ModelErrorException": "The model returned an error. Try your request again.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "InternalServerException": "The server encountered an internal error while processing the request.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
}


# ---- event-stream encoding -----------------------------------------------------------------------------


def _header(name: str, value: str | bytes) -> bytes:
    raw_name = name.encode()
    kind, raw_value = (b"\x06", value) if isinstance(value, bytes) else (b"\x07", value.encode())  # bytes, string
    return bytes([len(raw_name)]) + raw_name + kind + struct.pack(">H", len(raw_value)) + raw_value


def frame(headers: list[tuple[str, str | bytes]], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32 of both), string (or byte
    array) headers, payload, CRC32 of everything before it."""
    encoded = b"".join(_header(n, v) for n, v in headers)
    prelude = struct.pack(">II", 16 + len(encoded) + len(payload), len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = [(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")]
    return frame(headers, orjson.dumps(payload))


def exception_frame(exception_type: str, message: str) -> bytes:
    """``exception_type`` as the stream names it (``throttlingException``)."""
    headers = [
        (":exception-type", exception_type),
        (":content-type", "application/json"),
        (":message-type", "exception"),
    ]
    return frame(headers, orjson.dumps({"message": message}))


def mid_stream_error(message: str) -> bytes:
    """An exception frame. ``"throttlingException: text"`` picks the exception type; the default is
    ``modelStreamErrorException``."""
    name, sep, rest = message.partition(": ")
    if sep and re.fullmatch(r"[a-z][A-Za-z]*Exception", name):
        return exception_frame(name, rest)
    return exception_frame("modelStreamErrorException", message)


# ---- errors and auth ---------------------------------------------------------------------------------


def aws_error(status: int, name: str, message: str | None = None) -> ApiError:
    return ApiError(status, message or _MESSAGES.get(name), headers={"x-amzn-ErrorType": f"{name}:{ERROR_TYPE_URL}"})


def error_body(err: ApiError, model: str | None) -> Any:
    """AWS's REST-JSON error: the exception name in ``x-amzn-ErrorType``, ``{"message"}`` in the body."""
    header = next((v for k, v in err.headers.items() if k.lower() == "x-amzn-errortype"), None)
    if header is None:
        name = _EXCEPTIONS.get(err.status, "InternalServerException" if err.status >= 500 else "ValidationException")
        err.headers["x-amzn-ErrorType"] = f"{name}:{ERROR_TYPE_URL}"  # error_plan reads headers after this
    else:
        name = header.split(":", 1)[0]
    err.headers.setdefault("x-amzn-RequestId", "00000000-0000-4000-8000-000000000000")
    return {"message": err.message or _MESSAGES.get(name, "Internal error.")}


def credential(access_key_id: str = ACCESS_KEY_ID, secret: str = SECRET_ACCESS_KEY, token: str | None = None) -> str:
    """The ``api_key`` option that makes the fake require SigV4 with these credentials."""
    return f"{access_key_id}:{secret}" + (f":{token}" if token else "")


def _credentials(api_key: str) -> Credentials:
    access_key_id, _, rest = api_key.partition(":")
    secret, _, token = rest.partition(":")
    return Credentials(access_key_id, secret, token or None)


def _signature_error(canonical: str, string_to_sign: str) -> ApiError:
    # AWS quotes what it computed; the gateway must not pass this text (signed header values) on.
    return aws_error(
        403,
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
        "Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String "
        f"for this request should have been\n'{canonical}'\n\n"
        f"The String-to-Sign should have been\n'{string_to_sign}'\n",
    )


def verify_signature(
    api_key: str, method: str, target: str, headers: dict[str, str], body: bytes | None = None, now: float | None = None
) -> None:
    """Raise AWS's 403 unless ``headers`` carry a valid SigV4 signature for the credentials in ``api_key``.

    ``target`` is the path (+ query) exactly as sent; ``headers`` have lower-case names. With ``body``,
    its SHA-256 must also match the signed ``x-amz-content-sha256``.
    """
    creds = _credentials(api_key)
    auth = headers.get("authorization")
    if not auth:
        raise aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH.fullmatch(auth.strip())
    if match is None:
        raise aws_error(
            403,
            "IncompleteSignatureException",
            f"Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters. "
            f"Authorization={auth.split(' ', 1)[0]}",
        )
    scope, signed_names, signature = match.groups()
    parts = scope.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise aws_error(403, "IncompleteSignatureException", f"Credential should have 5 parts: {scope}")
    access_key_id, day, region, service, _ = parts
    if access_key_id != creds.access_key:
        raise aws_error(403, "UnrecognizedClientException")
    if service != "bedrock":
        raise aws_error(403, "InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'.")
    names = signed_names.split(";")
    if creds.token is not None and headers.get("x-amz-security-token") != creds.token:
        raise aws_error(403, "UnrecognizedClientException")
    required = {"host", "x-amz-date", "x-amz-content-sha256"} | ({"x-amz-security-token"} if creds.token else set())
    missing = sorted(required - set(names))
    if missing:
        raise aws_error(403, "InvalidSignatureException", f"Signed headers must include {', '.join(missing)}.")
    amz_date = headers.get("x-amz-date", "")
    try:
        stamp = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise aws_error(403, "IncompleteSignatureException", "Date must be in ISO-8601 'basic format'.") from None
    if not amz_date.startswith(day):
        raise aws_error(403, "InvalidSignatureException", "Credential date does not match X-Amz-Date.")
    if abs((time.time() if now is None else now) - stamp) > MAX_CLOCK_SKEW:
        raise aws_error(403, "InvalidSignatureException", f"Signature expired: {amz_date} is now earlier or later.")
    if any(name not in headers for name in names):
        raise aws_error(403, "InvalidSignatureException", "A signed header is missing from the request.")
    if body is not None and hashlib.sha256(body).hexdigest() != headers["x-amz-content-sha256"]:
        raise aws_error(
            400,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    request = AWSRequest(method=method, url=f"http://{headers['host']}{target}", headers={n: headers[n] for n in names})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(creds, service, region)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    if not hmac.compare_digest(signer.signature(string_to_sign, request), signature):
        raise _signature_error(canonical, string_to_sign)


def verify_recorded(rec: Any, api_key: str) -> None:
    """Verify a recorded request's signature with its raw target and body (what ``check_auth`` cannot see)."""
    verify_signature(api_key, rec.method, rec.target, rec.headers, rec.body)


def check_auth(opts: Any, headers: dict[str, str], path: str, query: dict[str, str]) -> None:
    api_key = opts.api_key
    if api_key is None:
        return
    if ":" not in api_key:  # a Bedrock API key
        if headers.get("authorization") != f"Bearer {api_key}":
            raise aws_error(
                403, "UnrecognizedClientException", "Invalid API Key format: Must start with pre-defined prefix"
            )
        return
    match = _OPS.fullmatch(path)
    # resolve() ran first, so this is a model path: re-encode the id as one segment, as the client must have
    target = f"/model/{quote(match[1], safe='')}/{match[2]}" if match else quote(path)
    if query:
        target += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(query.items()))
    verify_signature(api_key, "POST", target, headers)


def resolve(method: str, path: str, query: dict[str, str]) -> tuple[Any, dict[str, str]]:
    match = _OPS.fullmatch(path)
    if match is None or method != "POST":
        raise ApiError(404, body={"message": "Not Found"}, headers={"x-amzn-ErrorType": "UnknownOperationException"})
    handler = {"converse": converse, "converse-stream": converse_stream, "invoke": invoke}[match[2]]
    return handler, {"model": match[1]}


# ---- the fake model ----------------------------------------------------------------------------------


def _body(ctx: Ctx) -> dict[str, Any]:
    if not isinstance(ctx.body, dict):
        raise aws_error(400, "SerializationException", "Start of structure or map found where not expected.")
    models = ctx.opts.models
    if models is not None and ctx.params["model"] not in models:
        raise aws_error(400, "ValidationException", "The provided model identifier is invalid.")
    return ctx.body


def _invalid(message: str) -> ApiError:
    return aws_error(400, "ValidationException", message)


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _BLOCK_KEYS:
        raise _invalid(f"The content block at {where} must have exactly one known member.")
    if "text" in block and (not isinstance(block["text"], str) or not block["text"].strip()):
        raise _invalid(f"The text field in the ContentBlock object at {where} is blank. Add text to the text field.")
    if "image" in block:
        image = block["image"] if isinstance(block["image"], dict) else {}
        data = (image.get("source") or {}).get("bytes")
        if image.get("format") not in _IMAGE_FORMATS or not isinstance(data, str):
            raise _invalid(f"The image at {where} must have a format and source.bytes.")
        try:
            base64.b64decode(data, validate=True)
        except binascii.Error:
            raise _invalid(f"The image bytes at {where} are not valid base64.") from None


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Converse's own validation: non-empty, user first, roles alternating, one-key blocks, toolResult
    ids answering the previous turn's toolUse ids, and a toolConfig whenever tool blocks are present."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("The messages field is required and must not be empty.")
    has_tool_blocks = False
    previous_uses: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise _invalid(f"messages.{i}.role must be user or assistant.")
        if role != ("user" if i % 2 == 0 else "assistant"):
            raise _invalid("A conversation must start with a user message and alternate between user and assistant.")
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise _invalid(f"messages.{i}.content must not be empty.")
        uses: set[str] = set()
        for j, block in enumerate(content):
            _check_block(block, f"messages.{i}.content.{j}")
            if "toolUse" in block:
                has_tool_blocks = True
                uses.add(block["toolUse"].get("toolUseId"))
                if not isinstance(block["toolUse"].get("input"), dict):
                    raise _invalid(f"messages.{i}.content.{j}.toolUse.input must be an object.")
            if "toolResult" in block:
                has_tool_blocks = True
                if block["toolResult"].get("toolUseId") not in previous_uses:
                    raise _invalid(
                        f"The toolResult at messages.{i}.content.{j} does not answer a toolUse of the previous turn."
                    )
        previous_uses = uses
    if has_tool_blocks and not (body.get("toolConfig") or {}).get("tools"):
        raise _invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
    return messages


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"] for b in blocks if "text" in b]


def _prompt(messages: list[dict[str, Any]]) -> tuple[str, bool]:
    """What the model echoes (the last turn's tool results, else its text) and whether it is a tool result."""
    last = messages[-1]["content"]
    results = [b["toolResult"] for b in last if "toolResult" in b]
    if results:
        texts = [c["text"] for r in results for c in r.get("content") or () if "text" in c]
        return " ".join(texts), True
    return " ".join(_texts(last)), False


def _tool_calls(body: dict[str, Any], text: str, count: int) -> list[dict[str, Any]]:
    config = body.get("toolConfig") or {}
    specs = [t["toolSpec"] for t in config.get("tools") or () if isinstance(t, dict) and "toolSpec" in t]
    if not specs:
        return []
    forced = ((config.get("toolChoice") or {}).get("tool") or {}).get("name")
    chosen = [s for s in specs if s.get("name") == forced][:1] if forced else specs[: max(1, count)]
    calls = []
    for k, spec in enumerate(chosen):
        schema = (spec.get("inputSchema") or {}).get("json") or {}
        props = schema.get("properties") if isinstance(schema, dict) else None
        key = next(iter(props), "input") if isinstance(props, dict) and props else "input"
        arguments = {key: text}
        digest = hashlib.md5(f"{k}:{spec.get('name')}:{orjson.dumps(arguments).decode()}".encode()).hexdigest()
        calls.append({"toolUseId": f"tooluse_{digest[:22]}", "name": spec.get("name", ""), "input": arguments})
    return calls


def _json_reply(body: dict[str, Any], text: str) -> str | None:
    structure = (((body.get("outputConfig") or {}).get("textFormat") or {}).get("structure") or {}).get("jsonSchema")
    if not isinstance(structure, dict):
        return None
    try:
        schema = orjson.loads(structure.get("schema") or "{}")
    except orjson.JSONDecodeError:
        raise _invalid("outputConfig.textFormat.structure.jsonSchema.schema is not valid JSON.") from None
    props = schema.get("properties") if isinstance(schema, dict) else None
    key = next(iter(props), "echo") if isinstance(props, dict) and props else "echo"
    return orjson.dumps({key: text}).decode()


def _usage(body: dict[str, Any], messages: list[dict[str, Any]], output_tokens: int) -> dict[str, int]:
    system = [b["text"] for b in body.get("system") or () if isinstance(b, dict) and "text" in b]
    inputs = sum(count_tokens(_texts(m["content"])) for m in messages)
    read = count_tokens(system[0]) if system else 0
    write = count_tokens(system[1:]) if len(system) > 1 else 0
    usage = {"inputTokens": inputs, "outputTokens": output_tokens, "totalTokens": inputs + read + write + output_tokens}
    if system:
        usage["cacheReadInputTokens"] = read
        usage["cacheWriteInputTokens"] = write
    return usage


def _answer(ctx: Ctx) -> tuple[list[str], list[dict[str, Any]], str, dict[str, int]]:
    """(text pieces, tool calls, stopReason, usage) for a Converse request."""
    body = _body(ctx)
    messages = _messages(body)
    text, is_result = _prompt(messages)
    calls = [] if is_result else _tool_calls(body, text, ctx.opts.tool_calls)
    pieces: list[str] = []
    stop = "tool_use" if calls else "end_turn"
    if not calls:
        reply = reply_text(ctx.opts, body, _json_reply(body, text) or echo_text(text))
        config = body.get("inferenceConfig") or {}
        for sequence in config.get("stopSequences") or ():
            if sequence and sequence in reply:
                reply, stop = reply[: reply.index(sequence)], "stop_sequence"
        pieces = split_words(reply, ctx.opts.chunks)
        pieces, cut = limit_pieces(pieces, config.get("maxTokens"))
        if cut:
            stop = "max_tokens"
    stop = ctx.finish_reason or stop
    return pieces, calls, stop, _usage(body, messages, len(pieces) + len(calls))


def _request_id(ctx: Ctx) -> tuple[bytes, bytes]:
    return b"x-amzn-requestid", f"00000000-0000-4000-8000-{ctx.seq:012d}".encode()


def converse(ctx: Ctx) -> Plan:
    pieces, calls, stop, usage = _answer(ctx)
    content: list[dict[str, Any]] = [{"text": "".join(pieces)}] if pieces else []
    content += [{"toolUse": call} for call in calls]
    answer = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage,
        "metrics": {"latencyMs": 100 + 10 * usage["outputTokens"]},
    }
    return json_plan(200, answer, [_request_id(ctx)])


def converse_stream(ctx: Ctx) -> Plan:
    pieces, calls, stop, usage = _answer(ctx)
    frames = [event_frame("messageStart", {"role": "assistant", "p": _PADDING[:9]})]
    index = 0
    if pieces:  # text blocks start with their first delta: Bedrock sends no contentBlockStart for them
        for k, piece in enumerate(pieces):
            delta = {"contentBlockIndex": 0, "delta": {"text": piece}, "p": _PADDING[: 1 + k % 20]}
            frames.append(event_frame("contentBlockDelta", delta))
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    for call in calls:
        start = {"toolUse": {"toolUseId": call["toolUseId"], "name": call["name"], "type": "tool_use"}}
        frames.append(event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        frames.append(
            event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": ""}}})
        )
        for piece in split_arguments(orjson.dumps(call["input"]).decode()):
            delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}
            frames.append(event_frame("contentBlockDelta", delta))
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    frames.append(event_frame("messageStop", {"stopReason": stop}))
    metrics = {"latencyMs": 100 + 10 * usage["outputTokens"]}
    frames.append(event_frame("metadata", {"usage": usage, "metrics": metrics, "p": _PADDING[:5]}))
    return Plan(200, [EVENTSTREAM_CT, _request_id(ctx)], frames, stream=True)


def invoke(ctx: Ctx) -> Plan:
    """InvokeModel for Titan Text Embeddings (v2 takes ``dimensions`` 256/512/1024; the fake defaults to
    ``embedding_dims``)."""
    body = _body(ctx)
    text = body.get("inputText")
    if not isinstance(text, str):
        raise _invalid("Malformed input request: #: required key [inputText] not found, please reformat your input.")
    if not text:
        raise _invalid("Malformed input request: #/inputText: expected minLength: 1, actual: 0.")
    dims = body.get("dimensions", ctx.opts.embedding_dims)
    if "dimensions" in body and dims not in (256, 512, 1024):
        raise _invalid(f"Malformed input request: #/dimensions: {dims} is not a valid enum value.")
    vector = embedding_vector(text, dims)
    answer = {"embedding": vector, "inputTextTokenCount": count_tokens(text), "embeddingsByType": {"float": vector}}
    return json_plan(200, answer, [_request_id(ctx)])


__all__ = [
    "ACCESS_KEY_ID",
    "SECRET_ACCESS_KEY",
    "check_auth",
    "credential",
    "error_body",
    "event_frame",
    "exception_frame",
    "frame",
    "mid_stream_error",
    "resolve",
    "verify_recorded",
    "verify_signature",
]
