"""Bedrock adapter: Converse request mapping, SigV4 signing and credentials, results, ConverseStream
event-stream translation (every byte split), Titan embeddings and AWS errors."""

from __future__ import annotations

import base64
import itertools
import struct
import time
from urllib.parse import urlsplit

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from omen.api.chat import ChatCompletionRequest
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
from omen.providers.bedrock import BedrockProvider, model_path
from tests.fakes import bedrock_wire as wire
from tests.fakes.common import ApiError

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()
KEY = wire.credential("AKIDTEST", "test/secret+key", "session-token-1")
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]


def bedrock(environ: dict[str, str] | None = None, **cfg: object) -> BedrockProvider:
    counter = itertools.count()
    settings_ = {"region": "us-east-1", "access_key_id": "AKIDTEST", "secret_access_key": "test/secret+key", **cfg}
    settings_ = {k: v for k, v in settings_.items() if v is not None}
    return BedrockProvider(
        "bedrock",
        ProviderConfig(type="bedrock", **settings_),
        environ=environ or {},
        clock=lambda: 1735000000.7,
        new_id=lambda: f"id{next(counter)}",
    )


def chat(body: dict, *, stream: bool = False, include_usage: bool = False, decoded: bool = True) -> ChatCall:
    raw = orjson.dumps({"model": "claude", **body})
    req = decode_body(raw, ChatCompletionRequest) if decoded else None
    return ChatCall(
        raw=raw, upstream_model=MODEL, public_model="claude", stream=stream, include_usage=include_usage, request=req
    )


def sent(req: UpstreamRequest) -> dict:
    return orjson.loads(req.body)


def converse(body: dict) -> dict:
    return sent(bedrock().chat_request(chat(body)))


def user(text: str = "hi") -> dict:
    return {"role": "user", "content": text}


# ---- request mapping ---------------------------------------------------------------------------------


def test_chat_request_mapping():
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                ],
            },
            {"role": "user", "content": "And in Paris?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"X"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "Thanks"},
        ],
        "max_completion_tokens": 256,
        "max_tokens": 99,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "seed": 7,
        "user": "u1",
        "tools": TOOLS,
        "tool_choice": "auto",
    }
    req = bedrock().chat_request(chat(body))
    assert (req.method, req.path, req.stream) == (
        "POST",
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
        False,
    )
    assert req.headers == [("Content-Type", "application/json")]
    assert sent(req) == {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "Weather here?"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}},
                    {"text": "And in Paris?"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"text": "Checking."},
                    {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "X"}}},
                    {"toolUse": {"toolUseId": "call_2", "name": "get_time", "input": {}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}], "status": "success"}},
                    {"toolResult": {"toolUseId": "call_2", "content": [{"text": "noon"}], "status": "success"}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "system": [{"text": "Be brief."}, {"text": "Use metric units."}],
        "inferenceConfig": {"maxTokens": 256, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        "toolConfig": {
            "tools": [
                {"toolSpec": {"name": "get_weather", "description": "Get weather", "inputSchema": {"json": WEATHER}}},
                {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
            ],
            "toolChoice": {"auto": {}},
        },
    }


def test_stream_request_path_accept_and_undecoded_call():
    req = bedrock(headers={"X-Trace": "t1"}).chat_request(
        chat({"messages": [user("hi")], "stop": ["a", "b"], "max_tokens": 5}, stream=True, decoded=False)
    )
    assert req.path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream" and req.stream
    assert req.headers == [("Content-Type", "application/json"), ("X-Trace", "t1")]
    assert sent(req) == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "inferenceConfig": {"maxTokens": 5, "stopSequences": ["a", "b"]},
    }


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("amazon.titan-embed-text-v2:0", "/model/amazon.titan-embed-text-v2%3A0/converse"),
        (
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-2-1b-instruct-v1:0",
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.meta.llama3-2-1b-instruct-v1%3A0"
            "/converse",
        ),
    ],
)
def test_model_id_is_one_encoded_path_segment(model, path):
    assert model_path(model, "converse") == path


@pytest.mark.parametrize(
    ("choice", "want"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "get_time"}}, {"tool": {"name": "get_time"}}),
        (None, None),
    ],
)
def test_tool_choice(choice, want):
    body = {"messages": [user()], "tools": TOOLS}
    if choice is not None:
        body["tool_choice"] = choice
    config = converse(body)["toolConfig"]
    assert config.get("toolChoice") == want and len(config["tools"]) == 2


