"""Gemini adapter: request mapping, schema conversion, results, streams (every split), embeddings,
models and errors, byte for byte against Gemini's wire format (providers.md §6, §10)."""

from __future__ import annotations

import base64
import itertools
import struct

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omen.api.chat import ChatCompletionRequest
from omen.api.completions import CompletionRequest
from omen.api.decode import decode_body
from omen.api.embeddings import EmbeddingRequest
from omen.config.schema import ProviderConfig
from omen.errors import OmenError
from omen.providers.base import (
    ChatCall,
    Chunk,
    CompletionCall,
    EmbeddingCall,
    StreamEnd,
    StreamError,
    StreamUsage,
    UpstreamRequest,
    Usage,
)
from omen.providers.gemini import GeminiProvider, model_path
from omen.providers.gemini_request import encode_call_id, signature_of
from omen.providers.gemini_response import finish_reason
from omen.providers.gemini_schema import to_gemini_schema
from omen.providers.gemini_stream import GeminiEvents

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()
WAV = base64.b64encode(b"RIFF fake wav").decode()
PDF = base64.b64encode(b"%PDF-1.7 fake").decode()
SIG = "CiQBVKhc7+/xYQ=="  # a thought signature with every base64 character that is not URL-safe
HEADERS = [("Content-Type", "application/json"), ("x-goog-api-key", "g-key")]
GEN = "/v1beta/models/gemini-2.5-flash:generateContent"


def gemini(**cfg: object) -> GeminiProvider:
    counter = itertools.count()
    config = ProviderConfig(type="gemini", **{"api_key": "g-key", **cfg})
    return GeminiProvider("gemini", config, clock=lambda: 1735000000.7, new_id=lambda: f"id{next(counter)}")


def chat(body: dict, *, stream: bool = False, include_usage: bool = False, decoded: bool = True) -> ChatCall:
    raw = orjson.dumps({"model": "flash", **body})
    return ChatCall(
        raw=raw,
        upstream_model="gemini-2.5-flash",
        public_model="flash",
        stream=stream,
        include_usage=include_usage,
        request=decode_body(raw, ChatCompletionRequest) if decoded else None,
    )


def user(text: str = "hi") -> list[dict]:
    return [{"role": "user", "content": text}]


def sent(req: UpstreamRequest) -> dict:
    assert req.body is not None
    return orjson.loads(req.body)


def body_of(body: dict, **kw: object) -> dict:
    return sent(gemini().chat_request(chat(body, **kw)))  # type: ignore[arg-type]


def bad(body: dict, param: str, fragment: str = "") -> OmenError:
    with pytest.raises(OmenError) as exc:
        gemini().chat_request(chat(body))
    assert (exc.value.status, exc.value.type, exc.value.param) == (400, "invalid_request_error", param)
    assert fragment in exc.value.message
    return exc.value


def run(make, pieces: list[bytes]) -> list:
    t = make()
    events = []
    for piece in pieces:
        events += t.feed(piece)
    events += t.close()
    return [
        ("error", e.error.status, e.error.code, e.error.message) if isinstance(e, StreamError) else e for e in events
    ]


# ---- chat request -----------------------------------------------------------------------------------


def test_chat_request_mapping():
    call_id = encode_call_id("abc", SIG)
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}", "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}},
                    {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": [{"type": "text", "text": "You're welcome."}]},
            {"role": "assistant", "function_call": {"name": "legacy", "arguments": "{}"}},
            {"role": "function", "name": "legacy", "content": "done"},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "max_tokens": 5,
        "stop": "END",
        "seed": 7,
        "n": 2,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.3,
        "reasoning_effort": "low",
        "response_format": {"type": "json_object"},
        "parallel_tool_calls": True,
        "user": "ignored",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "$schema": "http://json-schema.org/draft-07/schema#",
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                        "additionalProperties": False,
                    },
                    "strict": True,
                },
            },
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
        ],
        "tool_choice": "auto",
    }
    req = gemini().chat_request(chat(body))
    assert (req.method, req.path, req.headers, req.stream) == ("POST", GEN, HEADERS, False)
    assert sent(req) == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather here?"},
                    {"inlineData": {"mimeType": "image/jpeg", "data": PNG}},
                    {"inlineData": {"mimeType": "audio/wav", "data": WAV}},
                    {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Checking."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": SIG},
                    {"functionCall": {"name": "get_time", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}},
                    {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
                    {"text": "Thanks"},
                ],
            },
            {
                "role": "model",
                "parts": [{"text": "You're welcome."}, {"functionCall": {"name": "legacy", "args": {}}}],
            },
            {"role": "user", "parts": [{"functionResponse": {"name": "legacy", "response": {"output": "done"}}}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric units."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"city": {"type": "STRING"}},
                            "required": ["city"],
                        },
                    },
                    {"name": "get_time"},  # no arguments: Gemini refuses an OBJECT without properties
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.9,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.3,
            "seed": 7,
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
            "candidateCount": 2,
            "responseMimeType": "application/json",
            "thinkingConfig": {"thinkingBudget": 1024},
        },
    }


