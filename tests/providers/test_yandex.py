"""Yandex Foundation Models adapter: model URIs, request mapping (native and emulated tools), results,
cumulative-text streams on every byte split, the tool protocol, embeddings, models and errors."""

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
    Usage,
)
from omen.providers.yandex import YandexProvider
from omen.providers.yandex_models import chat_uri, embedding_uri, native_tools, static_model_ids
from omen.providers.yandex_tools import hold_point, parse_answer, render_calls, render_results, system_prompt

FOLDER = "b1gfolder"
KEY = "AQVNsecretkey123"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time"}}
NAMES = frozenset({"get_weather", "get_time"})


def yandex(**cfg: object) -> YandexProvider:
    counter = itertools.count()
    cfg.setdefault("api_key", KEY)
    cfg.setdefault("folder_id", FOLDER)
    return YandexProvider(
        "yandex", ProviderConfig(type="yandex", **cfg), clock=lambda: 1735000000.7, new_id=lambda: f"id{next(counter)}"
    )


def chat(
    body: dict, *, model: str = "yandexgpt/rc", stream: bool = False, include_usage: bool = False, decoded: bool = True
) -> ChatCall:
    raw = orjson.dumps({"model": "y", **body})
    req = decode_body(raw, ChatCompletionRequest) if decoded else None
    return ChatCall(
        raw=raw, upstream_model=model, public_model="y", stream=stream, include_usage=include_usage, request=req
    )


def sent(p: YandexProvider, call: ChatCall) -> dict:
    return orjson.loads(p.chat_request(call).body)


def refused(call_fn, *args) -> OmenError:
    with pytest.raises(OmenError) as exc:
        call_fn(*args)
    assert exc.value.status == 400
    return exc.value


def run(make, pieces: list[bytes]) -> list:
    t = make()
    events = []
    for piece in pieces:
        events += t.feed(piece)
    events += t.close()
    return [("error", e.error.status, e.error.message) if isinstance(e, StreamError) else e for e in events]


def every_split(make, data: bytes, want: list) -> None:
    assert run(make, [data]) == want
    for i in range(len(data) + 1):
        assert run(make, [data[:i], data[i:]]) == want, i
    assert run(make, [data[i : i + 1] for i in range(len(data))]) == want


def obj(text: str | None, status: str = "ALTERNATIVE_STATUS_PARTIAL", completion: int = 1, **extra: object) -> bytes:
    message: dict = {"role": "assistant"}
    if text is not None:
        message["text"] = text
    message.update(extra)
    usage = {"inputTextTokens": "12", "completionTokens": str(completion), "totalTokens": str(12 + completion)}
    result = {"alternatives": [{"message": message, "status": status}], "usage": usage, "modelVersion": "23.10.2024"}
    return orjson.dumps({"result": result})


# ---- model ids -----------------------------------------------------------------------------------------


def test_model_uris():
    assert chat_uri("yandexgpt/rc", FOLDER) == "gpt://b1gfolder/yandexgpt/rc"
    assert chat_uri("yandexgpt", FOLDER) == "gpt://b1gfolder/yandexgpt/latest"
    assert chat_uri("yandexgpt-lite/deprecated", FOLDER) == "gpt://b1gfolder/yandexgpt-lite/deprecated"
    assert chat_uri("gpt://other/yandexgpt-32k/latest", None) == "gpt://other/yandexgpt-32k/latest"
    assert chat_uri("ds://bt1abc", None) == "ds://bt1abc"
    assert embedding_uri("text-search-doc", FOLDER) == "emb://b1gfolder/text-search-doc/latest"
    assert embedding_uri("text-search-query/rc", FOLDER) == "emb://b1gfolder/text-search-query/rc"
    assert native_tools("gpt://f/yandexgpt/rc") and native_tools("gpt://f/llama/latest")
    assert not native_tools("gpt://f/yandexgpt-lite/latest") and not native_tools("ds://bt1abc")
    ids = static_model_ids()
    assert ids[:3] == ["yandexgpt/latest", "yandexgpt/rc", "yandexgpt/deprecated"]
    assert "yandexgpt-32k/rc" in ids and ids[-2:] == ["text-search-doc", "text-search-query"] and len(ids) == 11


def test_provider_prefix_routing():
    """``yandex/<model>/<version>`` routes with the rest of the id as the upstream model."""
    from omen.routing.table import ModelTable, Route

    table = ModelTable(provider_types={"yandex": "yandex"})
    assert table.resolve("yandex/yandexgpt/rc") == Route(
        "yandex/yandexgpt/rc", "yandex", "yandexgpt/rc", "provider-prefix"
    )
    assert table.resolve("yandex/gpt://f/llama/latest").upstream_model == "gpt://f/llama/latest"
    table.set_discovered("yandex", static_model_ids())
    assert table.resolve("yandex/yandexgpt/rc").via == "discovered"
    assert table.resolve("yandex/yandexgpt/rc").upstream_model == "yandexgpt/rc"


