"""Anthropic Messages adapter: request mapping, response/stream translation, errors, models."""

from __future__ import annotations

import base64
import itertools

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
from omen.providers.anthropic import AnthropicProvider
from omen.providers.anthropic_request import JSON_OBJECT_INSTRUCTION
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

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()
PDF = base64.b64encode(b"%PDF-1.7 fake").decode()
HEADERS = [("content-type", "application/json"), ("x-api-key", "sk-ant"), ("anthropic-version", "2023-06-01")]


def anthropic(**cfg: object) -> AnthropicProvider:
    counter = itertools.count()
    cfg.setdefault("api_key", "sk-ant")
    return AnthropicProvider(
        "anthropic",
        ProviderConfig(type="anthropic", **cfg),
        clock=lambda: 1735000000.7,
        new_id=lambda: f"id{next(counter)}",
    )


def chat(body: dict, *, stream: bool = False, include_usage: bool = False, decoded: bool = True) -> ChatCall:
    raw = orjson.dumps({"model": "claude", **body})
    return ChatCall(
        raw=raw,
        upstream_model="claude-sonnet-4-5",
        public_model="claude",
        stream=stream,
        include_usage=include_usage,
        request=decode_body(raw, ChatCompletionRequest) if decoded else None,
    )


def sent(body: dict, **kw: object) -> dict:
    return orjson.loads(anthropic().chat_request(chat(body, **kw)).body)


def refused(body: dict) -> OmenError:
    with pytest.raises(OmenError) as exc:
        anthropic().chat_request(chat(body))
    assert exc.value.status == 400
    return exc.value


USER = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


# ---- chat request -----------------------------------------------------------------------------------


def test_chat_request_mapping():
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Here: "},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    {"type": "text", "text": "  "},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {"id": "call:8", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_9", "content": "22C"},
            {"role": "tool", "tool_call_id": "call:8", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "max_tokens": 5,
        "stop": "END",
        "seed": 7,
        "presence_penalty": 0,
        "tools": [WEATHER, {"type": "function", "function": {"name": "get_time"}}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "user-42",
        "store": True,
        "service_tier": "auto",
    }
    req = anthropic().chat_request(chat(body))
    assert (req.method, req.path, req.headers, req.stream) == ("POST", "/v1/messages", HEADERS, False)
    assert orjson.loads(req.body) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": "Be brief.\n\nUse metric units.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "text", "text": "Here: "},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_9", "name": "get_weather", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "call_8", "name": "get_time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_9", "content": "22C"},
                    {"type": "tool_result", "tool_use_id": "call_8", "content": "noon"},
                    {"type": "text", "text": "Thanks"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"user_id": "user-42"},
    }


def test_chat_request_minimal_stream_and_config():
    p = anthropic(
        api_key="k2",
        base_url="https://proxy.example/v1/",
        anthropic_version="2024-01-01",
        headers={"anthropic-beta": "x-2025", "X-Api-Key": "override"},
    )
    req = p.chat_request(chat({"messages": USER, "max_tokens": 9}, stream=True, decoded=False))
    assert p.endpoints() == ["https://proxy.example"]
    assert req.stream is True
    assert req.headers == [
        ("content-type", "application/json"),
        ("anthropic-version", "2024-01-01"),
        ("anthropic-beta", "x-2025"),
        ("X-Api-Key", "override"),
    ]
    assert orjson.loads(req.body) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 9,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    assert anthropic().endpoints() == ["https://api.anthropic.com"]
    assert sent({"messages": USER})["max_tokens"] == 4096  # Anthropic requires it: the documented default


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"parallel_tool_calls": True, "tool_choice": "required"}, {"type": "any"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice(extra, want):
    body = sent({"messages": USER, "tools": [WEATHER], **extra})
    assert body.get("tool_choice") == want
    assert sent({"messages": USER, "tool_choice": "required"}).get("tool_choice") is None  # no tools, no choice


def test_legacy_functions_and_function_messages():
    body = {
        "messages": [
            {"role": "user", "content": "weather"},
            {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
            {"role": "function", "name": "get_weather", "content": "sunny"},
        ],
        "functions": [WEATHER["function"]],
        "function_call": {"name": "get_weather"},
    }
    out = sent(body)
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "call_get_weather", "name": "get_weather", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_get_weather", "content": "sunny"}]},
    ]
    assert out["tools"][0]["name"] == "get_weather"
    assert out["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_response_format():
    out = sent({"messages": [{"role": "system", "content": "Sys"}, *USER], "response_format": {"type": "json_object"}})
    assert out["system"] == "Sys\n\n" + JSON_OBJECT_INSTRUCTION and "output_config" not in out
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    out = sent({"messages": USER, "response_format": rf})
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}} and "system" not in out
    assert "output_config" not in sent({"messages": USER, "response_format": {"type": "text"}})
    err = refused({"messages": USER, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})
    assert err.param == "response_format.json_schema.schema"
    assert refused({"messages": USER, "response_format": {"type": "yaml"}}).param == "response_format.type"