def test_tool_choice_none_omits_tools_unless_the_history_needs_them():
    assert "toolConfig" not in converse({"messages": [user()], "tools": TOOLS, "tool_choice": "none"})
    history = [
        user("weather?"),
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    open_schema = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}
    assert converse({"messages": history, "tools": TOOLS, "tool_choice": "none"})["toolConfig"] == open_schema
    assert converse({"messages": history})["toolConfig"] == open_schema  # no tools sent: declared from history


def test_json_modes():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    body = converse(
        {
            "messages": [user()],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "reply", "description": "R", "schema": schema},
            },
        }
    )
    assert body["outputConfig"] == {
        "textFormat": {
            "type": "json_schema",
            "structure": {"jsonSchema": {"schema": orjson.dumps(schema).decode(), "name": "reply", "description": "R"}},
        }
    }
    assert "toolConfig" not in body
    body = converse({"messages": [user()], "response_format": {"type": "json_object"}})
    assert body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "json_response",
                    "description": "Give the complete answer as one JSON object.",
                    "inputSchema": {"json": {"type": "object"}},
                }
            }
        ],
        "toolChoice": {"tool": {"name": "json_response"}},
    }
    assert "outputConfig" not in body
    assert "outputConfig" not in converse({"messages": [user()], "response_format": {"type": "text"}})


def test_consecutive_assistant_turns_merge_and_empty_ones_vanish():
    body = converse(
        {
            "messages": [
                user("a"),
                {"role": "assistant", "content": [{"type": "text", "text": "b"}, {"type": "refusal", "refusal": "no"}]},
                {"role": "assistant", "content": ""},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "assistant", "content": "c"},
            ]
        }
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "a"}]},
        {"role": "assistant", "content": [{"text": "b"}, {"text": "no"}, {"text": "c"}]},
    ]


@pytest.mark.parametrize(
    ("url", "fmt"),
    [
        ("data:image/jpg;base64,", "jpeg"),
        ("data:image/GIF;base64,", "gif"),
        ("data:image/webp;charset=x;base64,", "webp"),
    ],
)
def test_image_formats(url, fmt):
    body = converse(
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url + PNG}}]}]}
    )
    assert body["messages"][0]["content"] == [{"image": {"format": fmt, "source": {"bytes": PNG}}}]


@pytest.mark.parametrize(
    ("url", "fragment", "code"),
    [
        ("https://example.com/cat.png", "data: URIs", "image_url_not_supported"),
        ("ftp://example.com/cat.png", "must be a data: URI", None),
        ("data:image/png," + PNG, "base64-encoded", None),
        ("data:image/bmp;base64," + PNG, "Unsupported image type 'image/bmp'", None),
        ("data:image/png;base64,@@@", "not contain valid base64", None),
        ("data:image/png;base64,", "not contain valid base64", None),
    ],
)
def test_image_errors(url, fragment, code):
    with pytest.raises(OmenError) as exc:
        converse({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})
    assert exc.value.status == 400 and fragment in exc.value.message
    assert (exc.value.param, exc.value.code) == ("messages[0].content[0].image_url.url", code)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
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
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]},
                    user(),
                ]
            },
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]},
            "messages[0].function_call",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_request_errors(extra, param):
    with pytest.raises(OmenError) as exc:
        converse({"messages": [user()], **extra})
    assert exc.value.status == 400 and exc.value.param == param, exc.value.message


def test_ignored_hints_and_zero_penalties():
    body = converse(
        {
            "messages": [user()],
            "seed": 1,
            "presence_penalty": 0,
            "parallel_tool_calls": False,
            "metadata": {"a": "b"},
            "store": False,
            "service_tier": "auto",
            "modalities": ["text"],
            "n": 1,
        }
    )
    assert body == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}


def test_completions_are_refused_and_models_not_listed():
    provider = bedrock()
    call = CompletionCall(raw=b'{"model":"m","prompt":"x"}', upstream_model=MODEL, public_model="m")
    for op in (provider.completion_request, provider.completion_stream):
        with pytest.raises(OmenError) as exc:
            op(call)
        assert exc.value.status == 400 and exc.value.code == "unsupported_endpoint"
    assert provider.models_request() is None and provider.models_result(b"{}") == []


def test_endpoints_and_config_errors():
    assert bedrock().endpoints() == ["https://bedrock-runtime.us-east-1.amazonaws.com"]
    assert bedrock(region="eu-central-1").endpoints() == ["https://bedrock-runtime.eu-central-1.amazonaws.com"]
    assert bedrock(base_url="http://127.0.0.1:9/").endpoints() == ["http://127.0.0.1:9"]
    assert BedrockProvider.inline_images is True
    with pytest.raises(ValueError, match="set region"):
        bedrock(region=None)
    with pytest.raises(ValueError, match="set secret_access_key"):
        bedrock(secret_access_key=None)
    with pytest.raises(ValueError, match="set access_key_id"):
        bedrock(access_key_id=None)