def test_chat_request_minimal_stream_and_undecoded_call():
    req = gemini().chat_request(chat({"messages": user()}, stream=True, decoded=False))
    assert req.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert req.stream is True and req.headers == HEADERS
    assert sent(req) == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert "g-key" not in req.path  # the key never goes in the URL


def test_headers_base_url_and_versions():
    p = gemini(base_url="https://proxy.example/v1/", headers={"X-Goog-Api-Key": "override", "X-Trace": "1"})
    assert p.endpoints() == ["https://proxy.example"]
    req = p.chat_request(chat({"messages": user()}))
    assert req.path == "/v1/models/gemini-2.5-flash:generateContent"
    assert req.headers == [("Content-Type", "application/json"), ("X-Goog-Api-Key", "override"), ("X-Trace", "1")]
    assert gemini().endpoints() == ["https://generativelanguage.googleapis.com"]
    assert gemini(base_url="http://h:1/v1beta").models_request() == UpstreamRequest(
        "GET", "/v1beta/models?pageSize=1000", [("x-goog-api-key", "g-key")]
    )
    assert GeminiProvider.inline_images is True and gemini().type == "gemini"


def test_empty_user_text_is_left_out():
    messages = [
        {"role": "user", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "hi"}]},
    ]
    assert body_of({"messages": messages})["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    bad({"messages": [{"role": "user", "content": ""}]}, "messages", "at least one user or assistant")


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("gemini-2.5-flash", "models/gemini-2.5-flash"),
        ("models/gemini-2.5-pro", "models/gemini-2.5-pro"),
        ("tunedModels/my-model-42", "tunedModels/my-model-42"),
        ("x/../../v1/files?key=1", "models/x%2F..%2F..%2Fv1%2Ffiles%3Fkey%3D1"),
    ],
)
def test_model_path(model, path):
    assert model_path(model) == path


def test_tool_call_id_round_trip():
    call_id = encode_call_id("f00d", SIG)
    assert call_id == "call_f00d__thought__CiQBVKhc7-_xYQ"
    assert all(c.isalnum() or c in "_-" for c in call_id)  # survives clients that validate ids
    assert base64.b64decode(signature_of(call_id)) == base64.b64decode(SIG)
    assert encode_call_id("f00d", None) == "call_f00d"
    assert signature_of("call_f00d") is None and signature_of("toolu_x") is None


@pytest.mark.parametrize(
    ("choice", "config", "names"),
    [
        ("none", {"mode": "NONE"}, ["a", "b"]),
        ("required", {"mode": "ANY"}, ["a", "b"]),
        ({"type": "function", "function": {"name": "b"}}, {"mode": "ANY", "allowedFunctionNames": ["b"]}, ["a", "b"]),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "a"}}]},
            },
            {"mode": "ANY", "allowedFunctionNames": ["a"]},
            ["a", "b"],
        ),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "a"}}]},
            },
            {"mode": "AUTO"},
            ["a"],
        ),
    ],
)
def test_tool_choice(choice, config, names):
    tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b")]
    out = body_of({"messages": user(), "tools": tools, "tool_choice": choice})
    assert out["toolConfig"] == {"functionCallingConfig": config}
    assert [d["name"] for d in out["tools"][0]["functionDeclarations"]] == names


def test_legacy_functions_and_function_call():
    body = {
        "messages": user(),
        "functions": [{"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}],
        "function_call": {"name": "f"},
    }
    out = body_of(body)
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {"name": "f", "parameters": {"type": "OBJECT", "properties": {"x": {"type": "INTEGER"}}}}
            ]
        }
    ]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
    assert "toolConfig" not in body_of({"messages": user(), "tool_choice": "auto"})


def test_json_schema_response_format():
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "format": "email"},
            "when": {"type": "string", "format": "date-time"},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
            "score": {"anyOf": [{"type": "number"}, {"type": "null"}], "description": "0..1"},
        },
        "required": ["name", "tags", "score", "missing"],
        "additionalProperties": False,
        "$defs": {"Tag": {"type": "string", "enum": ["a", "b"]}},
    }
    out = body_of(
        {
            "messages": user(),
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}},
        }
    )
    assert out["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {
                "name": {"type": "STRING"},
                "when": {"type": "STRING", "format": "date-time"},
                "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}},
                "score": {"description": "0..1", "type": "NUMBER", "nullable": True},
            },
            "required": ["name", "tags", "score"],
            "propertyOrdering": ["name", "when", "tags", "score"],
        },
    }