def test_cache_control_is_forwarded():
    ephemeral = {"type": "ephemeral"}
    body = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Long manual", "cache_control": ephemeral}]},
            {"role": "system", "content": "Short"},
            {"role": "user", "content": "Question", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"role": "assistant", "content": "A"},
            {"role": "user", "content": [{"type": "text", "text": "Next", "cache_control": ephemeral}]},
        ],
        "tools": [{**WEATHER, "cache_control": ephemeral}],
        "cache_control": ephemeral,
    }
    out = sent(body)
    assert out["system"] == [
        {"type": "text", "text": "Long manual", "cache_control": ephemeral},
        {"type": "text", "text": "Short"},
    ]
    assert out["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Question", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        },
        {"role": "assistant", "content": "A"},
        {"role": "user", "content": [{"type": "text", "text": "Next", "cache_control": ephemeral}]},
    ]
    assert out["tools"][0]["cache_control"] == ephemeral
    assert out["cache_control"] == ephemeral


def test_top_k_extension():
    assert sent({"messages": USER, "top_k": 40})["top_k"] == 40
    assert "top_k" not in sent({"messages": USER})
    for bad in (-1, 1.5, True, "5"):
        assert refused({"messages": USER, "top_k": bad}).param == "top_k"


def test_tool_results_with_parts_files_and_odd_ids():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"}},
                    {
                        "type": "file",
                        "file": {"file_data": "data:text/plain;base64," + base64.b64encode(b"notes").decode()},
                    },
                ],
            },
            {
                "role": "assistant",
                "tool_calls": [{"id": "fc.1/x", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {
                "role": "tool",
                "tool_call_id": "fc.1/x",
                "content": [
                    {"type": "text", "text": "chart:"},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c2", "content": ""},
        ]
    }
    out = sent(body)["messages"]
    assert out[0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
            "title": "a.pdf",
        },
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
    ]
    assert out[1]["content"][0]["id"] == "fc_1_x"
    assert out[2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "fc_1_x",
            "content": [
                {"type": "text", "text": "chart:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
            ],
        }
    ]
    assert out[4]["content"] == [{"type": "tool_result", "tool_use_id": "c2"}]


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"n": 2}, "n", "one choice"),
        ({"logprobs": True}, "logprobs", "log probabilities"),
        ({"top_logprobs": 2}, "top_logprobs", "log probabilities"),
        ({"logit_bias": {"1": 2}}, "logit_bias", "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty", "presence_penalty"),
        ({"frequency_penalty": 0.5}, "frequency_penalty", "frequency_penalty"),
        ({"temperature": 1.5}, "temperature", "between 0 and 1"),
        ({"reasoning_effort": "high"}, "reasoning_effort", "reasoning_effort"),
        ({"modalities": ["text", "audio"]}, "modalities", "audio"),
        ({"web_search_options": {}}, "web_search_options", "web_search_options"),
        ({"max_tokens": 0}, "max_tokens", "at least 1"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]", "only function tools"),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools"}}, "tool_choice", "Unsupported tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, "tool_choice.function.name", "function.name"),
    ],
)
def test_unsupported_parameters(body, param, fragment):
    err = refused({"messages": USER, **body})
    assert err.param == param and fragment in err.message


def image(url: str) -> dict:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}


def file(spec: dict) -> dict:
    return {"role": "user", "content": [{"type": "file", "file": spec}]}


IMAGE_URL = "messages[0].content[0].image_url.url"
BAD_ARGS = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}