@pytest.mark.parametrize(
    ("fn", "model", "folder", "fragment"),
    [
        (chat_uri, "yandexgpt/rc/x", FOLDER, "not a Yandex model id"),
        (chat_uri, "/rc", FOLDER, "not a Yandex model id"),
        (chat_uri, "yandex gpt", FOLDER, "not a Yandex model id"),
        (chat_uri, "yandexgpt", None, "no folder_id"),
        (chat_uri, "text-search-doc", FOLDER, "embedding model"),
        (embedding_uri, "yandexgpt-lite", FOLDER, "text generation model"),
        (embedding_uri, "gpt://f/x/latest", FOLDER, "text generation model"),
    ],
)
def test_model_uri_errors(fn, model, folder, fragment):
    err = refused(fn, model, folder)
    assert fragment in err.message and err.param == "model"


# ---- chat request ------------------------------------------------------------------------------------


def test_chat_request_native_mapping():
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "here?"}]},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Kazan"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "+18"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "temperature": 0.2,
        "max_completion_tokens": 100,
        "max_tokens": 5,
        "reasoning_effort": "low",
        "tools": [WEATHER, CLOCK],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
        "top_p": 1,
        "n": 1,
        "presence_penalty": 0,
        "user": "ignored",
        "stop": "END",
    }
    p = yandex()
    req = p.chat_request(chat(body))
    assert (req.method, req.path, req.stream) == ("POST", "/foundationModels/v1/completion", False)
    assert req.headers == [
        ("Content-Type", "application/json"),
        ("Authorization", f"Api-Key {KEY}"),
        ("x-folder-id", FOLDER),
    ]
    assert orjson.loads(req.body) == {
        "modelUri": "gpt://b1gfolder/yandexgpt/rc",
        "completionOptions": {
            "stream": False,
            "temperature": 0.2,
            "maxTokens": "100",
            "reasoningOptions": {"mode": "ENABLED_HIDDEN"},
        },
        "messages": [
            {"role": "system", "text": "Be brief."},
            {"role": "system", "text": "Use metric units."},
            {"role": "user", "text": "Weather here?"},
            {"role": "assistant", "text": "Checking."},
            {
                "role": "assistant",
                "toolCallList": {
                    "toolCalls": [
                        {"functionCall": {"name": "get_weather", "arguments": {"city": "Kazan"}}},
                        {"functionCall": {"name": "get_time", "arguments": {}}},
                    ]
                },
            },
            {
                "role": "user",
                "toolResultList": {
                    "toolResults": [
                        {"functionResult": {"name": "get_weather", "content": "+18"}},
                        {"functionResult": {"name": "get_time", "content": "12:00"}},
                    ]
                },
            },
            {"role": "assistant", "text": "No."},
            {"role": "user", "text": "And tomorrow?"},
        ],
        "tools": [
            {
                "function": {
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "parameters": WEATHER["function"]["parameters"],
                }
            },
            {"function": {"name": "get_time"}},
        ],
        "toolChoice": {"mode": "REQUIRED"},
        "parallelToolCalls": False,
        "jsonObject": True,
    }


def test_chat_request_minimal_stream_iam_token_and_headers():
    p = yandex(api_key=None, iam_token="t1.iam", headers={"x-data-logging-enabled": "false"})
    call = chat({"messages": [{"role": "user", "content": "hi"}]}, model="yandexgpt", stream=True, decoded=False)
    req = p.chat_request(call)
    assert req.stream is True
    assert req.headers == [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer t1.iam"),
        ("x-folder-id", FOLDER),
        ("x-data-logging-enabled", "false"),
    ]
    assert req.body == (
        b'{"modelUri":"gpt://b1gfolder/yandexgpt/latest","completionOptions":{"stream":true},'
        b'"messages":[{"role":"user","text":"hi"}]}'
    )
    override = yandex(headers={"Authorization": "Api-Key other"}).chat_request(call).headers
    assert ("Authorization", "Api-Key other") in override and ("Authorization", f"Api-Key {KEY}") not in override


@pytest.mark.parametrize(
    ("choice", "want"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ({"type": "function", "function": {"name": "get_time"}}, {"functionName": "get_time"}),
    ],
)
def test_native_tool_choice(choice, want):
    body = {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER, CLOCK], "tool_choice": choice}
    out = sent(yandex(), chat(body, model="llama/latest"))
    assert out["toolChoice"] == want and len(out["tools"]) == 2 and "parallelToolCalls" not in out


def test_json_schema_and_reasoning_off():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
        "reasoning_effort": "minimal",
    }
    out = sent(yandex(), chat(body))
    assert out["jsonSchema"] == {"schema": schema}
    assert out["completionOptions"]["reasoningOptions"] == {"mode": "DISABLED"}
    text = {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "text"}}
    assert "jsonObject" not in sent(yandex(), chat(text))


