"""Anthropic Messages <-> OpenAI chat translation (sans-IO): request mapping byte for byte, error paths,
non-streamed results, the error shape, and the stream writer fed by real provider stream translators
on every split of their upstream bytes."""

from __future__ import annotations

import itertools

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omen.api.anthropic import CountTokensRequest, MessagesRequest
from omen.api.decode import decode_body
from omen.config.schema import ProviderConfig
from omen.errors import OmenError, bad_request
from omen.inbound.anthropic_request import encode_chat, to_chat_request
from omen.inbound.anthropic_response import error_body, message_from_openai, message_id, tool_input
from omen.inbound.anthropic_stream import AnthropicStreamWriter
from omen.providers.base import ChatCall, Chunk, StreamEnd, StreamError, StreamUsage, Usage
from omen.providers.ollama import OllamaProvider
from omen.providers.openai_compat import OpenAIStream

PNG = "iVBORw0KGgoAAAANSUhEUg=="


def decode(body: dict, type_: type = MessagesRequest):
    return decode_body(orjson.dumps({"model": "claude-x", "max_tokens": 64, **body}), type_)


def translate(body: dict, **kw) -> tuple[dict, object]:
    translated = to_chat_request(decode(body), "gpt-4o", **kw)
    return orjson.loads(encode_chat(translated.request)), translated


def bad(body: dict, type_: type = MessagesRequest) -> OmenError:
    with pytest.raises(OmenError) as info:
        to_chat_request(decode(body, type_), "gpt-4o")
    assert info.value.status == 400
    return info.value


# ---- request -----------------------------------------------------------------------------------------

FULL = {
    "system": [
        {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be kind."},
    ],
    "messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [
                        {"type": "text", "text": "12:00"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    ],
                    "is_error": False,
                },
                {"type": "text", "text": "And this picture?"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                    "title": "r.pdf",
                },
            ],
        },
        {"role": "assistant", "content": "Prefill"},
    ],
    "tools": [
        {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "get_time", "input_schema": {"type": "object"}, "type": "custom"},
    ],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "stop_sequences": ["END", "STOP"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 40,
    "metadata": {"user_id": "user-42"},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "stream": True,
}


def test_full_request_byte_for_byte():
    translated = to_chat_request(decode(FULL), "gpt-4o", stream=True, max_tokens_field="max_completion_tokens")
    assert encode_chat(translated.request) == (
        b'{"model":"gpt-4o","messages":['
        b'{"role":"system","content":[{"type":"text","text":"You are terse."},{"type":"text","text":"Be kind."}]},'
        b'{"role":"user","content":"What is the weather in Paris?"},'
        b'{"role":"assistant","content":"Let me check.","tool_calls":['
        b'{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":\\"Paris\\"}"}},'
        b'{"id":"toolu_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},'
        b'{"role":"tool","content":"18C","tool_call_id":"toolu_1"},'
        b'{"role":"tool","content":[{"type":"text","text":"12:00"}],"tool_call_id":"toolu_2"},'
        b'{"role":"user","content":['
        b'{"type":"image_url","image_url":{"url":"data:image/png;base64,' + PNG.encode() + b'"}},'
        b'{"type":"text","text":"And this picture?"},'
        b'{"type":"image_url","image_url":{"url":"https://example.com/a.jpg"}},'
        b'{"type":"text","text":"notes"},'
        b'{"type":"file","file":{"filename":"r.pdf","file_data":"data:application/pdf;base64,JVBE"}}]},'
        b'{"role":"assistant","content":"Prefill"}],'
        b'"stream":true,"stream_options":{"include_usage":true},"temperature":0.5,"top_p":0.9,'
        b'"max_completion_tokens":64,"stop":["END","STOP"],"user":"user-42",'
        b'"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather",'
        b'"parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},'
        b'{"type":"function","function":{"name":"get_time","parameters":{"type":"object"}}}],'
        b'"tool_choice":"required","parallel_tool_calls":false}'
    )