@pytest.mark.parametrize(
    ("schema", "want"),
    [
        ({"type": ["string", "null"], "title": "T"}, {"title": "T", "type": "STRING", "nullable": True}),
        ({"type": ["string", "integer"]}, {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}),
        ({"const": "x"}, {"type": "STRING", "enum": ["x"]}),
        (
            {"type": "integer", "enum": [1, 2], "description": "Pick."},
            {"type": "INTEGER", "description": "Pick. Allowed values: 1, 2."},
        ),
        ({"type": "string", "enum": ["a", None]}, {"type": "STRING", "enum": ["a"], "nullable": True}),
        (
            {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "boolean"}}, "required": ["b"]},
                ]
            },
            {
                "type": "OBJECT",
                "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}},
                "required": ["a", "b"],
            },
        ),
        (
            {"type": "number", "format": "double", "minimum": 0, "exclusiveMaximum": 1, "multipleOf": 0.5},
            {"type": "NUMBER", "format": "double", "minimum": 0},
        ),
        (
            {"type": "array", "items": [{"type": "string"}, {"type": "integer"}], "uniqueItems": True},
            {"type": "ARRAY", "items": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}},
        ),
        (
            {"properties": {"x": True}, "examples": [{"x": 1}]},
            {"example": {"x": 1}, "type": "OBJECT", "properties": {"x": {}}},
        ),
        (
            {
                "$ref": "#/definitions/A",
                "description": "outer",
                "definitions": {"A": {"type": "string", "description": "inner"}},
            },
            {"type": "STRING", "description": "outer"},
        ),
    ],
)
def test_schema_conversion(schema, want):
    assert to_gemini_schema(schema, "p") == want


@pytest.mark.parametrize(
    ("schema", "param", "fragment"),
    [
        (
            {
                "type": "object",
                "properties": {"n": {"$ref": "#/$defs/N"}},
                "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
            },
            "p.properties.n.properties.next.$ref",
            "recursive",
        ),
        ({"$ref": "https://example.com/s.json"}, "p.$ref", "local"),
        ({"$ref": "#/$defs/Nope"}, "p.$ref", "points nowhere"),
        ({"type": "strin"}, "p.type", "Unknown JSON schema type"),
        ([1], "p", "must be an object"),
    ],
)
def test_schema_errors(schema, param, fragment):
    with pytest.raises(OmenError) as exc:
        to_gemini_schema(schema, "p")
    assert (exc.value.status, exc.value.param) == (400, param) and fragment in exc.value.message


@pytest.mark.parametrize(
    ("url", "fragment", "code"),
    [
        ("https://example.com/cat.png", "this image URL was not fetched", "image_url_not_supported"),
        ("data:image/png;base64,@@@", "valid base64", None),
        ("data:image/tiff;base64," + PNG, "Unsupported image type 'image/tiff'", None),
        ("data:image/png," + PNG, "must be base64-encoded", None),
        ("ftp://x/y.png", "must be a data: URI", None),
    ],
)
def test_image_errors(url, fragment, code):
    err = bad(
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]},
        "messages[0].content[0].image_url.url",
        fragment,
    )
    assert err.code == code


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": [{"role": "system", "content": "only"}]}, "messages", "at least one user or assistant"),
        (
            {"messages": [{"role": "tool", "tool_call_id": "call_x", "content": "r"}]},
            "messages[0].tool_call_id",
            "function name",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
            "JSON object",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": WAV, "format": "flac"}}],
                    }
                ]
            },
            "messages[0].content[0].input_audio.format",
            "wav",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
            "messages[0].content[0].file",
            "file ids",
        ),
        (
            {
                "messages": [
                    {
                        "role": "system",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}],
                    },
                    *user(),
                ]
            },
            "messages[0].content[0]",
            "text only",
        ),
        ({"messages": user(), "n": 0}, "n", "at least 1"),
        ({"messages": user(), "logprobs": True}, "logprobs", "log probabilities"),
        ({"messages": user(), "logit_bias": {"1": 2}}, "logit_bias", "logit_bias"),
        ({"messages": user(), "modalities": ["text", "audio"]}, "modalities", "text only"),
        ({"messages": user(), "reasoning_effort": "max"}, "reasoning_effort", "none, minimal"),
        ({"messages": user(), "response_format": {"type": "xml"}}, "response_format.type", "xml"),
        (
            {"messages": user(), "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
            "schema",
        ),
        (
            {"messages": user(), "tools": [{"type": "custom", "custom": {"name": "x"}}]},
            "tools[0]",
            "only function tools",
        ),
        (
            {
                "messages": user(),
                "tools": [{"type": "function", "function": {"name": "a"}}],
                "tool_choice": {"type": "function", "function": {"name": "zz"}},
            },
            "tool_choice",
            "'zz'",
        ),
        ({"messages": user(), "tool_choice": "required"}, "tool_choice", "no tools"),
        (
            {
                "messages": user(),
                "tools": [{"type": "function", "function": {"name": "a"}}],
                "tool_choice": "sometimes",
            },
            "tool_choice",
            "must be",
        ),
        (
            {
                "messages": user(),
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "a",
                            "parameters": {"type": "object", "properties": {"x": {"type": "date"}}},
                        },
                    }
                ],
            },
            "tools[0].function.parameters.properties.x.type",
            "Unknown JSON schema type",
        ),
        ({"messages": user(), "web_search_options": {}}, "web_search_options", "web_search_options"),
    ],
)
def test_request_errors(body, param, fragment):
    bad(body, param, fragment)