def test_emulated_tools_request():
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Kazan?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Kazan"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "+18"},
            {"role": "function", "name": "get_time", "content": "12:00"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}],
            },
        ],
        "tools": [WEATHER, CLOCK],
        "parallel_tool_calls": False,
    }
    out = sent(yandex(), chat(body, model="yandexgpt-lite/latest"))
    functions = [
        {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER["function"]["parameters"]},
        {"name": "get_time"},
    ]
    assert "tools" not in out and "toolChoice" not in out and "parallelToolCalls" not in out
    assert out["messages"] == [
        {"role": "system", "text": "Be brief.\n\n" + system_prompt(functions, None, None, False)},
        {"role": "user", "text": "Weather in Kazan?"},
        {"role": "assistant", "text": "Let me check.\n\n" + render_calls([("get_weather", {"city": "Kazan"})])},
        {"role": "user", "text": render_results([("get_weather", "+18"), ("get_time", "12:00")])},
        {"role": "assistant", "text": render_calls([("get_time", {})])},
    ]
    prompt = out["messages"][0]["text"]
    assert '<tools>\n[\n  {\n    "name": "get_weather"' in prompt and "Call at most one tool per answer." in prompt
    assert render_results([("f", "x")]) == 'Tool results:\n```json\n{"tool_results":[{"name":"f","content":"x"}]}\n```'


def test_emulated_tool_choice_variants():
    base = {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER]}
    out = sent(yandex(), chat({**base, "tool_choice": "required"}, model="yandexgpt-32k/rc"))
    assert (
        out["messages"][0]["role"] == "system" and "You must call at least one tool now." in out["messages"][0]["text"]
    )
    forced = {**base, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    assert (
        "You must call the tool 'get_weather' now."
        in sent(yandex(), chat(forced, model="yandexgpt-lite"))["messages"][0]["text"]
    )
    none = sent(yandex(), chat({**base, "tool_choice": "none"}, model="yandexgpt-lite"))
    assert none["messages"] == [{"role": "user", "text": "x"}]
    empty_system = {
        "messages": [{"role": "system", "content": ""}, {"role": "user", "content": "x"}],
        "tools": [WEATHER],
    }
    out = sent(yandex(), chat(empty_system, model="yandexgpt-lite"))
    assert out["messages"][0]["text"].startswith("You can call tools") and len(out["messages"]) == 2


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
                    }
                ]
            },
            "messages[0].content[0]",
            "unsupported_capability",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "x"},
                            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                        ],
                    }
                ]
            },
            "messages[0].content[1]",
            "unsupported_capability",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}],
                    }
                ]
            },
            "messages[0].content[0]",
            "unsupported_capability",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]},
            "messages[0].content[0]",
            "unsupported_capability",
        ),
        ({"n": 2}, "n", "unsupported_parameter"),
        ({"top_p": 0.5}, "top_p", "unsupported_parameter"),
        ({"presence_penalty": 0.5}, "presence_penalty", "unsupported_parameter"),
        ({"frequency_penalty": -1}, "frequency_penalty", "unsupported_parameter"),
        ({"logit_bias": {"1": 2}}, "logit_bias", "unsupported_parameter"),
        ({"seed": 7}, "seed", "unsupported_parameter"),
        ({"logprobs": True}, "logprobs", "unsupported_parameter"),
        ({"top_logprobs": 2}, "top_logprobs", "unsupported_parameter"),
        ({"modalities": ["text", "audio"]}, "modalities", "unsupported_capability"),
        ({"web_search_options": {}}, "web_search_options", "unsupported_capability"),
        ({"functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
        ({"temperature": 1.5}, "temperature", None),
        ({"max_tokens": 0}, "max_tokens", None),
        ({"max_completion_tokens": -1}, "max_completion_tokens", None),
        ({"reasoning_effort": "extreme"}, "reasoning_effort", None),
        ({"response_format": {"type": "xml"}}, "response_format.type", None),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
            None,
        ),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]", "unsupported_parameter"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", None),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", None),
        ({"messages": [{"role": "tool", "tool_call_id": "ghost", "content": "x"}]}, "messages[0].tool_call_id", None),
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
            None,
        ),
    ],
)
def test_chat_request_refusals(body, param, code):
    body = {"messages": [{"role": "user", "content": "x"}], **body}
    for model in ("yandexgpt/latest", "yandexgpt-lite/latest"):
        err = refused(yandex().chat_request, chat(body, model=model))
        assert (err.param, err.code) == (param, code), err.message
        assert err.type == "invalid_request_error"
    if code == "unsupported_capability" and param.startswith("messages"):
        assert "text only" in err.message


# ---- chat result -------------------------------------------------------------------------------------


RESULT = (
    b'{"result":{"alternatives":[{"message":{"role":"assistant","text":"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82!"},'
    b'"status":"ALTERNATIVE_STATUS_FINAL"}],"usage":{"inputTextTokens":"19","completionTokens":"6","totalTokens":"25",'
    b'"completionTokensDetails":{"reasoningTokens":"2"}},"modelVersion":"23.10.2024"}}\n'
)