def test_minimal_request_and_max_tokens_name():
    body, _ = translate({"messages": [{"role": "user", "content": "hi"}]})
    assert body == {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
    # no stream_options unless streaming: OpenAI refuses them on non-streamed calls
    assert "stream_options" not in body and "stream" not in body


@pytest.mark.parametrize(
    ("choice", "want"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        ({"type": "tool", "name": "t"}, {"tool_choice": {"type": "function", "function": {"name": "t"}}}),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice(choice, want):
    tools = [{"name": "t", "input_schema": {"type": "object"}}]
    body, _ = translate({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice})
    assert {k: body[k] for k in ("tool_choice", "parallel_tool_calls") if k in body} == want


def test_tool_choice_without_tools_is_dropped_and_json_schema_output():
    body, _ = translate(
        {
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": {"type": "auto"},
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        }
    )
    assert "tool_choice" not in body and "tools" not in body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": {"type": "object"}},
    }


def test_tool_result_variants_and_empty_assistant_turns():
    body, _ = translate(
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {"x": [1, 2]}}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "a"},
                        {"type": "tool_result", "tool_use_id": "b", "content": []},
                        {
                            "type": "tool_result",
                            "tool_use_id": "c",
                            "content": [{"type": "text", "text": "p"}, {"type": "text", "text": "q"}],
                        },
                    ],
                },
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "only thoughts"}]},
                {"role": "assistant", "content": []},
            ]
        }
    )
    assert body["messages"] == [
        {
            "role": "assistant",
            "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x":[1,2]}'}}],
        },
        {"role": "tool", "content": "", "tool_call_id": "a"},
        {"role": "tool", "content": "", "tool_call_id": "b"},
        {
            "role": "tool",
            "content": [{"type": "text", "text": "p"}, {"type": "text", "text": "q"}],
            "tool_call_id": "c",
        },
    ]


def test_documents_with_content_source():
    body, _ = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "content", "content": "plain"}},
                        {
                            "type": "document",
                            "source": {
                                "type": "content",
                                "content": [
                                    {"type": "text", "text": "t"},
                                    {"type": "image", "source": {"type": "url", "url": "http://h/i.png"}},
                                ],
                            },
                        },
                    ],
                }
            ]
        }
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "plain"},
        {"type": "text", "text": "t"},
        {"type": "image_url", "image_url": {"url": "http://h/i.png"}},
    ]


def test_count_tokens_request_needs_no_max_tokens():
    req = decode_body(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}), CountTokensRequest)
    translated = to_chat_request(req, "m")
    assert translated.request.max_tokens is None and translated.request.max_completion_tokens is None


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": []}, "messages", "at least one message"),
        ({"messages": [{"role": "user", "content": []}]}, "messages[0].content", "non-empty"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "i", "name": "n", "input": {}}]}]},
            "messages[0].content[0].type",
            "'tool_use' block is not allowed in a user message",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "i"}]}]},
            "messages[0].content[0].type",
            "'tool_result' block is not allowed in an assistant message",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AA"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].source.media_type",
            "image/bmp",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].source.data",
            "must not be empty",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "ftp://x"}}]}
                ]
            },
            "messages[0].content[0].source.url",
            "http(s)",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ]
            },
            "messages[0].content[0].source.type",
            "Files API",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}],
                    }
                ]
            },
            "messages[0].content[0].source.type",
            "not fetched",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "document", "source": {"type": "base64", "media_type": "text/html", "data": "AA"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].source.media_type",
            "application/pdf",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "web_search", "type": "web_search_20250305"}],
            },
            "tools[0].type",
            "built-in tool 'web_search_20250305'",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f"}]},
            "tools[0].input_schema",
            "Missing",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "f", "input_schema": {}}],
                "tool_choice": {"type": "tool", "name": "g"},
            },
            "tool_choice.name",
            "'g'",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens", "at least 1"),
        (
            {"messages": [{"role": "user", "content": "x"}], "output_config": {"format": {"type": "regex"}}},
            "output_config.format.type",
            "json_schema",
        ),
    ],
)
def test_request_errors_name_the_anthropic_param(body, param, fragment):
    error = bad(body)
    assert error.param == param
    assert fragment in error.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": None}, "max_tokens"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "s3"}}]}]},
            "messages[0].content[0].source.type",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "maybe"}}, "tool_choice.type"),
        ({"messages": [{"role": "user", "content": "x"}], "stop_sequences": "END"}, "stop_sequences"),
    ],
)
def test_decode_errors_have_exact_paths(body, param):
    with pytest.raises(OmenError) as info:
        decode_body(orjson.dumps({"model": "m", "max_tokens": 1, **body}), MessagesRequest)
    assert info.value.status == 400 and info.value.param == param