# ---- chat result ------------------------------------------------------------------------------------

RESULT = orjson.dumps(
    {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "Let me think.", "thought": True},
                        {"text": "It is "},
                        {"text": "sunny."},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG},
                        {"functionCall": {"name": "noop"}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "safetyRatings": [],
            },
            {"content": {"parts": [{"text": "Cut"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1},
        ],
        "usageMetadata": {
            "promptTokenCount": 52,
            "candidatesTokenCount": 22,
            "thoughtsTokenCount": 48,
            "cachedContentTokenCount": 40,
            "toolUsePromptTokenCount": 3,
            "totalTokenCount": 125,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "Xk5aaP2n",
    }
)


def test_chat_result():
    result = gemini().chat_result(chat({"messages": user()}), RESULT)
    assert result.usage == Usage(55, 70, 125, cached_tokens=40, reasoning_tokens=48)
    assert orjson.loads(result.body) == {
        "id": "chatcmpl-id2",
        "object": "chat.completion",
        "created": 1735000000,
        "model": "gemini-2.5-flash",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "It is sunny.",
                    "refusal": None,
                    "reasoning_content": "Let me think.",
                    "tool_calls": [
                        {
                            "id": "call_id0__thought__CiQBVKhc7-_xYQ",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {"id": "call_id1", "type": "function", "function": {"name": "noop", "arguments": "{}"}},
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "Cut", "refusal": None},
                "logprobs": None,
                "finish_reason": "length",
            },
        ],
        "usage": {
            "prompt_tokens": 55,
            "completion_tokens": 70,
            "total_tokens": 125,
            "prompt_tokens_details": {"cached_tokens": 40},
            "completion_tokens_details": {"reasoning_tokens": 48},
        },
    }


def test_chat_result_tool_calls_only_and_no_content():
    body = (
        b'{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}}}],"role":"model"},'
        b'"finishReason":"STOP"}]}'
    )
    message = orjson.loads(gemini().chat_result(chat({"messages": user()}), body).body)["choices"][0]["message"]
    assert message["content"] is None and message["tool_calls"][0]["id"] == "call_id0"
    safety = (
        b'{"candidates":[{"finishReason":"SAFETY","safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT",'
        b'"probability":"HIGH","blocked":true}]}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}'
    )
    out = orjson.loads(gemini().chat_result(chat({"messages": user()}), safety).body)
    assert out["choices"][0]["message"]["content"] == "" and out["choices"][0]["finish_reason"] == "content_filter"
    assert out["usage"] == {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7}


@pytest.mark.parametrize(
    ("reason", "calls", "want"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("MAX_TOKENS", True, "length"),
        *[
            (r, False, "content_filter")
            for r in (
                "SAFETY",
                "RECITATION",
                "BLOCKLIST",
                "PROHIBITED_CONTENT",
                "SPII",
                "IMAGE_SAFETY",
                "IMAGE_PROHIBITED_CONTENT",
                "IMAGE_RECITATION",
                "LANGUAGE",
            )
        ],
        *[
            (r, False, "stop")
            for r in (
                "MALFORMED_FUNCTION_CALL",
                "UNEXPECTED_TOOL_CALL",
                "TOO_MANY_TOOL_CALLS",
                "OTHER",
                "FINISH_REASON_UNSPECIFIED",
                "NO_IMAGE",
                "IMAGE_OTHER",
                "SOMETHING_NEW",
                None,
            )
        ],
    ],
)
def test_finish_reasons(reason, calls, want):
    assert finish_reason(reason, calls) == want


def test_chat_result_prompt_blocked_and_errors():
    blocked = (
        b'{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT","blockReasonMessage":"Not allowed."},'
        b'"usageMetadata":{"promptTokenCount":5}}'
    )
    with pytest.raises(OmenError) as exc:
        gemini().chat_result(chat({"messages": user()}), blocked)
    err = exc.value
    assert (err.status, err.type, err.code, err.param) == (400, "invalid_request_error", "content_filter", "messages")
    assert "PROHIBITED_CONTENT" in err.message and "Not allowed." in err.message
    with pytest.raises(OmenError) as exc:
        gemini().chat_result(chat({"messages": user()}), b'{"candidates":[]}')
    assert (exc.value.status, exc.value.code) == (502, "upstream_invalid_response")
    with pytest.raises(OmenError) as exc:
        gemini().chat_result(
            chat({"messages": user()}), b'{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED"}}'
        )
    assert (exc.value.status, exc.value.code, exc.value.message) == (429, "rate_limit_exceeded", "Quota")
    with pytest.raises(OmenError) as exc:
        gemini().chat_result(chat({"messages": user()}), b"<html>")
    assert exc.value.status == 502 and "<html>" in exc.value.message