def test_chat_result_text_and_usage():
    result = yandex().chat_result(chat({"messages": []}), RESULT)
    assert result.usage == Usage(19, 6, 25, reasoning_tokens=2)
    assert orjson.loads(result.body) == {
        "id": "chatcmpl-id0",
        "object": "chat.completion",
        "created": 1735000000,
        "model": "yandexgpt/rc",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Привет!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 19,
            "completion_tokens": 6,
            "total_tokens": 25,
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("ALTERNATIVE_STATUS_FINAL", "stop"),
        ("ALTERNATIVE_STATUS_TRUNCATED_FINAL", "length"),
        ("ALTERNATIVE_STATUS_CONTENT_FILTER", "content_filter"),
        ("ALTERNATIVE_STATUS_TOOL_CALLS", "stop"),  # the status without any call: no tool_calls to look for
        ("ALTERNATIVE_STATUS_UNSPECIFIED", "stop"),
        (2, "length"),  # proto3 JSON parsers also accept enum numbers
        (4, "content_filter"),
    ],
)
def test_chat_result_finish_reasons(status, reason):
    body = orjson.dumps(
        {
            "result": {
                "alternatives": [{"message": {"text": "x"}, "status": status}],
                "usage": {"inputTextTokens": 1, "completionTokens": 2},
            }
        }
    )
    out = orjson.loads(yandex().chat_result(chat({"messages": []}), body).body)
    assert out["choices"][0]["finish_reason"] == reason
    assert out["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


def test_chat_result_native_tool_calls():
    body = (
        b'{"result":{"alternatives":[{"message":{"role":"assistant","toolCallList":{"toolCalls":['
        b'{"functionCall":{"name":"get_weather","arguments":{"city":"\xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0"}}},'
        b'{"functionCall":{"name":"get_time"}}]}},"status":"ALTERNATIVE_STATUS_TOOL_CALLS"}],'
        b'"usage":{"inputTextTokens":"30","completionTokens":"9","totalTokens":"39"},"modelVersion":"x"}}'
    )
    out = orjson.loads(yandex().chat_result(chat({"messages": [], "tools": [WEATHER]}), body).body)
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_id0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Москва"}'},
            },
            {"id": "call_id1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }


def emulated_result(text: str, **body: object) -> dict:
    call = chat({"messages": [], "tools": [WEATHER, CLOCK], **body}, model="yandexgpt-lite/latest")
    raw = orjson.dumps(
        {"result": {"alternatives": [{"message": {"text": text}, "status": "ALTERNATIVE_STATUS_FINAL"}]}}
    )
    return orjson.loads(yandex().chat_result(call, raw).body)["choices"][0]


def test_chat_result_emulated_tool_calls():
    block = (
        '```json\n{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Kazan"}}, '
        '{"name": "get_time", "arguments": {}}]}\n```'
    )
    choice = emulated_result("Let me check.\n" + block + "\n")
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Let me check.",
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_id0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Kazan"}'},
            },
            {"id": "call_id1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }
    single = emulated_result(block, parallel_tool_calls=False)
    assert [c["function"]["name"] for c in single["message"]["tool_calls"]] == ["get_weather"]
    assert single["message"]["content"] is None
    unknown = emulated_result('```json\n{"tool_calls": [{"name": "rm_rf", "arguments": {}}]}\n```')
    assert unknown["finish_reason"] == "stop" and "rm_rf" in unknown["message"]["content"]
    none = chat({"messages": [], "tools": [WEATHER], "tool_choice": "none"}, model="yandexgpt-lite")
    raw = orjson.dumps(
        {"result": {"alternatives": [{"message": {"text": block}, "status": "ALTERNATIVE_STATUS_FINAL"}]}}
    )
    assert orjson.loads(yandex().chat_result(none, raw).body)["choices"][0]["finish_reason"] == "stop"


def test_chat_result_stop_sequences():
    call = chat({"messages": [], "stop": ["\n\n", "END"]})
    body = orjson.dumps(
        {
            "result": {
                "alternatives": [
                    {"message": {"text": "one two END three"}, "status": "ALTERNATIVE_STATUS_TRUNCATED_FINAL"}
                ]
            }
        }
    )
    choice = orjson.loads(yandex().chat_result(call, body).body)["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("one two ", "stop")


def test_chat_result_shapes_and_errors():
    flat = b'{"alternatives":[{"message":{"text":"hi"},"status":"ALTERNATIVE_STATUS_FINAL"}]}'
    assert (
        orjson.loads(yandex().chat_result(chat({"messages": []}), flat).body)["choices"][0]["message"]["content"]
        == "hi"
    )
    two = obj("h", completion=1) + b"\n" + obj("hi", "ALTERNATIVE_STATUS_FINAL", completion=2) + b"\n"
    out = orjson.loads(yandex().chat_result(chat({"messages": []}), two).body)
    assert out["choices"][0]["message"]["content"] == "hi" and out["usage"]["completion_tokens"] == 2
    in_band = b'{"error":{"grpcCode":8,"httpCode":429,"message":"quota exceeded","httpStatus":"Too Many Requests"}}'
    with pytest.raises(OmenError) as exc:
        yandex().chat_result(chat({"messages": []}), in_band)
    assert (exc.value.status, exc.value.code) == (429, "rate_limit_exceeded") and "quota exceeded" in exc.value.message
    for bad in (b"<html>", b'{"result":{"alternatives":[]}}', b"[1,2]\n[3]"):
        with pytest.raises(OmenError) as exc:
            yandex().chat_result(chat({"messages": []}), bad)
        assert exc.value.status == 502 and exc.value.code == "upstream_invalid_response"


# ---- the tool protocol ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('```json\n{"tool_calls":[{"name":"get_time","arguments":{}}]}\n```', ("", [("get_time", {})])),
        ('{"tool_calls":[{"name":"get_time"}]}', ("", [("get_time", {})])),
        (
            '```\n{"name":"get_weather","arguments":"{\\"city\\":\\"Oslo\\"}"}\n```',
            ("", [("get_weather", {"city": "Oslo"})]),
        ),
        (
            'Sure.\n```json\n{"tool_calls":[{"name":"get_time","parameters":{"tz":"UTC"}}]}\n``` Done',
            ("Sure.\n Done", [("get_time", {"tz": "UTC"})]),
        ),
        (
            'See:\n```python\nprint(1)\n```\n```json\n{"tool_calls":[{"name":"get_time","arguments":{}}]}\n```',
            ("See:\n```python\nprint(1)\n```", [("get_time", {})]),
        ),
        ('Ok ```json\n{"tool_calls":[{"name":"get_time","arguments":{}}]}', ("Ok", [("get_time", {})])),
        ('```json\n{"answer": 42}\n```', None),
        ('```json\n{"tool_calls": []}\n```', None),
        ('```json\n{"tool_calls":[{"name":"get_time","arguments":[1]}]}\n```', None),
        ('```json\n{"tool_calls":[{"name":"nope","arguments":{}}]}\n```', None),
        ("```json\n{not json}\n```", None),
        ("plain text", None),
    ],
)
def test_parse_answer(text, want):
    assert parse_answer(text, NAMES) == want