# ---- signing and credentials ----------------------------------------------------------------------------


def signed(provider: BedrockProvider, body: dict | None = None) -> tuple[dict[str, str], UpstreamRequest, str]:
    """What the transport sends: the request's headers plus authorize()'s, and the URL."""
    req = provider.chat_request(chat(body or {"messages": [user()]}))
    url = provider.endpoints()[0] + req.path
    headers = {k.lower(): v for k, v in [*req.headers, *provider.authorize(req, url, None)]}
    headers["host"] = urlsplit(url).netloc
    return headers, req, url


def test_authorize_signs_with_sigv4_verified_by_botocore():
    headers, req, url = signed(bedrock(session_token="session-token-1"))
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    assert (
        "/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;"
        in (headers["authorization"])
    )
    assert headers["x-amz-security-token"] == "session-token-1"
    assert abs(time.mktime(time.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")) - time.mktime(time.gmtime())) < 60
    target = urlsplit(url).path
    wire.verify_signature(KEY, "POST", target, headers, req.body)  # raises unless valid
    with pytest.raises(ApiError) as exc:  # another body than the one signed
        wire.verify_signature(KEY, "POST", target, headers, req.body + b" ")
    assert exc.value.status == 400
    with pytest.raises(ApiError) as exc:  # the path signed is the encoded one
        wire.verify_signature(KEY, "POST", target.replace("%3A", ":"), headers, req.body)
    assert exc.value.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException")
    with pytest.raises(ApiError) as exc:  # another secret
        wire.verify_signature(wire.credential("AKIDTEST", "other", "session-token-1"), "POST", target, headers)
    assert exc.value.status == 403


def test_authorize_without_session_token_and_with_api_key():
    headers, _, _ = signed(bedrock())
    assert (
        "x-amz-security-token" not in headers
        and "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date," in (headers["authorization"])
    )
    provider = bedrock(api_key="bedrock-api-key-1", access_key_id=None, secret_access_key=None)
    req = provider.chat_request(chat({"messages": [user()]}))
    assert provider.authorize(req, "https://x" + req.path, None) == [("Authorization", "Bearer bedrock-api-key-1")]
    env_key = bedrock({"AWS_BEARER_TOKEN_BEDROCK": "k2"}, access_key_id=None, secret_access_key=None)
    assert env_key.authorize(req, "https://x" + req.path, None) == [("Authorization", "Bearer k2")]


def access_key(provider: BedrockProvider) -> tuple[str, str | None]:
    headers, _, _ = signed(provider)
    return headers["authorization"].split("Credential=")[1].split("/")[0], headers.get("x-amz-security-token")


def test_credentials_from_environment_and_shared_files(tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text(
        "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = filesecret\n\n"
        "[work]\naws_access_key_id = AKIDWORK\naws_secret_access_key = worksecret\naws_session_token = worktoken\n"
    )
    config = tmp_path / "config"
    config.write_text("[profile cfg]\naws_access_key_id = AKIDCFG\naws_secret_access_key = cfgsecret\n")
    files = {"AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_CONFIG_FILE": str(config)}
    env_keys = {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "envsecret", "AWS_SESSION_TOKEN": "envtoken"}
    no_keys = {"access_key_id": None, "secret_access_key": None}
    assert access_key(bedrock({**files, **env_keys}, **no_keys)) == ("AKIDENV", "envtoken")
    assert access_key(bedrock(files, **no_keys)) == ("AKIDFILE", None)
    assert access_key(bedrock({**files, "AWS_PROFILE": "work"}, **no_keys)) == ("AKIDWORK", "worktoken")
    # a named profile wins over the environment's keys (as botocore does); config-file profiles work too
    assert access_key(bedrock({**files, **env_keys}, profile="work", **no_keys)) == ("AKIDWORK", "worktoken")
    assert access_key(bedrock(files, profile="cfg", **no_keys)) == ("AKIDCFG", None)
    # explicit keys win over everything
    assert access_key(bedrock({**files, **env_keys}, profile="work")) == ("AKIDTEST", None)


def test_no_credentials_is_a_startup_error(tmp_path, monkeypatch):
    # a listener standing in for the EC2/ECS metadata endpoints: resolving credentials must not contact it
    import socket

    metadata = socket.create_server(("127.0.0.1", 0))
    metadata.setblocking(False)
    url = f"http://127.0.0.1:{metadata.getsockname()[1]}"
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
    files = {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")}
    files |= {"AWS_EC2_METADATA_SERVICE_ENDPOINT": url, "AWS_CONTAINER_CREDENTIALS_FULL_URI": url}
    with pytest.raises(ValueError, match="no AWS credentials found") as exc:
        bedrock(files, access_key_id=None, secret_access_key=None, profile="missing")
    assert "profile 'missing'" in str(exc.value)
    with pytest.raises(BlockingIOError):  # no connection was ever made to the metadata endpoint
        metadata.accept()
    metadata.close()


# ---- results -------------------------------------------------------------------------------------------


def converse_answer(content: list[dict], stop: str = "end_turn", usage: dict | None = None) -> bytes:
    usage = usage or {"inputTokens": 10, "outputTokens": 3, "totalTokens": 13}
    return orjson.dumps(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": 12},
        }
    )


def test_chat_result_text_reasoning_and_cached_usage():
    body = converse_answer(
        [
            {"reasoningContent": {"reasoningText": {"text": "Think.", "signature": "sig"}}},
            {"text": "Hello"},
            {"text": " there"},
        ],
        usage={
            "inputTokens": 10,
            "outputTokens": 3,
            "totalTokens": 13,
            "cacheReadInputTokens": 100,
            "cacheWriteInputTokens": 7,
        },
    )
    result = bedrock().chat_result(chat({"messages": [user()]}), body)
    assert result.body == (
        b'{"id":"chatcmpl-id0","object":"chat.completion","created":1735000000,'
        b'"model":"anthropic.claude-3-5-sonnet-20240620-v1:0","choices":[{"index":0,"message":{"role":"assistant",'
        b'"content":"Hello there","refusal":null,"reasoning_content":"Think."},"logprobs":null,'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":117,"completion_tokens":3,"total_tokens":120,'
        b'"prompt_tokens_details":{"cached_tokens":100}}}'
    )
    assert result.usage == Usage(prompt_tokens=117, completion_tokens=3, total_tokens=120, cached_tokens=100)


def test_chat_result_tool_calls():
    body = converse_answer(
        [
            {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_b", "name": "get_time", "input": {}}},
        ],
        stop="tool_use",
    )
    out = orjson.loads(bedrock().chat_result(chat({"messages": [user()], "tools": TOOLS}), body).body)
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "tooluse_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {"id": "tooluse_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


def test_chat_result_json_object_tool_becomes_content():
    body = converse_answer(
        [{"toolUse": {"toolUseId": "t", "name": "json_response", "input": {"a": [1, 2]}}}], "tool_use"
    )
    call = chat({"messages": [user()], "response_format": {"type": "json_object"}})
    choice = orjson.loads(bedrock().chat_result(call, body).body)["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": '{"a":[1,2]}', "refusal": None}
    assert choice["finish_reason"] == "stop"


FINISH = [
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"),
    ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"),
    ("content_filtered", "content_filter"),
    ("malformed_model_output", "stop"),
    ("malformed_tool_use", "stop"),
    ("some_future_reason", "stop"),
]


@pytest.mark.parametrize(("stop", "finish"), FINISH)
def test_finish_reasons(stop, finish):
    out = orjson.loads(bedrock().chat_result(chat({"messages": [user()]}), converse_answer([{"text": "x"}], stop)).body)
    assert out["choices"][0]["finish_reason"] == finish
    frames = [wire.event_frame("messageStop", {"stopReason": stop}), wire.event_frame("metadata", {"usage": {}})]
    events = run(lambda: bedrock().chat_stream(chat({"messages": [user()]}, stream=True)), [b"".join(frames)])
    assert orjson.loads(events[1].data)["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"output": 5}', b'{"usage": {"inputTokens": "x"}}'])
def test_chat_result_invalid_body(body):
    with pytest.raises(OmenError) as exc:
        bedrock().chat_result(chat({"messages": [user()]}), body)
    assert (exc.value.status, exc.value.code) == (502, "upstream_invalid_response")


# ---- ConverseStream -------------------------------------------------------------------------------------


def run(make, pieces: list[bytes]) -> list:
    t = make()
    events = []
    for piece in pieces:
        events += t.feed(piece)
    events += t.close()
    return [
        ("error", e.error.status, e.error.code, e.error.message) if isinstance(e, StreamError) else e for e in events
    ]


def ev(event_type: str, payload: dict) -> bytes:
    return wire.event_frame(event_type, payload)


SAMPLE = [
    ev("messageStart", {"role": "assistant"}),
    ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me check"}, "p": "abcdefghij"}),
    ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " the weather."}}),
    ev("contentBlockStop", {"contentBlockIndex": 0}),
    ev("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"reasoningContent": {"text": "hmm"}}}),
    ev("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"reasoningContent": {"signature": "sig"}}}),
    ev("contentBlockStop", {"contentBlockIndex": 1}),
    ev(
        "contentBlockStart",
        {
            "contentBlockIndex": 2,
            "start": {"toolUse": {"name": "get_weather", "toolUseId": "tooluse_A", "type": "tool_use"}},
        },
    ),
    ev("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": ""}}}),
    ev("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"city": "Pa'}}}),
    ev("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": 'ris"}'}}}),
    ev("contentBlockStop", {"contentBlockIndex": 2}),
    ev(
        "contentBlockStart",
        {"contentBlockIndex": 3, "start": {"toolUse": {"name": "get_time", "toolUseId": "tooluse_B"}}},
    ),
    ev("contentBlockDelta", {"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{}"}}}),
    ev("contentBlockStop", {"contentBlockIndex": 3}),
    ev("messageStop", {"stopReason": "tool_use"}),
    ev(
        "metadata",
        {
            "usage": {
                "inputTokens": 412,
                "outputTokens": 58,
                "totalTokens": 470,
                "cacheReadInputTokens": 100,
                "cacheWriteInputTokens": 20,
            },
            "metrics": {"latencyMs": 1530},
            "p": "abc",
        },
    ),
]
SAMPLE_BYTES = b"".join(SAMPLE)
HEAD = (
    b'{"id":"chatcmpl-id0","object":"chat.completion.chunk","created":1735000000,'
    b'"model":"anthropic.claude-3-5-sonnet-20240620-v1:0","choices":'
)