# ---- chat stream ------------------------------------------------------------------------------------

EVENTS = [
    b'{"candidates":[{"content":{"parts":[{"text":"Thinking","thought":true}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":52,"totalTokenCount":52},"modelVersion":"gemini-2.5-flash","responseId":"Xk5a"}',
    b'{"candidates":[{"content":{"parts":[{"text":"It is \\"warm\\"."}],"role":"model"},"index":0}],'
    b'"usageMetadata":{"promptTokenCount":52,"totalTokenCount":52}}',
    b'{"candidates":[{"content":{"parts":[{"text":" Let me check"},{"functionCall":{"name":"get_weather",'
    b'"args":{"city":"Paris"}},"thoughtSignature":"CiQB+/=="},{"functionCall":{"name":"get_time","args":{"tz":"CET"}}},'
    b'{"text":"."}],"role":"model"},"index":0}]}',
    b'{"candidates":[{"content":{"parts":[{"functionCall":{"name":"noop","args":{}}}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":52,"candidatesTokenCount":22,"thoughtsTokenCount":48,"cachedContentTokenCount":32,"totalTokenCount":122}}',
]
STREAM = b"".join(b"data: " + e + b"\r\n\r\n" for e in EVENTS)
HEAD = (
    b'{"id":"chatcmpl-id0","object":"chat.completion.chunk","created":1735000000,"model":"gemini-2.5-flash","choices":'
)
USAGE = Usage(52, 70, 122, cached_tokens=32, reasoning_tokens=48)


def delta(d: bytes, finish: bytes = b"null", index: int = 0) -> Chunk:
    return Chunk(HEAD + b'[{"index":%d,"delta":' % index + d + b',"logprobs":null,"finish_reason":' + finish + b"}]}")


def expected_chat(include_usage: bool) -> list:
    events = [
        delta(b'{"role":"assistant","content":""}'),
        delta(b'{"reasoning_content":"Thinking"}'),
        delta(b'{"content":"It is \\"warm\\"."}'),
        delta(b'{"content":" Let me check"}'),
        delta(
            b'{"tool_calls":[{"index":0,"id":"call_id1__thought__CiQB-_","type":"function",'
            b'"function":{"name":"get_weather","arguments":"{\\"city\\":\\"Paris\\"}"}},'
            b'{"index":1,"id":"call_id2","type":"function","function":{"name":"get_time","arguments":"{\\"tz\\":\\"CET\\"}"}}]}'
        ),
        delta(b'{"content":"."}'),
        delta(
            b'{"tool_calls":[{"index":2,"id":"call_id3","type":"function","function":{"name":"noop","arguments":"{}"}}]}'
        ),
        delta(b"{}", b'"tool_calls"'),
    ]
    if include_usage:
        events.append(
            Chunk(
                HEAD + b'[],"usage":{"prompt_tokens":52,"completion_tokens":70,"total_tokens":122,'
                b'"prompt_tokens_details":{"cached_tokens":32},"completion_tokens_details":{"reasoning_tokens":48}}}'
            )
        )
    return [*events, StreamUsage(USAGE), StreamEnd()]


def chat_stream(include_usage: bool = False):
    return lambda: gemini().chat_stream(chat({"messages": user()}, stream=True, include_usage=include_usage))


@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_stream_every_split(include_usage):
    want = expected_chat(include_usage)
    assert run(chat_stream(include_usage), [STREAM]) == want
    for i in range(len(STREAM) + 1):
        assert run(chat_stream(include_usage), [STREAM[:i], STREAM[i:]]) == want, i
    assert run(chat_stream(include_usage), [STREAM[i : i + 1] for i in range(len(STREAM))]) == want