def test_openai_params_map_back_to_the_anthropic_request():
    _, translated = translate(FULL)
    p = translated.anthropic_param
    assert p("messages[0]") == "system"
    assert p("messages[0].content[1]") == "system[1]"
    assert p("messages[0].content") == "system"
    assert p("messages[1].content") == "messages[0].content"
    assert p("messages[1]") == "messages[0]"
    assert p("messages[3].content") == "messages[2].content[0].content"  # a tool result's content
    assert p("messages[2].tool_calls[1].function.arguments") == "messages[1].content[3]"
    assert p("messages[2].content") == "messages[1].content"
    assert p("messages[4].content[0].text") == "messages[2].content[1].content"  # the second tool result
    assert p("messages[5].content[0].image_url.url") == "messages[2].content[1].content[1]"  # its image
    assert p("messages[5].content[2].image_url") == "messages[2].content[3]"
    assert p("messages[5].content[4]") == "messages[2].content[5]"
    assert p("tools[0].function.parameters.properties") == "tools[0].input_schema"
    assert p("stop") == "stop_sequences"
    assert p("max_completion_tokens") == "max_tokens"
    assert p("parallel_tool_calls") == "tool_choice.disable_parallel_tool_use"
    assert p("user") == "metadata.user_id"
    assert p("n") is None and p("") is None
    error = translated.rewrite(bad_request("Ollama needs data: URIs", param="messages[5].content[2].image_url.url"))
    assert error.param == "messages[2].content[3]"


# ---- non-streamed result -----------------------------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "noop", "arguments": ""}},
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 100},
    },
}


def test_result_byte_for_byte_with_tools_and_cached_tokens():
    body = orjson.dumps(COMPLETION)
    assert message_from_openai(body, None, "claude-x") == (
        b'{"id":"msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG","type":"message","role":"assistant","model":"claude-x",'
        b'"content":[{"type":"text","text":"Checking."},'
        b'{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},'
        b'{"type":"tool_use","id":"call_2","name":"noop","input":{}}],'
        b'"stop_reason":"tool_use","stop_sequence":null,'
        b'"usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":30}}'
    )


@pytest.mark.parametrize(
    ("finish", "calls", "want"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("content_filter", False, "refusal"),
        ("tool_calls", True, "tool_use"),
        ("stop", True, "tool_use"),  # servers that report "stop" after tool calls
        (None, False, "end_turn"),
        ("something_new", False, "end_turn"),
    ],
)
def test_result_stop_reasons(finish, calls, want):
    message = {"role": "assistant", "content": "x"}
    if calls:
        message["tool_calls"] = [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]
    body = orjson.dumps({"id": "chatcmpl-1", "choices": [{"message": message, "finish_reason": finish}]})
    assert orjson.loads(message_from_openai(body, Usage(1, 2, 3), "m"))["stop_reason"] == want