@pytest.mark.parametrize(
    ("text", "point"),
    [
        ("Hello world", 11),
        ("", 0),
        ("   ", 0),
        ('  {"tool', 2),
        ("Hello `", 6),
        ("Hello ``", 6),
        ("Hello ```", 6),
        ("Hello ```js", 6),
        ("Hello ```json\n", 6),
        ('Hello ```json\n{"tool_calls"', 6),
        ("Hello ```python\nprint(1)", 24),
        ("Hello ```python\nprint(1)\n``` and more", 37),
        ('A ```json\n{"a": 1}\n``` B', 24),
        ('A ```json\n{"tool_calls":[{"name":"get_time"}]}\n``` B', 2),
        ("Use `x` here", 12),
    ],
)
def test_hold_point(text, point):
    assert hold_point(text, NAMES) == point


def test_hold_point_agrees_with_parse_answer():
    """Every answer prefix: what may be streamed is never part of what becomes a tool call."""
    answers = [
        'Let me check.\n```json\n{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Kazan"}}]}\n```',
        '{"tool_calls": [{"name": "get_time", "arguments": {}}]}',
        "Code:\n```js\nlet a = {b: 1}\n```\nDone `x`.",
        'Data ```json\n{"a": [1, 2]}\n``` end',
    ]
    for answer in answers:
        parsed = parse_answer(answer, NAMES)
        content = parsed[0] if parsed else answer
        for i in range(len(answer) + 1):
            ready = answer[: hold_point(answer[:i], NAMES)]
            assert content.startswith(ready.rstrip()) or ready.strip() == "", (answer, i, ready)


# ---- streams -------------------------------------------------------------------------------------------


HEAD = b'{"id":"chatcmpl-id0","object":"chat.completion.chunk","created":1735000000,"model":"yandexgpt/rc","choices":'


def delta(d: bytes, finish: bytes = b"null", head: bytes = HEAD) -> Chunk:
    return Chunk(head + b'[{"index":0,"delta":' + d + b',"logprobs":null,"finish_reason":' + finish + b"}]}")