def test_chat_stream_chunks_are_valid_openai_json():
    for event in run(chat_stream(True), [STREAM]):
        if isinstance(event, Chunk):
            obj = orjson.loads(event.data)
            assert obj["object"] == "chat.completion.chunk" and obj["id"] == "chatcmpl-id0"


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40), lf_only=st.booleans())
def test_chat_stream_random_splits(cuts, lf_only):
    data = STREAM.replace(b"\r\n", b"\n") if lf_only else STREAM
    points = [0, *sorted(c * len(data) // len(STREAM) for c in cuts), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    assert run(chat_stream(), pieces) == expected_chat(False)


def test_chat_stream_several_candidates_and_no_usage():
    data = (
        b'data: {"candidates":[{"content":{"parts":[{"text":"A"}]},"index":0},'
        b'{"content":{"parts":[{"text":"B"}]},"index":1}]}\n\n'
        b'data: {"candidates":[{"finishReason":"MAX_TOKENS","index":1},'
        b'{"content":{"parts":[{"text":"!"}]},"finishReason":"STOP"}]}\n\n'
        b'data: {"candidates":[{"content":{"parts":[{"text":"ignored after finish"}]},"index":0}]}\n\n'
    )
    assert run(chat_stream(True), [data]) == [
        delta(b'{"role":"assistant","content":""}'),
        delta(b'{"content":"A"}'),
        delta(b'{"role":"assistant","content":""}', index=1),
        delta(b'{"content":"B"}', index=1),
        delta(b"{}", b'"length"', index=1),
        delta(b'{"content":"!"}'),
        delta(b"{}", b'"stop"'),
        Chunk(HEAD + b'[],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}'),
        StreamUsage(Usage()),
        StreamEnd(),
    ]


def test_chat_stream_last_event_without_blank_line_and_json_array_form():
    last = b'data: {"candidates":[{"content":{"parts":[{"text":"ok"}]},"finishReason":"STOP"}]}'
    want = [
        delta(b'{"role":"assistant","content":""}'),
        delta(b'{"content":"ok"}'),
        delta(b"{}", b'"stop"'),
        StreamUsage(Usage()),
        StreamEnd(),
    ]
    assert run(chat_stream(), [last]) == want
    array = b'[{"candidates":[{"content":{"parts":[{"text":"ok"}]},"finishReason":"STOP"}]}\n]'
    assert run(chat_stream(), [array]) == want
    comments = b": keep-alive\r\nevent: message\r\nid: 1\r\n" + last + b"\r\n\r\n"
    assert run(chat_stream(), [comments]) == want


PRETTY_ERROR = (
    b'{\n  "error": {\n    "code": 503,\n    "message": "The model is overloaded. Please try again later.",\n'
    b'    "status": "UNAVAILABLE"\n  }\n}\n'
)


@pytest.mark.parametrize(
    ("error", "want"),
    [
        (PRETTY_ERROR, (503, "overloaded", "The model is overloaded. Please try again later.")),
        (
            b'data: {"error":{"code":429,"message":"Quota exceeded.","status":"RESOURCE_EXHAUSTED"}}\r\n\r\n',
            (429, "rate_limit_exceeded", "Quota exceeded."),
        ),
        (
            b'[{\n  "error": {\n    "code": 500,\n    "message": "Internal",\n    "status": "INTERNAL"\n  }\n}\n]\n',
            (500, None, "Internal"),
        ),
    ],
)
def test_chat_stream_error_mid_stream(error, want):
    data = b"data: " + EVENTS[1] + b"\r\n\r\n" + error + b"data: " + EVENTS[3] + b"\r\n\r\n"
    for i in range(len(data) + 1):
        events = run(chat_stream(), [data[:i], data[i:]])
        assert events[:2] == [delta(b'{"role":"assistant","content":""}'), delta(b'{"content":"It is \\"warm\\"."}')], i
        assert events[2:] == [("error", *want)], i


def test_chat_stream_prompt_blocked():
    data = b'data: {"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":9}}\r\n\r\n'
    events = run(chat_stream(), [data])
    assert len(events) == 1 and events[0][:3] == ("error", 400, "content_filter") and "SAFETY" in events[0][3]


def test_chat_stream_truncated_and_garbage():
    events = run(chat_stream(), [STREAM[: STREAM.index(EVENTS[-1])]])
    assert events[:-1] == expected_chat(False)[:6]
    assert events[-1][:3] == ("error", 502, "upstream_stream_truncated")
    assert run(chat_stream(), [b""]) == [("error", 502, "upstream_stream_truncated", events[-1][3])]
    events = run(chat_stream(), [b"<html><body>Bad gateway</body></html>\n"])
    assert events[0][:3] == ("error", 502, "upstream_invalid_response") and "<html>" in events[0][3]
    events = run(chat_stream(), [b"data: {not json}\n\n"])
    assert events[0][:3] == ("error", 502, "upstream_invalid_response")
    events = run(chat_stream(), [b'data: {"candidates":[{"content":{"parts":[{"text":"a"}]}}]}\n\n{"error": \n'])
    assert events[-1][:3] == ("error", 502, "upstream_stream_truncated")  # ended inside a bare object


def test_stream_ignores_input_after_end():
    t = chat_stream()()
    t.feed(STREAM)
    assert t.close()[-1] == StreamEnd()
    assert t.feed(STREAM) == [] and t.close() == []


def test_events_parser_splits_lines_and_bare_json():
    parser = GeminiEvents()
    got = parser.feed(b'data: {"a":1}\r\ndata: {"b":2}\r\n\r\n{\n') + parser.feed(b'"x": 1\n}\n') + parser.close()
    assert got == [("json", b'{"a":1}\n{"b":2}'), ("json", b'{\n"x": 1\n}')]


# ---- legacy completions -------------------------------------------------------------------------------


def completion(body: dict, *, stream: bool = False, include_usage: bool = False) -> CompletionCall:
    raw = orjson.dumps({"model": "flash", **body})
    return CompletionCall(
        raw=raw,
        upstream_model="gemini-2.5-flash",
        public_model="flash",
        stream=stream,
        include_usage=include_usage,
        request=decode_body(raw, CompletionRequest),
    )


def test_completion_request():
    req = gemini().completion_request(
        completion({"prompt": ["Say hi"], "max_tokens": 5, "stop": ["\n"], "n": 2}, stream=True)
    )
    assert req.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert sent(req) == {
        "contents": [{"role": "user", "parts": [{"text": "Say hi"}]}],
        "generationConfig": {"maxOutputTokens": 5, "stopSequences": ["\n"], "candidateCount": 2},
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "def f():", "suffix": "return 1"}, "suffix"),
        ({"prompt": "x", "echo": True}, "echo"),
        ({"prompt": "x", "best_of": 2}, "best_of"),
        ({"prompt": "x", "logprobs": 2}, "logprobs"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2]}, "prompt"),
        ({"prompt": ""}, "prompt"),
    ],
)
def test_completion_request_errors(body, param):
    with pytest.raises(OmenError) as exc:
        gemini().completion_request(completion(body))
    assert (exc.value.status, exc.value.param) == (400, param)