def test_result_refusal_thinking_empty_and_given_usage():
    body = orjson.dumps(
        {
            "id": "weird id!",
            "choices": [
                {
                    "message": {"content": None, "refusal": "I can't help with that.", "reasoning_content": "why"},
                    "finish_reason": "stop",
                }
            ],
        }
    )
    out = orjson.loads(message_from_openai(body, Usage(5, 6, 11), "m", thinking=True, new_id=lambda: "n1"))
    assert out["id"] == "msg_n1"
    assert out["content"] == [
        {"type": "thinking", "thinking": "why", "signature": ""},
        {"type": "text", "text": "I can't help with that."},
    ]
    assert out["stop_reason"] == "refusal"
    assert out["usage"] == {
        "input_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 6,
    }
    empty = orjson.dumps({"id": "chatcmpl-2", "choices": [{"message": {"content": ""}, "finish_reason": "stop"}]})
    out = orjson.loads(message_from_openai(empty, None, "m"))
    assert out["content"] == [] and out["usage"] == {"input_tokens": 0, "output_tokens": 0}
    # reasoning is shown only when the client enabled thinking
    out = orjson.loads(message_from_openai(body, None, "m"))
    assert [b["type"] for b in out["content"]] == ["text"]


def test_result_invalid_upstream_bodies():
    for body in (b"<html>", b'{"choices":[]}', b'{"choices":[{"message":"x"}]}'):
        with pytest.raises(OmenError) as info:
            message_from_openai(body, None, "m", provider="p")
        assert info.value.status == 502 and "'p'" in info.value.message


def test_tool_input_and_message_id():
    assert tool_input('{"a":1}') == {"a": 1}
    assert tool_input("  ") == {} and tool_input(None) == {} and tool_input({"b": 2}) == {"b": 2}
    assert tool_input('{"a":') == {"_raw_arguments": '{"a":'}
    assert tool_input("[1]") == {"_raw_arguments": "[1]"}
    assert message_id("chatcmpl-abc_DEF-1") == "msg_abc_DEF-1" and message_id("msg_01X") == "msg_01X"
    assert message_id("", lambda: "z") == "msg_z" and message_id("a/b", lambda: "z") == "msg_z"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_body_type_by_status(status, kind):
    body = orjson.loads(error_body(OmenError(status, "boom"), "req_1"))
    assert body == {"type": "error", "error": {"type": kind, "message": "boom"}, "request_id": "req_1"}


def test_error_body_names_the_param():
    assert orjson.loads(error_body(bad_request("Unsupported image type.", param="messages[0].content[1]")))[
        "error"
    ] == {
        "type": "invalid_request_error",
        "message": "messages[0].content[1]: Unsupported image type.",
    }
    # a message that already names its param is left alone, and no request_id key without an id
    body = orjson.loads(error_body(bad_request("Missing required field 'max_tokens'.", param="max_tokens")))
    assert body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "Missing required field 'max_tokens'."},
    }


# ---- stream writer -----------------------------------------------------------------------------------