@pytest.mark.parametrize(
    ("message", "param", "fragment"),
    [
        (image("ftp://x/y.png"), IMAGE_URL, "http(s) URL or a data: URI"),
        (image(f"data:image/tiff;base64,{PNG}"), IMAGE_URL, "image/tiff"),
        (image("data:image/png;base64,@@"), IMAGE_URL, "valid base64"),
        (image(f"data:image/png,{PNG}"), IMAGE_URL, "base64-encoded"),
        (
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]},
            "messages[0].content[0]",
            "'audio'",
        ),
        (file({"file_id": "file-1"}), "messages[0].content[0].file", "file ids"),
        (file({"file_data": f"data:image/png;base64,{PNG}"}), "messages[0].content[0].file", "application/pdf"),
        (
            {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            "messages[0].content[0]",
            "system messages",
        ),
        (
            {"role": "assistant", "tool_calls": [BAD_ARGS]},
            "messages[0].tool_calls[0].function.arguments",
            "JSON object",
        ),
    ],
)
def test_message_errors(message, param, fragment):
    err = refused({"messages": [message, *USER]})
    assert err.param == param and fragment in err.message


def test_only_system_messages_refused():
    err = refused({"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": " "}]})
    assert err.param == "messages"


def test_unsupported_endpoints():
    p = anthropic()
    raw = b'{"model":"claude","prompt":"x"}'
    completion = CompletionCall(
        raw=raw, upstream_model="c", public_model="c", request=decode_body(raw, CompletionRequest)
    )
    raw = b'{"model":"claude","input":"x"}'
    embedding = EmbeddingCall(raw=raw, upstream_model="c", public_model="c", request=decode_body(raw, EmbeddingRequest))
    for fn, arg in [
        (p.completion_request, completion),
        (lambda c: p.completion_result(c, b"{}"), completion),
        (p.embeddings_request, embedding),
        (lambda c: p.embeddings_result(c, b"{}"), embedding),
    ]:
        with pytest.raises(OmenError) as exc:
            fn(arg)
        assert (exc.value.status, exc.value.code, exc.value.param) == (400, "unsupported_endpoint", "model")
        assert "Anthropic" in exc.value.message


# ---- chat result ------------------------------------------------------------------------------------

RESULT = (
    b'{"id":"msg_019Q1hrJbZG26Fb9BQhrkHEr","type":"message","role":"assistant","model":"claude-sonnet-4-20250514",'
    b'"content":[{"type":"thinking","thinking":"User wants weather.","signature":"sig"},'
    b'{"type":"text","text":"I\'ll check the current weather in Paris for you."},'
    b'{"type":"tool_use","id":"toolu_01NRLabsLyVHZPKxbKvkfSMn","name":"get_weather","input":{"location":"Paris"}}],'
    b'"stop_reason":"tool_use","stop_sequence":null,'
    b'"usage":{"input_tokens":377,"output_tokens":65,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,'
    b'"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":0},"service_tier":"standard"}}'
)


def test_chat_result_tool_use_thinking_and_cache_usage():
    result = anthropic().chat_result(chat({"messages": USER}), RESULT)
    assert result.usage == Usage(prompt_tokens=2477, completion_tokens=65, total_tokens=2542, cached_tokens=2000)
    assert orjson.loads(result.body) == {
        "id": "msg_019Q1hrJbZG26Fb9BQhrkHEr",
        "object": "chat.completion",
        "created": 1735000000,
        "model": "claude-sonnet-4-20250514",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'll check the current weather in Paris for you.",
                    "refusal": None,
                    "reasoning_content": "User wants weather.",
                    "tool_calls": [
                        {
                            "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 2477,
            "completion_tokens": 65,
            "total_tokens": 2542,
            "prompt_tokens_details": {"cached_tokens": 2000},
        },
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("tool_use", "stop"),  # no function call in the content (server tools only)
        (None, "stop"),
        ("something_new", "stop"),
    ],
)
def test_chat_result_finish_reasons(stop_reason, finish):
    body = {
        "id": "msg_1",
        "type": "message",
        "model": "m",
        "content": [{"type": "text", "text": "x"}, {"type": "redacted_thinking", "data": "zz"}],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 3, "output_tokens": 1, "output_tokens_details": {"thinking_tokens": 1}},
    }
    out = orjson.loads(anthropic().chat_result(chat({"messages": USER}), orjson.dumps(body)).body)
    assert out["choices"][0]["finish_reason"] == finish
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "x", "refusal": None}
    assert out["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 1,
        "total_tokens": 4,
        "completion_tokens_details": {"reasoning_tokens": 1},
    }