def chunk(delta: bytes, finish: bytes = b"null") -> Chunk:
    return Chunk(HEAD + b'[{"index":0,"delta":' + delta + b',"logprobs":null,"finish_reason":' + finish + b"}]}")


SAMPLE_USAGE = Usage(prompt_tokens=532, completion_tokens=58, total_tokens=590, cached_tokens=100)


def expected(include_usage: bool) -> list:
    out = [
        chunk(b'{"role":"assistant","content":""}'),
        chunk(b'{"content":"Let me check"}'),
        chunk(b'{"content":" the weather."}'),
        chunk(b'{"reasoning_content":"hmm"}'),
        chunk(
            b'{"tool_calls":[{"index":0,"id":"tooluse_A","type":"function","function":{"name":"get_weather","arguments":""}}]}'
        ),
        chunk(b'{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\": \\"Pa"}}]}'),
        chunk(b'{"tool_calls":[{"index":0,"function":{"arguments":"ris\\"}"}}]}'),
        chunk(
            b'{"tool_calls":[{"index":1,"id":"tooluse_B","type":"function","function":{"name":"get_time","arguments":""}}]}'
        ),
        chunk(b'{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}'),
        chunk(b"{}", b'"tool_calls"'),
    ]
    if include_usage:
        out.append(
            Chunk(
                HEAD + b'[],"usage":{"prompt_tokens":532,"completion_tokens":58,"total_tokens":590,'
                b'"prompt_tokens_details":{"cached_tokens":100}}}'
            )
        )
    return [*out, StreamUsage(SAMPLE_USAGE), StreamEnd()]