def sse(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def oa_chunk(delta: dict | None = None, finish: str | None = None, **extra) -> bytes:
    head = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    if delta is None:
        return sse({**head, "choices": [], **extra})
    return sse({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra})


def tool_delta(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict:
    call: dict = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"tool_calls": [call]}


OPENAI_STREAM = b"".join(
    [
        oa_chunk({"role": "assistant", "content": "", "refusal": None}),
        oa_chunk({"content": "Let me"}),
        oa_chunk({"content": ' check \u00e9\u00e8 "x".'}),
        oa_chunk(tool_delta(0, "", "call_1", "get_weather")),
        oa_chunk(tool_delta(0, '{"city":')),
        oa_chunk(tool_delta(0, '"Paris"}')),
        oa_chunk(tool_delta(1, "{}", "call_2", "get_time")),
        oa_chunk({}, "tool_calls"),
        oa_chunk(
            None,
            usage={
                "prompt_tokens": 20,
                "completion_tokens": 9,
                "total_tokens": 29,
                "prompt_tokens_details": {"cached_tokens": 8},
            },
        ),
        b"data: [DONE]\n\n",
    ]
)

EXPECTED_TOOLS = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_abc","type":"message",'
    b'"role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":0,"output_tokens":0}}}\n\n'
    b"event: content_block_start\ndata: "
    b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b"event: content_block_delta\ndata: "
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":" check \xc3\xa9\xc3\xa8 \\"x\\"."}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":'
    b'{"type":"tool_use","id":"call_1","name":"get_weather","input":{}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":"{\\"city\\":"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":"\\"Paris\\"}"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":2,"content_block":'
    b'{"type":"tool_use","id":"call_2","name":"get_time","input":{}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta",'
    b'"partial_json":"{}"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":2}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
    b'"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":8,"output_tokens":9}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def relay(make_translator, pieces: list[bytes], **writer_kw) -> bytes:
    """What the relay sends: the writer's output for each read, then its finish()."""
    translator = make_translator()
    writer = AnthropicStreamWriter("claude-x", new_id=lambda: "gen", **writer_kw)
    out = b""
    for piece in pieces:
        out += writer.render(translator.feed(piece))
    out += writer.render(translator.close())
    return out + writer.finish(None)


def openai_stream() -> OpenAIStream:
    return OpenAIStream("openai", include_usage=True)


def every_split(data: bytes):
    yield [data]
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def test_stream_openai_text_and_streamed_tool_calls_every_split():
    for pieces in every_split(OPENAI_STREAM):
        assert relay(openai_stream, pieces) == EXPECTED_TOOLS


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(OPENAI_STREAM)), max_size=30))
def test_stream_random_multi_splits(cuts):
    points = [0, *sorted(cuts), len(OPENAI_STREAM)]
    assert relay(openai_stream, [OPENAI_STREAM[a:b] for a, b in itertools.pairwise(points)]) == EXPECTED_TOOLS


OLLAMA_STREAM = (
    b'{"model":"llama3.2","message":{"role":"assistant","content":"It","thinking":"hm"},"done":false}\n'
    b'{"model":"llama3.2","message":{"role":"assistant","content":" is warm."},"done":false}\n'
    b'{"model":"llama3.2","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_time",'
    b'"arguments":{"tz":"JST"}}},{"function":{"name":"noop","arguments":{}}}]},"done":false}\n'
    b'{"model":"llama3.2","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,'
    b'"prompt_eval_count":16,"eval_count":5}\n'
)


def ollama_stream():
    ids = itertools.count()
    provider = OllamaProvider(
        "ollama", ProviderConfig(type="ollama"), clock=lambda: 1735000000.0, new_id=lambda: f"id{next(ids)}"
    )
    call = ChatCall(raw=b"{}", upstream_model="llama3.2", public_model="m", stream=True, include_usage=True)
    return provider.chat_stream(call)