def test_chat_result_errors_and_fallbacks():
    p = anthropic()
    with pytest.raises(OmenError) as exc:
        p.chat_result(chat({"messages": USER}), b"not json")
    assert exc.value.status == 502 and exc.value.code == "upstream_invalid_response"
    error = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    with pytest.raises(OmenError) as exc:
        p.chat_result(chat({"messages": USER}), error)
    assert (exc.value.status, exc.value.code, exc.value.message) == (503, "overloaded", "Overloaded")
    out = orjson.loads(p.chat_result(chat({"messages": USER}), b'{"content":[],"usage":null}').body)
    assert out["id"] == "chatcmpl-id0" and out["model"] == "claude-sonnet-4-5"
    assert out["choices"][0]["message"]["content"] == ""


# ---- chat stream ------------------------------------------------------------------------------------

# The SDK fixture (providers.md §5.4) with cache counters added to message_start.
EVENTS = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_019Q1hrJbZG26Fb9BQhrkHEr","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":377,"cache_creation_input_tokens":10,"cache_read_input_tokens":200,"output_tokens":1,"service_tier":"standard"}}}',  # noqa: E501
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',  # noqa: E501
    b'event: ping\ndata: {"type": "ping"}',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"I"}}',  # noqa: E501
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\'ll check the current weather in Paris for you."}}',  # noqa: E501
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01NRLabsLyVHZPKxbKvkfSMn","name":"get_weather","caller":{"type":"direct"},"input":{}}}',  # noqa: E501
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}',  # noqa: E501
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"locati"}}',  # noqa: E501
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"on\\": \\"P"}}',  # noqa: E501
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ar"}}',  # noqa: E501
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"is\\"}"}}',  # noqa: E501
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}',  # noqa: E501
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":2}',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":65}}',  # noqa: E501
    b'event: message_stop\ndata: {"type":"message_stop"}',
]  # fmt: skip
STREAM = b"".join(e + b"\n\n" for e in EVENTS)
HEAD = (
    b'{"id":"msg_019Q1hrJbZG26Fb9BQhrkHEr","object":"chat.completion.chunk","created":1735000000,'
    b'"model":"claude-sonnet-4-20250514","choices":'
)
USAGE = Usage(prompt_tokens=587, completion_tokens=65, total_tokens=652, cached_tokens=200)


def delta(d: bytes, finish: bytes = b"null", head: bytes = HEAD) -> Chunk:
    return Chunk(head + b'[{"index":0,"delta":' + d + b',"logprobs":null,"finish_reason":' + finish + b"}]}")


def args(index: int, piece: bytes) -> Chunk:
    return delta(b'{"tool_calls":[{"index":%d,"function":{"arguments":"%s"}}]}' % (index, piece))


def expected_chat(include_usage: bool) -> list:
    events = [
        delta(b'{"role":"assistant","content":""}'),
        delta(b'{"content":"I"}'),
        delta(b'{"content":"\'ll check the current weather in Paris for you."}'),
        delta(
            b'{"tool_calls":[{"index":0,"id":"toolu_01NRLabsLyVHZPKxbKvkfSMn","type":"function",'
            b'"function":{"name":"get_weather","arguments":""}}]}'
        ),
        args(0, b'{\\"locati'),
        args(0, b'on\\": \\"P'),
        args(0, b"ar"),
        args(0, b'is\\"}'),
        delta(
            b'{"tool_calls":[{"index":1,"id":"toolu_02","type":"function",'
            b'"function":{"name":"get_time","arguments":""}}]}'
        ),
        args(1, b"{}"),  # no fragment streamed: "{}" so the arguments still parse
        delta(b"{}", b'"tool_calls"'),
    ]
    if include_usage:
        events.append(
            Chunk(
                HEAD + b'[],"usage":{"prompt_tokens":587,"completion_tokens":65,"total_tokens":652,'
                b'"prompt_tokens_details":{"cached_tokens":200}}}'
            )
        )
    return [*events, StreamUsage(USAGE), StreamEnd()]


def run(make, pieces: list[bytes]) -> list:
    t = make()
    events = []
    for piece in pieces:
        events += t.feed(piece)
    events += t.close()
    return [
        ("error", e.error.status, e.error.code, e.error.message) if isinstance(e, StreamError) else e for e in events
    ]


def chat_stream(include_usage: bool = False):
    return lambda: anthropic().chat_stream(chat({"messages": USER}, stream=True, include_usage=include_usage))