def usage_chunk(prompt: int, completion: int, head: bytes = HEAD) -> Chunk:
    body = orjson.dumps({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
    return Chunk(head + b'[],"usage":' + body + b"}")


TEXT_STREAM = b"".join(
    line + b"\n"
    for line in (
        obj("Привет", completion=1),
        obj("Привет! Как", completion=3),
        obj('Привет! Как "дела"', completion=5),
        obj('Привет! Как "дела"?', "ALTERNATIVE_STATUS_FINAL", completion=6),
    )
)


def text_events(include_usage: bool) -> list:
    events = [
        delta(b'{"role":"assistant","content":""}'),
        delta('{"content":"Привет"}'.encode()),
        delta('{"content":"! Как"}'.encode()),
        delta('{"content":" \\"дела\\""}'.encode()),
        delta(b'{"content":"?"}'),
        delta(b"{}", b'"stop"'),
    ]
    if include_usage:
        events.append(usage_chunk(12, 6))
    return [*events, StreamUsage(Usage(12, 6, 18)), StreamEnd()]


def stream(body: dict | None = None, *, model: str = "yandexgpt/rc", include_usage: bool = False):
    body = body or {"messages": []}
    return lambda: yandex().chat_stream(chat(body, model=model, stream=True, include_usage=include_usage))


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_text_every_split(include_usage):
    every_split(stream(include_usage=include_usage), TEXT_STREAM, text_events(include_usage))


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(TEXT_STREAM)), max_size=40), crlf=st.booleans())
def test_stream_random_splits(cuts, crlf):
    data = TEXT_STREAM.replace(b"\n", b"\r\n") if crlf else TEXT_STREAM
    points = [0, *sorted(c * len(data) // len(TEXT_STREAM) for c in cuts), len(data)]
    assert run(stream(), [data[a:b] for a, b in itertools.pairwise(points)]) == text_events(False)


def test_stream_chunks_are_openai_json():
    for event in run(stream(include_usage=True), [TEXT_STREAM]):
        if isinstance(event, Chunk):
            chunk = orjson.loads(event.data)
            assert chunk["object"] == "chat.completion.chunk" and chunk["id"] == "chatcmpl-id0"


def test_stream_rewritten_and_shrinking_text_is_never_resent():
    data = b"\n".join(
        [
            obj("Hello wor", completion=2),
            obj("Hello", completion=2),  # shrank: nothing to send
            obj("Hello world", completion=3),  # extends what was sent again
            obj("Goodbye", completion=3),  # rewritten: cannot be taken back, nothing sent
            obj("Goodbye!", "ALTERNATIVE_STATUS_CONTENT_FILTER", completion=4),
        ]
    )
    assert run(stream(), [data]) == [
        delta(b'{"role":"assistant","content":""}'),
        delta(b'{"content":"Hello wor"}'),
        delta(b'{"content":"ld"}'),
        delta(b"{}", b'"content_filter"'),
        StreamUsage(Usage(12, 4, 16)),
        StreamEnd(),
    ]


def test_stream_length_usage_only_object_and_unterminated_last_line():
    data = b'{"result":{"usage":{"inputTextTokens":"3","completionTokens":"0","totalTokens":"3"}}}\n\n' + obj(
        "cut", "ALTERNATIVE_STATUS_TRUNCATED_FINAL", completion=1
    )
    assert run(stream(), [data]) == [
        delta(b'{"role":"assistant","content":""}'),
        delta(b'{"content":"cut"}'),
        delta(b"{}", b'"length"'),
        StreamUsage(Usage(12, 1, 13)),
        StreamEnd(),
    ]


def test_stream_native_tool_calls():
    data = (
        obj("", completion=0)
        + b"\n"
        + obj(
            None,
            "ALTERNATIVE_STATUS_TOOL_CALLS",
            completion=9,
            toolCallList={
                "toolCalls": [
                    {"functionCall": {"name": "get_weather", "arguments": {"city": "Kazan"}}},
                    {"functionCall": {"name": "get_time", "arguments": {}}},
                ]
            },
        )
        + b"\n"
    )
    every_split(
        stream({"messages": [], "tools": [WEATHER, CLOCK]}),
        data,
        [
            delta(b'{"role":"assistant","content":""}'),
            delta(
                b'{"tool_calls":[{"index":0,"id":"call_id1","type":"function","function":{"name":"get_weather",'
                b'"arguments":"{\\"city\\":\\"Kazan\\"}"}},{"index":1,"id":"call_id2","type":"function",'
                b'"function":{"name":"get_time","arguments":"{}"}}]}'
            ),
            delta(b"{}", b'"tool_calls"'),
            StreamUsage(Usage(12, 9, 21)),
            StreamEnd(),
        ],
    )


LITE_HEAD = HEAD.replace(b"yandexgpt/rc", b"yandexgpt-lite")
EMULATED_ANSWER = [
    "Let",
    "Let me check.\n`",
    "Let me check.\n```js",
    'Let me check.\n```json\n{"tool_calls": [{"name":',
    'Let me check.\n```json\n{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Kazan"}}]}\n``',
    'Let me check.\n```json\n{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Kazan"}}]}\n```',
]


def test_stream_emulated_tool_calls_every_split():
    lines = [obj(t, completion=i + 1) for i, t in enumerate(EMULATED_ANSWER[:-1])]
    lines.append(obj(EMULATED_ANSWER[-1], "ALTERNATIVE_STATUS_FINAL", completion=20))
    data = b"\n".join(lines) + b"\n"
    every_split(
        stream({"messages": [], "tools": [WEATHER]}, model="yandexgpt-lite"),
        data,
        [
            delta(b'{"role":"assistant","content":""}', head=LITE_HEAD),
            delta(b'{"content":"Let"}', head=LITE_HEAD),
            delta(b'{"content":" me check.\\n"}', head=LITE_HEAD),
            delta(
                b'{"tool_calls":[{"index":0,"id":"call_id1","type":"function","function":{"name":"get_weather",'
                b'"arguments":"{\\"city\\":\\"Kazan\\"}"}}]}',
                head=LITE_HEAD,
            ),
            delta(b"{}", b'"tool_calls"', head=LITE_HEAD),
            StreamUsage(Usage(12, 20, 32)),
            StreamEnd(),
        ],
    )


def test_stream_emulated_plain_code_block_is_released():
    answer = 'Use:\n```json\n{"a": 1}\n``` ok'
    lines = [obj(answer[:k], completion=k) for k in (10, 16, 24)]
    lines.append(obj(answer, "ALTERNATIVE_STATUS_FINAL", completion=30))
    events = run(stream({"messages": [], "tools": [WEATHER]}, model="yandexgpt-lite"), [b"\n".join(lines)])
    text = "".join(
        orjson.loads(e.data)["choices"][0]["delta"].get("content", "") for e in events if isinstance(e, Chunk)
    )
    assert text == answer
    finish = [orjson.loads(e.data)["choices"][0]["finish_reason"] for e in events if isinstance(e, Chunk)]
    assert finish[-1] == "stop"


def test_stream_stop_sequence_held_across_objects_and_ends_early():
    lines = [obj("one two", completion=2), obj("one two EN", completion=3), obj("one two END three", completion=4)]
    data = b"\n".join(lines) + b"\n" + obj("never read", "ALTERNATIVE_STATUS_FINAL") + b"\n"
    t = yandex().chat_stream(chat({"messages": [], "stop": "END"}, stream=True))
    events = t.feed(data)
    assert events == [
        delta(b'{"role":"assistant","content":""}'),
        delta(b'{"content":"one two"}'),
        delta(b'{"content":" "}'),
        delta(b"{}", b'"stop"'),
        StreamUsage(Usage(12, 4, 16)),
        StreamEnd(),
    ]
    assert t.feed(b"more") == [] and t.close() == []


def test_stream_error_line_truncation_and_garbage():
    error = (
        b'{"error":{"grpcCode":14,"httpCode":503,"message":"Service is not available now",'
        b'"httpStatus":"Service Unavailable","details":[]}}'
    )
    events = run(stream(), [obj("Hi") + b"\n" + error + b"\n" + obj("Hi there") + b"\n"])
    assert events[:2] == [delta(b'{"role":"assistant","content":""}'), delta(b'{"content":"Hi"}')]
    assert events[2] == ("error", 503, "Upstream provider 'yandex' reported: Service is not available now")
    assert len(events) == 3
    plain = run(stream(), [b'{"error":{"code":8,"message":"too many"}}\n'])
    assert plain[-1][:2] == ("error", 429)
    events = run(stream(), [TEXT_STREAM[: TEXT_STREAM.rindex(b'{"result"')]])
    assert events[:-1] == text_events(False)[:4]
    assert events[-1][:2] == ("error", 502) and "final status" in events[-1][2]
    assert run(stream(), [b"<html>\n"]) == [("error", 502, run(stream(), [b"<html>\n"])[0][2])]


def test_stream_redacts_credentials_in_errors():
    error = b'{"error":{"grpcCode":16,"httpCode":401,"message":"Unknown api key \'' + KEY.encode() + b"'\"}}\n"
    events = run(stream(), [error])
    assert events[-1][:2] == ("error", 401) and KEY not in events[-1][2] and "***" in events[-1][2]


def test_completion_stream_and_result():
    def completion(body: dict, stream: bool = False) -> CompletionCall:
        raw = orjson.dumps({"model": "y", **body})
        return CompletionCall(
            raw=raw,
            upstream_model="yandexgpt-lite/rc",
            public_model="y",
            stream=stream,
            include_usage=True,
            request=decode_body(raw, CompletionRequest),
        )

    req = yandex().completion_request(
        completion({"prompt": ["Say hi"], "max_tokens": 3, "temperature": 0, "stop": "!"})
    )
    assert orjson.loads(req.body) == {
        "modelUri": "gpt://b1gfolder/yandexgpt-lite/rc",
        "completionOptions": {"stream": False, "temperature": 0.0, "maxTokens": "3"},
        "messages": [{"role": "user", "text": "Say hi"}],
    }
    for body, param in (
        ({"prompt": "x", "suffix": "y"}, "suffix"),
        ({"prompt": "x", "echo": True}, "echo"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": "x", "best_of": 2}, "best_of"),
    ):
        assert refused(yandex().completion_request, completion(body)).param == param
    out = orjson.loads(yandex().completion_result(completion({"prompt": "x", "stop": "!"}), RESULT).body)
    assert out["choices"] == [{"text": "Привет", "index": 0, "logprobs": None, "finish_reason": "stop"}]
    assert out["object"] == "text_completion" and out["usage"]["prompt_tokens"] == 19
    head = b'{"id":"cmpl-id0","object":"text_completion","created":1735000000,"model":"yandexgpt-lite/rc","choices":'
    events = run(lambda: yandex().completion_stream(completion({"prompt": "x"}, stream=True)), [TEXT_STREAM])
    assert events[0] == Chunk(head + '[{"text":"Привет","index":0,"logprobs":null,"finish_reason":null}]}'.encode())
    assert events[4] == Chunk(head + b'[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]}')
    assert events[5] == usage_chunk(12, 6, head) and events[-1] == StreamEnd()


# ---- embeddings ----------------------------------------------------------------------------------------


def embedding(body: dict, model: str = "text-search-doc") -> EmbeddingCall:
    raw = orjson.dumps({"model": "e", **body})
    return EmbeddingCall(raw=raw, upstream_model=model, public_model="e", request=decode_body(raw, EmbeddingRequest))


EMBED = b'{"embedding":[0.5,-1.25,3.0],"numTokens":"8","modelVersion":"06.12.2023"}'


def test_embeddings():
    req = yandex().embeddings_request(embedding({"input": ["hello"], "dimensions": 256}, "text-search-query/rc"))
    assert (req.method, req.path) == ("POST", "/foundationModels/v1/textEmbedding")
    assert orjson.loads(req.body) == {"modelUri": "emb://b1gfolder/text-search-query/rc", "text": "hello", "dim": "256"}
    result = yandex().embeddings_result(embedding({"input": "hello"}), EMBED)
    assert result.usage == Usage(prompt_tokens=8, total_tokens=8)
    assert orjson.loads(result.body) == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.25, 3.0]}],
        "model": "text-search-doc",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    b64 = orjson.loads(yandex().embeddings_result(embedding({"input": "x", "encoding_format": "base64"}), EMBED).body)
    assert b64["data"][0]["embedding"] == base64.b64encode(struct.pack("<3f", 0.5, -1.25, 3.0)).decode()
    with pytest.raises(OmenError) as exc:
        yandex().embeddings_result(embedding({"input": "x"}), b"nope")
    assert exc.value.status == 502


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"input": ["a", "b"]}, "input", "one text per request"),
        ({"input": [1, 2]}, "input", "token-id"),
        ({"input": "a", "dimensions": 0}, "dimensions", "at least 1"),
    ],
)
def test_embeddings_refusals(body, param, fragment):
    err = refused(yandex().embeddings_request, embedding(body))
    assert err.param == param and fragment in err.message