def test_stream_ollama_whole_tool_calls_and_thinking_every_split():
    start = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_id0","type":"message",'
        b'"role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,'
        b'"usage":{"input_tokens":0,"output_tokens":0}}}\n\n'
    )
    text = (
        b"event: content_block_start\ndata: "
        b'{"type":"content_block_start","index":%d,"content_block":{"type":"text","text":""}}\n\n'
        b"event: content_block_delta\ndata: "
        b'{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":"It"}}\n\n'
        b"event: content_block_delta\ndata: "
        b'{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":" is warm."}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
    )
    tools = (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,"content_block":'
        b'{"type":"tool_use","id":"call_id1","name":"get_time","input":{}}}\n\n'
        b"event: content_block_delta\ndata: "
        b'{"type":"content_block_delta","index":%d,"delta":{"type":"input_json_delta",'
        b'"partial_json":"{\\"tz\\":\\"JST\\"}"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,"content_block":'
        b'{"type":"tool_use","id":"call_id2","name":"noop","input":{}}}\n\n'
        b"event: content_block_delta\ndata: "
        b'{"type":"content_block_delta","index":%d,"delta":{"type":"input_json_delta",'
        b'"partial_json":"{}"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
    )
    end = (
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
        b'"usage":{"input_tokens":16,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":5}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    # the thinking block comes first when the client enabled thinking, and is dropped otherwise
    thinking = (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
        b'{"type":"thinking","thinking":"","signature":""}}\n\n'
        b"event: content_block_delta\ndata: "
        b'{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    )
    plain = start + text % (0, 0, 0, 0) + tools % (1, 1, 1, 2, 2, 2) + end
    with_thinking = start + thinking + text % (1, 1, 1, 1) + tools % (2, 2, 2, 3, 3, 3) + end
    for pieces in every_split(OLLAMA_STREAM):
        assert relay(ollama_stream, pieces) == plain
        assert relay(ollama_stream, pieces, thinking=True) == with_thinking


def writer() -> AnthropicStreamWriter:
    return AnthropicStreamWriter("m", new_id=lambda: "gen")


def test_stream_mid_stream_error_ends_with_error_event():
    w = writer()
    out = w.render([Chunk(orjson.dumps({"id": "chatcmpl-1", "choices": [{"delta": {"content": "a"}}]}))])
    out += w.render([StreamError(OmenError(503, "The engine is overloaded.", type="server_error"))])
    assert out.endswith(
        b"event: error\ndata: "
        b'{"type":"error","error":{"type":"overloaded_error","message":"The engine is overloaded."}}\n\n'
    )
    assert b"message_stop" not in out and b"content_block_stop" not in out
    assert w.done and w.error is not None and w.error.status == 503
    # nothing after the end, and finish() adds nothing
    assert w.render([Chunk(b"{}"), StreamEnd()]) == b"" and w.finish(None) == b""


def test_stream_truncated_upstream_reports_an_error():
    data = oa_chunk({"content": "a"})
    out = relay(openai_stream, [data])  # no [DONE]: the translator reports the truncation
    assert out.count(b"event: error\n") == 1 and b"ended the stream early" in out
    w = writer()
    w.render([Chunk(orjson.dumps({"id": "x", "choices": [{"delta": {"content": "a"}}]}))])
    tail = w.finish(None)  # the relay's own finish when the events never ended the stream
    assert tail.startswith(b"event: error\n") and b'"type":"api_error"' in tail and b"without finishing" in tail


def test_stream_without_chunks_and_without_usage():
    w = writer()
    assert w.render([StreamEnd()]) == (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_gen","type":"message",'
        b'"role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,'
        b'"usage":{"input_tokens":0,"output_tokens":0}}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        b'"usage":{"input_tokens":0,"output_tokens":0}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


def test_stream_invalid_chunk_refusal_length_and_index_less_tool_calls():
    w = writer()
    out = w.render([Chunk(b"not json")])
    assert out.startswith(b"event: error\n") and w.done and w.error.status == 502

    def chunk(delta: dict, finish: str | None = None) -> Chunk:
        return Chunk(orjson.dumps({"id": "chatcmpl-r", "choices": [{"delta": delta, "finish_reason": finish}]}))

    w = writer()
    out = w.render([chunk({"refusal": "No."}), chunk({}, "stop"), StreamUsage(Usage(3, 1, 4)), StreamEnd()])
    assert b'"text_delta","text":"No."' in out and b'"stop_reason":"refusal"' in out
    assert (
        b'"usage":{"input_tokens":3,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}'
        in out
    )
    w = writer()
    out = w.render([chunk({"content": "a b"}, "length"), StreamEnd()])
    assert b'"stop_reason":"max_tokens"' in out
    # servers that omit the tool-call index: a new id starts a new block, fragments continue the last
    w = writer()
    out = w.render(
        [
            chunk({"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{"}}]}),
            chunk({"tool_calls": [{"function": {"arguments": "}"}}]}),
            chunk({"tool_calls": [{"id": "c2", "function": {"name": "g"}}]}),
            chunk({}, "stop"),
            StreamEnd(),
        ]
    )
    starts = [line for line in out.split(b"\n") if b'"content_block_start"' in line]
    assert len(starts) == 2 and b'"id":"c1"' in starts[0] and b'"id":"c2"' in starts[1]
    assert b'"index":0,"delta":{"type":"input_json_delta","partial_json":"}"}' in out
    assert b'"stop_reason":"tool_use"' in out