def test_completion_result_and_stream():
    body = (
        b'{"candidates":[{"content":{"parts":[{"text":"hm","thought":true},{"text":"Hello"}],"role":"model"},'
        b'"finishReason":"MAX_TOKENS"}],"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":1}}'
    )
    result = gemini().completion_result(completion({"prompt": "x"}), body)
    assert result.usage == Usage(2, 1, 3)
    assert orjson.loads(result.body) == {
        "id": "cmpl-id0",
        "object": "text_completion",
        "created": 1735000000,
        "model": "gemini-2.5-flash",
        "choices": [{"text": "Hello", "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }
    data = (
        b'data: {"candidates":[{"content":{"parts":[{"text":"Hel"}]},"index":0}]}\r\n\r\n'
        b'data: {"candidates":[{"content":{"parts":[{"text":"lo"}]},"finishReason":"STOP","index":0}],'
        b'"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":2}}\r\n\r\n'
    )
    head = b'{"id":"cmpl-id0","object":"text_completion","created":1735000000,"model":"gemini-2.5-flash","choices":'

    def text(t: bytes, finish: bytes = b"null") -> Chunk:
        return Chunk(head + b'[{"index":0,"text":' + t + b',"logprobs":null,"finish_reason":' + finish + b"}]}")

    want = [
        text(b'"Hel"'),
        text(b'"lo"'),
        text(b'""', b'"stop"'),
        Chunk(head + b'[],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}'),
        StreamUsage(Usage(2, 2, 4)),
        StreamEnd(),
    ]
    make = lambda: gemini().completion_stream(completion({"prompt": "x"}, stream=True, include_usage=True))  # noqa: E731
    for i in range(len(data) + 1):
        assert run(make, [data[:i], data[i:]]) == want, i


# ---- embeddings ---------------------------------------------------------------------------------------


def embedding(body: dict) -> EmbeddingCall:
    raw = orjson.dumps({"model": "embed", **body})
    return EmbeddingCall(
        raw=raw, upstream_model="gemini-embedding-001", public_model="embed", request=decode_body(raw, EmbeddingRequest)
    )


def test_embeddings_requests():
    single = gemini().embeddings_request(embedding({"input": "hello", "dimensions": 3}))
    assert (single.path, single.headers) == ("/v1beta/models/gemini-embedding-001:embedContent", HEADERS)
    assert sent(single) == {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 3}
    batch = gemini().embeddings_request(embedding({"input": ["a", "b"]}))
    assert batch.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent(batch) == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}},
        ]
    }
    for body, param in (
        ({"input": [1, 2]}, "input"),
        ({"input": []}, "input"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
    ):
        with pytest.raises(OmenError) as exc:
            gemini().embeddings_request(embedding(body))
        assert (exc.value.status, exc.value.param) == (400, param)


def test_embeddings_results():
    single = gemini().embeddings_result(embedding({"input": "a"}), b'{"embedding":{"values":[0.5,-1.25,3.0]}}')
    assert single.usage == Usage()
    assert orjson.loads(single.body) == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.25, 3.0]}],
        "model": "gemini-embedding-001",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    batch = gemini().embeddings_result(
        embedding({"input": ["a", "b"], "encoding_format": "base64"}),
        b'{"embeddings":[{"values":[0.5,-1.25,3.0]},{"values":[1.0]}]}',
    )
    data = orjson.loads(batch.body)["data"]
    assert data[0]["embedding"] == base64.b64encode(struct.pack("<3f", 0.5, -1.25, 3.0)).decode()
    assert data[1] == {
        "object": "embedding",
        "index": 1,
        "embedding": base64.b64encode(struct.pack("<f", 1.0)).decode(),
    }
    for body in (b"{}", b"nope", b'{"embeddings":[{"values":["x"]}]}'):
        with pytest.raises(OmenError) as exc:
            gemini().embeddings_result(embedding({"input": "a"}), body)
        assert exc.value.status == 502