def sample_stream(include_usage: bool = False, json_object: bool = False):
    body: dict = {"messages": [user()]}
    if json_object:
        body["response_format"] = {"type": "json_object"}
    return lambda: bedrock().chat_stream(chat(body, stream=True, include_usage=include_usage))


def test_fake_frames_parse_with_botocore():
    buffer = EventStreamBuffer()
    buffer.add_data(SAMPLE_BYTES)
    messages = list(buffer)
    assert [m.headers[":event-type"] for m in messages][:3] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
    ]
    assert all(m.headers[":message-type"] == "event" for m in messages) and len(messages) == len(SAMPLE)
    assert orjson.loads(messages[-2].payload) == {"stopReason": "tool_use"}
    # the layout and CRCs of providers.md's verified example frame
    stop = ev("messageStop", {"stopReason": "end_turn"})
    assert (len(stop), stop[:12].hex(), stop[-4:].hex()) == (122, "0000007a00000051ca2c4665", "5fbf09fc")
    exception = wire.exception_frame("throttlingException", "slow down")
    buffer.add_data(exception)
    message = next(buffer)
    assert message.headers == {
        ":exception-type": "throttlingException",
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert message.payload == b'{"message":"slow down"}'


def test_chat_stream_every_split():
    # botocore's parser costs ~0.1 ms a frame here, so every split runs once, with the usage chunk on
    want = expected(True)
    assert run(sample_stream(False), [SAMPLE_BYTES]) == expected(False)
    for cut in range(1, len(SAMPLE_BYTES)):
        assert run(sample_stream(True), [SAMPLE_BYTES[:cut], SAMPLE_BYTES[cut:]]) == want, cut


def test_chat_stream_byte_by_byte_and_frame_by_frame():
    want = expected(True)
    assert run(sample_stream(True), [SAMPLE_BYTES[i : i + 1] for i in range(len(SAMPLE_BYTES))]) == want
    assert run(sample_stream(True), SAMPLE) == want


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SAMPLE_BYTES)), max_size=12))
def test_chat_stream_random_splits(cuts):
    points = sorted(set(cuts))
    pieces = [SAMPLE_BYTES[a:b] for a, b in zip([0, *points], [*points, len(SAMPLE_BYTES)], strict=True)]
    assert run(sample_stream(True), pieces) == expected(True)