# ---- models, endpoints, errors -------------------------------------------------------------------------


def test_models_and_endpoints():
    p = yandex()
    assert p.models_request() is None and YandexProvider.static_models is True
    models = p.models_result(b"")
    assert [m.id for m in models] == static_model_ids() and {m.owned_by for m in models} == {"yandex"}
    assert p.endpoints() == ["https://llm.api.cloud.yandex.net"]
    assert yandex(base_url="http://127.0.0.1:9/foundationModels/v1/").endpoints() == ["http://127.0.0.1:9"]


def grpc(grpc_code: int, http: int, message: str) -> bytes:
    return orjson.dumps(
        {"error": {"grpcCode": grpc_code, "httpCode": http, "message": message, "httpStatus": "x", "details": []}}
    )


@pytest.mark.parametrize(
    ("status", "body", "want"),
    [
        (
            400,
            grpc(3, 400, "Specified folder ID 'a' does not match with service account folder ID 'b'"),
            ("invalid_request_error", "invalid_argument", None),
        ),
        (401, grpc(16, 401, "Unknown api key 'AQVN***'"), ("authentication_error", "unauthenticated", None)),
        (403, grpc(7, 403, "Permission denied"), ("permission_error", "permission_denied", None)),
        (
            404,
            grpc(5, 404, "Model gpt://f/nope/latest not found"),
            ("invalid_request_error", "model_not_found", "model"),
        ),
        (429, grpc(8, 429, "quota limit exceed"), ("rate_limit_error", "rate_limit_exceeded", None)),
        (500, grpc(13, 500, "Internal error"), ("server_error", None, None)),
        (503, grpc(14, 503, "Service is not available now"), ("server_error", None, None)),
        (404, b'{"code":5,"message":"Not Found","details":[]}', ("invalid_request_error", "not_found", None)),
        (400, b'{"code":3,"message":"bad","details":[]}', ("invalid_request_error", "invalid_argument", None)),
    ],
)
def test_errors(status, body, want):
    err = yandex().error(status, [("Retry-After", "3")], body)
    assert (err.status, err.type, err.code, err.param) == (status, *want)
    fields = orjson.loads(body)
    assert err.message == fields.get("error", fields)["message"]
    assert err.headers == ({"retry-after": "3"} if status in (429, 503) else {})


def test_error_not_json_and_redaction():
    err = yandex().error(502, [], b"<html>bad gateway</html>")
    assert err.status == 502 and "bad gateway" in err.message and err.type == "server_error"
    leak = yandex().error(401, [], grpc(16, 401, f"Unknown api key '{KEY}'"))
    assert KEY not in err.message and KEY not in leak.message and leak.message == "Unknown api key '***'"
    iam = yandex(api_key=None, iam_token="t1.secret-iam").error(400, [], b"token t1.secret-iam is bad (not json)")
    assert "t1.secret-iam" not in iam.message