# ---- models and errors --------------------------------------------------------------------------------


def test_models():
    body = orjson.dumps(
        {
            "models": [
                {
                    "name": "models/gemini-2.5-flash",
                    "version": "001",
                    "displayName": "Gemini 2.5 Flash",
                    "inputTokenLimit": 1048576,
                    "outputTokenLimit": 65536,
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                    "thinking": True,
                },
                {"name": "models/gemini-embedding-001", "supportedGenerationMethods": ["embedContent"]},
                {"name": "models/imagen-4.0-generate-001", "supportedGenerationMethods": ["predict"]},
                {"name": "tunedModels/mine"},
                {"displayName": "no name"},
            ],
            "nextPageToken": "abc",
        }
    )
    models = gemini().models_result(body)
    assert [(m.id, m.owned_by) for m in models] == [
        ("gemini-2.5-flash", "gemini"),
        ("gemini-embedding-001", "gemini"),
        ("tunedModels/mine", "gemini"),
    ]
    assert models[0].extra == {
        "displayName": "Gemini 2.5 Flash",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "version": "001",
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }
    with pytest.raises(OmenError):
        gemini().models_result(b"[]")


def google(status: int, name: str, message: str, details: list | None = None) -> bytes:
    err: dict = {"code": status, "message": message, "status": name}
    if details is not None:
        err["details"] = details
    return orjson.dumps({"error": err})


KEY_INVALID = google(
    400,
    "INVALID_ARGUMENT",
    "API key not valid. Please pass a valid API key.",
    [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}],
)
RETRY = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37.2s"}]


@pytest.mark.parametrize(
    ("status", "body", "headers", "want"),
    [
        (
            400,
            google(400, "INVALID_ARGUMENT", "Invalid JSON payload."),
            [],
            (400, "invalid_request_error", None, None, {}),
        ),
        (400, KEY_INVALID, [], (401, "authentication_error", "invalid_api_key", None, {})),
        (
            400,
            google(400, "FAILED_PRECONDITION", "User location is not supported."),
            [],
            (400, "invalid_request_error", "failed_precondition", None, {}),
        ),
        (
            401,
            google(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
            [],
            (401, "authentication_error", None, None, {}),
        ),
        (
            403,
            google(403, "PERMISSION_DENIED", "The caller does not have permission"),
            [],
            (403, "permission_error", "permission_denied", None, {}),
        ),
        (
            404,
            google(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta."),
            [],
            (404, "invalid_request_error", "model_not_found", "model", {}),
        ),
        (
            404,
            google(404, "NOT_FOUND", "Requested entity was not found."),
            [],
            (404, "invalid_request_error", None, None, {}),
        ),
        (
            429,
            google(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", RETRY),
            [],
            (429, "rate_limit_error", "rate_limit_exceeded", None, {"retry-after": "38"}),
        ),
        (
            429,
            google(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", RETRY),
            [("Retry-After", "5")],
            (429, "rate_limit_error", "rate_limit_exceeded", None, {"retry-after": "5"}),
        ),
        (500, google(500, "INTERNAL", "An internal error has occurred."), [], (500, "server_error", None, None, {})),
        (
            503,
            google(503, "UNAVAILABLE", "The model is overloaded."),
            [],
            (503, "server_error", "overloaded", None, {}),
        ),
        (504, google(504, "DEADLINE_EXCEEDED", "Deadline expired."), [], (504, "server_error", None, None, {})),
    ],
)
def test_errors(status, body, headers, want):
    err = gemini().error(status, headers, body)
    assert (err.status, err.type, err.code, err.param, err.headers) == want
    assert err.message == orjson.loads(body)["error"]["message"]
    assert orjson.loads(err.to_json())["error"]["message"] == err.message


def test_error_not_json():
    err = gemini().error(
        404, [("Content-Type", "text/html")], b"<!DOCTYPE html><title>Error 404 (Not Found)!!1</title>"
    )
    assert (err.status, err.code) == (404, None) and "not JSON" in err.message
    assert gemini().error(502, [], b"").message.endswith("empty body.")