@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_stream_every_split(include_usage):
    want = expected_chat(include_usage)
    assert run(chat_stream(include_usage), [STREAM]) == want
    for i in range(len(STREAM) + 1):
        assert run(chat_stream(include_usage), [STREAM[:i], STREAM[i:]]) == want, i
    assert run(chat_stream(include_usage), [STREAM[i : i + 1] for i in range(len(STREAM))]) == want


def test_chat_stream_chunks_are_valid_openai_json():
    arguments: dict[int, str] = {}
    for event in run(chat_stream(True), [STREAM]):
        if isinstance(event, Chunk):
            obj = orjson.loads(event.data)
            assert obj["object"] == "chat.completion.chunk"
            for choice in obj["choices"]:
                for call in choice["delta"].get("tool_calls", []):
                    arguments[call["index"]] = arguments.get(call["index"], "") + call["function"]["arguments"]
    assert {k: orjson.loads(v) for k, v in arguments.items()} == {0: {"location": "Paris"}, 1: {}}


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40), crlf=st.booleans())
def test_chat_stream_random_splits(cuts, crlf):
    data = STREAM.replace(b"\n", b"\r\n") if crlf else STREAM
    points = [0, *sorted(c * len(data) // len(STREAM) for c in cuts), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    assert run(chat_stream(), pieces) == expected_chat(False)


def sse(kind: str, data: dict) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


START = sse(
    "message_start",
    {"message": {"id": "msg_2", "model": "m", "content": [], "usage": {"input_tokens": 5, "output_tokens": 1}}},
)
HEAD2 = b'{"id":"msg_2","object":"chat.completion.chunk","created":1735000000,"model":"m","choices":'
ROLE2 = delta(b'{"role":"assistant","content":""}', head=HEAD2)


def test_chat_stream_thinking_refusal_and_cumulative_usage():
    data = (
        START
        + sse("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}})
        + sse("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}})
        + sse("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}})
        + sse("content_block_stop", {"index": 0})
        + sse("content_block_start", {"index": 1, "content_block": {"type": "text", "text": "No"}})
        + sse("content_block_delta", {"index": 1, "delta": {"type": "citations_delta", "citation": {}}})
        + sse("brand_new_event", {"x": 1})
        + sse("message_delta", {"delta": {"stop_reason": "refusal"}, "usage": {"output_tokens": 3, "input_tokens": 5, "cache_read_input_tokens": 7}})  # noqa: E501
        + sse("message_delta", {"delta": {}, "usage": {"output_tokens": 4}})
        + sse("message_stop", {})
    )  # fmt: skip
    assert run(chat_stream(), [data]) == [
        ROLE2,
        delta(b'{"reasoning_content":"Hmm."}', head=HEAD2),
        delta(b'{"content":"No"}', head=HEAD2),
        delta(b"{}", b'"content_filter"', head=HEAD2),
        StreamUsage(Usage(prompt_tokens=12, completion_tokens=4, total_tokens=16, cached_tokens=7)),
        StreamEnd(),
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", b"stop"), ("stop_sequence", b"stop"), ("max_tokens", b"length"), ("pause_turn", b"stop")],
)
def test_chat_stream_finish_reasons(stop_reason, finish):
    data = START + sse("message_delta", {"delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 1}})
    events = run(chat_stream(), [data + sse("message_stop", {})])
    assert events[1] == delta(b"{}", b'"' + finish + b'"', head=HEAD2)


def test_chat_stream_error_event():
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    events = run(chat_stream(), [START + error + sse("message_stop", {})])
    assert events == [ROLE2, ("error", 503, "overloaded", "Overloaded")]
    error = b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"Internal server error"}}\n\n'
    assert run(chat_stream(), [error]) == [("error", 500, None, "Internal server error")]
    events = run(chat_stream(), [b'event: error\ndata: {"type":"error","error":"boom"}\n\n'])
    assert events[0][:3] == ("error", 502, "upstream_invalid_response")


def test_chat_stream_truncated_and_garbage():
    events = run(chat_stream(), [STREAM[: STREAM.index(EVENTS[-2])]])
    assert events[:-1] == expected_chat(False)[:10]
    assert events[-1][:3] == ("error", 502, "upstream_stream_truncated") and "message_stop" in events[-1][3]
    events = run(chat_stream(), [b"data: <html>\n\n"])
    assert events[0][:3] == ("error", 502, "upstream_invalid_response") and "<html>" in events[0][3]


def test_chat_stream_ignores_input_after_stop_and_tolerates_missing_start():
    t = chat_stream()()
    assert t.feed(STREAM)[-1] == StreamEnd()
    assert t.feed(STREAM) == [] and t.close() == []
    data = sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "x"}}) + sse(
        "message_stop", {}
    )
    head = b'{"id":"chatcmpl-id0","object":"chat.completion.chunk","created":1735000000,"model":"claude-sonnet-4-5","choices":'  # noqa: E501
    assert run(chat_stream(), [data]) == [
        delta(b'{"role":"assistant","content":""}', head=head),
        delta(b'{"content":"x"}', head=head),
        delta(b"{}", b'"stop"', head=head),
        StreamUsage(Usage()),
        StreamEnd(),
    ]


# ---- models, errors ---------------------------------------------------------------------------------


def test_models():
    p = anthropic()
    assert p.models_request() == UpstreamRequest(
        "GET", "/v1/models?limit=1000", [("x-api-key", "sk-ant"), ("anthropic-version", "2023-06-01")]
    )
    body = (
        b'{"data":[{"type":"model","id":"claude-sonnet-4-5-20250929","display_name":"Claude Sonnet 4.5",'
        b'"created_at":"2025-09-29T00:00:00Z","max_input_tokens":200000},{"id":7},{"id":"claude-x"}],'
        b'"has_more":false,"first_id":"claude-sonnet-4-5-20250929","last_id":"claude-x"}'
    )
    models = p.models_result(body)
    assert [(m.id, m.owned_by, m.created) for m in models] == [
        ("claude-sonnet-4-5-20250929", "anthropic", 1759104000),
        ("claude-x", "anthropic", 0),
    ]
    assert models[0].extra == {"display_name": "Claude Sonnet 4.5", "max_input_tokens": 200000}
    for bad in (b"nope", b'{"models":[]}'):
        with pytest.raises(OmenError) as exc:
            p.models_result(bad)
        assert exc.value.status == 502


def anthropic_error(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})


@pytest.mark.parametrize(
    ("status", "kind", "message", "want"),
    [
        (400, "invalid_request_error", "max_tokens: Field required", (400, "invalid_request_error", None, None)),
        (401, "authentication_error", "invalid x-api-key", (401, "authentication_error", "invalid_api_key", None)),
        (402, "billing_error", "Credit balance too low", (429, "insufficient_quota", "insufficient_quota", None)),
        (403, "permission_error", "No access", (403, "permission_error", None, None)),
        (404, "not_found_error", "model: claude-9", (404, "invalid_request_error", "model_not_found", "model")),
        (404, "not_found_error", "Not Found", (404, "invalid_request_error", None, None)),
        (413, "request_too_large", "Too big", (413, "invalid_request_error", "request_too_large", None)),
        (429, "rate_limit_error", "Slow down", (429, "rate_limit_error", "rate_limit_exceeded", None)),
        (500, "api_error", "Internal server error", (500, "server_error", None, None)),
        (503, "api_error", "Unavailable", (503, "server_error", None, None)),
        (504, "timeout_error", "Request timed out", (504, "server_error", "timeout", None)),
        (529, "overloaded_error", "Overloaded", (503, "server_error", "overloaded", None)),
    ],
)
def test_errors(status, kind, message, want):
    headers = [("Retry-After", "3"), ("request-id", "req_1")]
    err = anthropic().error(status, headers, anthropic_error(kind, message))
    assert (err.status, err.type, err.code, err.param) == want
    assert err.message == message
    assert err.headers == ({"retry-after": "3"} if want[0] in (429, 503) else {})


def test_errors_not_in_anthropic_shape():
    p = anthropic()
    err = p.error(413, [], b"<html><body>413 Request Entity Too Large</body></html>")
    assert (err.status, err.code) == (413, "request_too_large") and "413 Request Entity" in err.message
    err = p.error(529, [], b"")
    assert (err.status, err.type, err.code) == (503, "server_error", "overloaded")
    err = p.error(502, [], b'{"error":{"message":"bad gateway","type":"server_error"}}')
    assert (err.status, err.message) == (502, "bad gateway")
    err = p.error(400, [], anthropic_error("invalid_request_error", ""))
    assert err.status == 400 and "returned HTTP 400" in err.message