def test_chat_stream_chunks_are_valid_openai_json():
    for event in expected(True):
        if isinstance(event, Chunk):
            data = orjson.loads(event.data)
            assert data["object"] == "chat.completion.chunk" and data["id"] == "chatcmpl-id0"


def test_chat_stream_json_object_tool_input_is_content():
    frames = [
        ev("messageStart", {"role": "assistant"}),
        ev(
            "contentBlockStart",
            {"contentBlockIndex": 0, "start": {"toolUse": {"name": "json_response", "toolUseId": "t"}}},
        ),
        ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"a":'}}}),
        ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "1}"}}}),
        ev("contentBlockStop", {"contentBlockIndex": 0}),
        ev("messageStop", {"stopReason": "tool_use"}),
        ev("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2}}),
    ]
    assert run(sample_stream(json_object=True), [b"".join(frames)]) == [
        chunk(b'{"role":"assistant","content":""}'),
        chunk(b'{"content":"{\\"a\\":"}'),
        chunk(b'{"content":"1}"}'),
        chunk(b"{}", b'"stop"'),
        StreamUsage(Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)),
        StreamEnd(),
    ]


def test_chat_stream_metadata_before_message_stop_and_no_message_start():
    frames = [
        ev("contentBlockDelta", {"delta": {"text": "x"}}),
        ev("metadata", {"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}),
        ev("messageStop", {"stopReason": "max_tokens"}),
    ]
    assert run(sample_stream(), [b"".join(frames)]) == [
        chunk(b'{"role":"assistant","content":""}'),
        chunk(b'{"content":"x"}'),
        chunk(b"{}", b'"length"'),
        StreamUsage(Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)),
        StreamEnd(),
    ]


@pytest.mark.parametrize(
    ("frame", "status", "code", "fragment"),
    [
        (wire.exception_frame("throttlingException", "Too many tokens"), 429, "rate_limit_exceeded", "Too many tokens"),
        (wire.exception_frame("modelStreamErrorException", "model broke"), 502, "upstream_model_error", "model broke"),
        (wire.exception_frame("internalServerException", "oops"), 500, None, "InternalServerException: oops"),
        (wire.exception_frame("serviceUnavailableException", "busy"), 503, "overloaded", "busy"),
        (wire.exception_frame("validationException", "bad input"), 400, None, "bad input"),
        (wire.exception_frame("somethingNewException", "new"), 502, None, "SomethingNewException: new"),
        (
            wire.frame([(":message-type", "error"), (":error-code", "InternalFailure"), (":error-message", "x")], b""),
            502,
            "upstream_error",
            "reported InternalFailure: x",
        ),
    ],
)
def test_chat_stream_exception_frames(frame, status, code, fragment):
    events = run(sample_stream(), [SAMPLE[0], SAMPLE[1], frame, SAMPLE[2]])
    assert events[:2] == expected(False)[:2]
    (_, got_status, got_code, message), *rest = events[2:]
    assert (got_status, got_code, rest) == (status, code, []) and fragment in message


def test_chat_stream_truncated_corrupt_and_invalid():
    # truncated: before messageStop, between messageStop and metadata, mid-frame
    assert run(sample_stream(), SAMPLE[:3])[-1][:3] == ("error", 502, "upstream_stream_truncated")
    assert "no messageStop event" in run(sample_stream(), SAMPLE[:3])[-1][3]
    assert "no metadata event" in run(sample_stream(), SAMPLE[:-1])[-1][3]
    assert run(sample_stream(), [SAMPLE_BYTES[:-3]])[-1][:3] == ("error", 502, "upstream_stream_truncated")
    # a flipped payload byte fails the message CRC; a flipped prelude byte the prelude CRC
    corrupt = bytearray(SAMPLE[1])
    corrupt[-6] ^= 1
    events = run(sample_stream(), [SAMPLE[0], bytes(corrupt), SAMPLE[2]])
    assert events[1][:3] == ("error", 502, "upstream_invalid_response") and "ChecksumMismatch" in events[1][3]
    assert len(events) == 2
    corrupt = bytearray(SAMPLE[1])
    corrupt[2] ^= 1
    assert run(sample_stream(), [bytes(corrupt)])[0][:3] == ("error", 502, "upstream_invalid_response")
    # a payload that is not JSON, tool input without its start, bad usage
    bad = wire.frame([(":message-type", "event"), (":event-type", "contentBlockDelta")], b"{nope")
    assert run(sample_stream(), [bad])[0][:3] == ("error", 502, "upstream_invalid_response")
    orphan = ev("contentBlockDelta", {"contentBlockIndex": 4, "delta": {"toolUse": {"input": "{}"}}})
    events = run(sample_stream(), [orphan])
    assert (
        events[-1][:3] == ("error", 502, "upstream_invalid_response")
        and "before its contentBlockStart" in events[-1][3]
    )
    usage = ev("metadata", {"usage": {"inputTokens": "many"}})
    assert run(sample_stream(), [SAMPLE[-2], usage])[-1][:3] == ("error", 502, "upstream_invalid_response")


def test_chat_stream_survives_odd_json_and_header_types():
    frames = [
        wire.frame([(":message-type", b"event"), (":event-type", b"messageStart")], b'{"role":"assistant"}'),
        ev("contentBlockStart", {"contentBlockIndex": [1], "start": {"toolUse": {"name": "f", "toolUseId": "t"}}}),
        ev("contentBlockDelta", {"contentBlockIndex": {"x": 1}, "delta": {"text": "hi"}}),
        ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": "text"}),
        ev("messageStop", {"stopReason": ["end_turn"]}),
        ev("metadata", {"usage": None}),
    ]
    events = run(sample_stream(), [b"".join(frames)])
    assert events == [
        chunk(b'{"role":"assistant","content":""}'),
        chunk(b'{"tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"f","arguments":""}}]}'),
        chunk(b'{"content":"hi"}'),
        chunk(b"{}", b'"stop"'),
        StreamUsage(Usage()),
        StreamEnd(),
    ]
    exception = wire.frame(
        [(":message-type", b"exception"), (":exception-type", b"throttlingException")], b'["not an object"]'
    )
    assert run(sample_stream(), [exception])[0][:3] == ("error", 429, "rate_limit_exceeded")


def test_chat_stream_ignores_input_after_the_end_and_unknown_events():
    extra = ev("futureEvent", {"x": 1}) + ev("contentBlockStop", {"contentBlockIndex": 0})
    frames = [SAMPLE[0], extra, *SAMPLE[1:3], struct.pack(">I", 0)]  # junk after the end is never parsed
    t = bedrock().chat_stream(chat({"messages": [user()]}, stream=True))
    events = []
    for piece in [*frames[:-1], SAMPLE[-2], SAMPLE[-1], frames[-1], SAMPLE[1]]:
        events += t.feed(piece)
    assert t.close() == [] and events[-1] == StreamEnd() and len(events) == 6


# ---- embeddings ----------------------------------------------------------------------------------------


def embed_call(body: dict, decoded: bool = True) -> EmbeddingCall:
    raw = orjson.dumps({"model": "titan", **body})
    req = decode_body(raw, EmbeddingRequest) if decoded else None
    return EmbeddingCall(raw=raw, upstream_model="amazon.titan-embed-text-v2:0", public_model="titan", request=req)


def test_embeddings_request():
    req = bedrock().embeddings_request(embed_call({"input": "hello world", "dimensions": 256}))
    assert (req.method, req.path) == ("POST", "/model/amazon.titan-embed-text-v2%3A0/invoke")
    assert req.headers == [("Content-Type", "application/json"), ("Accept", "application/json")]
    assert sent(req) == {"inputText": "hello world", "dimensions": 256}
    assert sent(bedrock().embeddings_request(embed_call({"input": ["one"]}, decoded=False))) == {"inputText": "one"}


@pytest.mark.parametrize("value", [["a", "b"], [[1, 2]], [1], [], ""])
def test_embeddings_request_errors(value):
    with pytest.raises(OmenError) as exc:
        bedrock().embeddings_request(embed_call({"input": value}))
    assert (exc.value.status, exc.value.param) == (400, "input")


def test_embeddings_result_float_and_base64():
    body = orjson.dumps({"embedding": [0.5, -0.25], "inputTextTokenCount": 2, "embeddingsByType": {}})
    result = bedrock().embeddings_result(embed_call({"input": "x"}), body)
    assert orjson.loads(result.body) == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
        "model": "amazon.titan-embed-text-v2:0",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    assert result.usage == Usage(prompt_tokens=2, total_tokens=2)
    b64 = orjson.loads(bedrock().embeddings_result(embed_call({"input": "x", "encoding_format": "base64"}), body).body)
    assert struct.unpack("<2f", base64.b64decode(b64["data"][0]["embedding"])) == (0.5, -0.25)
    with pytest.raises(OmenError) as exc:
        bedrock().embeddings_result(embed_call({"input": "x"}), b'{"vectors": []}')
    assert exc.value.status == 502


# ---- errors --------------------------------------------------------------------------------------------


def aws(name: str) -> list[tuple[str, str]]:
    return [("x-amzn-ErrorType", f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/")]


@pytest.mark.parametrize(
    ("status", "headers", "body", "want"),
    [
        (400, aws("ValidationException"), b'{"message":"bad"}', (400, "invalid_request_error", None, None)),
        (
            400,
            aws("ServiceQuotaExceededException"),
            b'{"message":"q"}',
            (429, "insufficient_quota", "insufficient_quota", None),
        ),
        (
            403,
            aws("AccessDeniedException"),
            b'{"message":"no access"}',
            (403, "permission_error", "access_denied", None),
        ),
        (
            404,
            aws("ResourceNotFoundException"),
            b'{"message":"gone"}',
            (404, "invalid_request_error", "model_not_found", "model"),
        ),
        (408, aws("ModelTimeoutException"), b'{"message":"slow"}', (408, "timeout", "upstream_timeout", None)),
        (
            424,
            aws("ModelErrorException"),
            b'{"message":"m","originalStatusCode":500}',
            (502, "server_error", "upstream_model_error", None),
        ),
        (
            429,
            aws("ThrottlingException"),
            b'{"message":"slow down"}',
            (429, "rate_limit_error", "rate_limit_exceeded", None),
        ),
        (
            429,
            aws("ModelNotReadyException"),
            b'{"message":"warming"}',
            (429, "rate_limit_error", "model_not_ready", None),
        ),
        (500, aws("InternalServerException"), b'{"Message":"boom"}', (500, "server_error", None, None)),
        (503, aws("ServiceUnavailableException"), b'{"message":"busy"}', (503, "server_error", "overloaded", None)),
        (
            400,
            [],
            b'{"__type":"com.amazon.coral.validate#ValidationException","message":"x"}',
            (400, "invalid_request_error", None, None),
        ),
        (409, aws("ConflictException"), b'{"message":"c"}', (409, "invalid_request_error", None, None)),
        (502, [], b"<html>Bad Gateway</html>", (502, "server_error", None, None)),
        (500, [], b"", (500, "server_error", None, None)),
    ],
)
def test_errors(status, headers, body, want):
    err = bedrock().error(status, headers, body)
    assert (err.status, err.type, err.code, err.param) == want


def test_error_messages_and_retry_after():
    err = bedrock().error(429, [*aws("ThrottlingException"), ("Retry-After", "3")], b'{"message":"Too many requests"}')
    assert err.message == "Bedrock ThrottlingException: Too many requests" and err.headers == {"retry-after": "3"}
    assert "not JSON" in bedrock().error(502, [], b"<html>").message
    assert "returned HTTP 500 with an empty body" in bedrock().error(500, [], b"").message
    assert (
        bedrock()
        .error(503, aws("ServiceUnavailableException"), b"")
        .message.endswith("returned HTTP 503 (ServiceUnavailableException).")
    )


@pytest.mark.parametrize(
    "name",
    [
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
    ],
)
def test_auth_errors_become_401_without_echoing_aws_text(name):
    secret_text = "The Canonical String ... x-amz-security-token:session-token-1 ..."
    err = bedrock().error(403, aws(name), orjson.dumps({"message": secret_text}))
    assert (err.status, err.type, err.code) == (401, "authentication_error", "upstream_auth_failed")
    assert "session-token-1" not in err.message and name in err.message and "'bedrock'" in err.message
