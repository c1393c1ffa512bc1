"""Translation matrix for the Bedrock provider: the official ``openai`` SDK talks to a real OMEN, which
talks to the fake Bedrock Runtime (tests/fakes/bedrock_wire.py) in Converse JSON and binary event-stream
frames. Every request OMEN sends is checked against its SigV4 signature (recomputed with botocore from the
raw target and body), and each test asserts the exact Converse body the fake recorded."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest

from omen.config.schema import ProviderConfig
from omen.providers.base import ChatCall
from omen.providers.bedrock import BedrockProvider
from tests.conftest import running_omen
from tests.fakes import Fault, open_fake_upstream
from tests.fakes import bedrock_wire as wire
from tests.media.image_server import JPEG as IMAGE_JPEG
from tests.media.image_server import PNG as IMAGE_PNG
from tests.media.image_server import open_image_server

TOKEN = "matrix-session-token-0001"
KEY = wire.credential(token=TOKEN)
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
TARGET = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
HI = [{"role": "user", "content": "hello there"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
}
WEATHER_SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Current weather",
        "inputSchema": {"json": WEATHER["function"]["parameters"]},
    }
}
TIME_SPEC = {"toolSpec": {"name": "get_time", "inputSchema": {"json": TIME["function"]["parameters"]}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n matrix image").decode()


@dataclass
class Matrix:
    up: Any  # the fake Bedrock Runtime
    omen: Any  # the running gateway
    client: openai.AsyncOpenAI


def provider_config(up: Any, **overrides: Any) -> dict[str, Any]:
    cfg = {
        "type": "bedrock",
        "region": "us-east-1",
        "base_url": up.base_url,
        "access_key_id": wire.ACCESS_KEY_ID,
        "secret_access_key": wire.SECRET_ACCESS_KEY,
        "session_token": TOKEN,
        **overrides,
    }
    return {k: v for k, v in cfg.items() if v is not None}


@asynccontextmanager
async def omen_with_bedrock(
    tmp_path: Any,
    *,
    key: str = KEY,
    provider: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[Matrix]:
    async with open_fake_upstream("bedrock", api_key=key, **options) as up:
        cfg = {
            "routing": {"retries": 0},  # one upstream error -> one client error: translation, not retries
            **(extra or {}),
            "providers": {"aws": provider_config(up, **(provider or {}))},
            "models": {
                "claude": {"provider": "aws", "model": MODEL},
                "titan": {"provider": "aws", "model": "amazon.titan-embed-text-v2:0"},
            },
        }
        async with running_omen(cfg, tmp_path=tmp_path) as omen:
            client = openai.AsyncOpenAI(base_url=omen.v1, api_key="client-key", max_retries=0)
            try:
                yield Matrix(up, omen, client)
            finally:
                await client.close()


def sent(up: Any, target: str = TARGET, *, stream: bool = False) -> dict[str, Any]:
    """The last request OMEN sent upstream, its SigV4 signature verified; returns its JSON body."""
    rec = up.last_request
    assert rec.method == "POST"
    assert rec.target == (target.replace("/converse", "/converse-stream") if stream else target)
    wire.verify_recorded(rec, KEY)  # signature over the raw target, headers and body hash
    assert rec.headers["x-amz-security-token"] == TOKEN
    assert rec.headers["content-type"] == "application/json"
    invoke = target.endswith("/invoke")  # only InvokeModel names the response type, as botocore does
    assert rec.headers.get("accept") == ("application/json" if invoke else None)
    signed = rec.headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert (
        signed
        == ("accept;" if invoke else "") + "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
    )
    assert "client-key" not in str(rec.headers)  # the client's key never reaches AWS
    return rec.json


async def collect(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


def streamed_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finish_of(chunks: list[Any]) -> str | None:
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(reasons) == 1
    return reasons[0]


def user_turn(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}


# ---- text and streams --------------------------------------------------------------------------------


async def test_matrix_text(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        raw = await m.client.chat.completions.with_raw_response.create(
            model="claude", messages=HI, temperature=0.5, top_p=0.9, max_tokens=50, user="u-1"
        )
        reply = raw.parse()
        assert reply.choices[0].message.content == "Echo: hello there"
        assert reply.choices[0].finish_reason == "stop"
        assert reply.model == MODEL and reply.id.startswith("chatcmpl-")
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (2, 3, 5)
        assert reply.usage.prompt_tokens_details is None
        assert raw.headers["x-omen-provider"] == "aws"
        assert sent(m.up) == {
            "messages": [user_turn("hello there")],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.5, "topP": 0.9},
        }


async def test_matrix_stream(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        stream = await m.client.chat.completions.create(
            model="claude", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        chunks = await collect(stream)
        assert chunks[0].choices[0].delta.role == "assistant"
        assert [c.choices[0].delta.content for c in chunks[1:4]] == ["Echo:", " hello", " there"]
        assert streamed_text(chunks) == "Echo: hello there"
        assert finish_of(chunks) == "stop"
        assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 2 + 3
        assert len({c.id for c in chunks}) == 1
        assert sent(m.up, stream=True) == {"messages": [user_turn("hello there")]}
        # without include_usage no usage chunk reaches the client, but the access log still counts tokens
        raw = await m.client.chat.completions.with_raw_response.create(model="claude", messages=HI, stream=True)
        chunks = await collect(raw.parse())
        assert all(c.usage is None for c in chunks) and streamed_text(chunks) == "Echo: hello there"
        record = await m.omen.log_for(raw.headers["x-request-id"])
        assert (record["prompt_tokens"], record["completion_tokens"]) == (2, 3)


async def test_matrix_arn_model_id(tmp_path) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
    async with omen_with_bedrock(tmp_path) as m:
        reply = await m.client.chat.completions.create(model=f"aws/{arn}", messages=HI)
        assert reply.choices[0].message.content == "Echo: hello there"
        target = "/model/" + arn.replace(":", "%3A").replace("/", "%2F") + "/converse"
        assert sent(m.up, target) == {"messages": [user_turn("hello there")]}
        assert m.up.last_request.params == {"model": arn}


# ---- tools -------------------------------------------------------------------------------------------


async def test_matrix_tools(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        reply = await m.client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "Paris"}],
            tools=[WEATHER, TIME],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        [call] = choice.message.tool_calls
        assert call.id.startswith("tooluse_") and call.type == "function"
        assert (call.function.name, orjson.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
        assert sent(m.up) == {
            "messages": [user_turn("Paris")],
            "toolConfig": {"tools": [WEATHER_SPEC, TIME_SPEC], "toolChoice": {"tool": {"name": "get_weather"}}},
        }
        await m.client.chat.completions.create(model="claude", messages=HI, tools=[WEATHER], tool_choice="required")
        assert sent(m.up)["toolConfig"] == {"tools": [WEATHER_SPEC], "toolChoice": {"any": {}}}
        reply = await m.client.chat.completions.create(model="claude", messages=HI, tools=[WEATHER], tool_choice="none")
        assert reply.choices[0].message.content == "Echo: hello there" and "toolConfig" not in sent(m.up)


async def test_matrix_streamed_tools(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        stream = await m.client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "Paris"}], tools=[WEATHER], stream=True
        )
        chunks = await collect(stream)
        deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
        first, *rest = deltas
        assert (first.index, first.type, first.function.name, first.function.arguments) == (
            0,
            "function",
            "get_weather",
            "",
        )
        assert first.id.startswith("tooluse_")
        assert len(rest) == 3  # the arguments arrive in pieces (the empty first fragment is dropped)
        assert all(d.index == 0 and d.id is None and d.function.name is None for d in rest)
        assert orjson.loads("".join(d.function.arguments for d in rest)) == {"city": "Paris"}
        assert streamed_text(chunks) == ""
        assert finish_of(chunks) == "tool_calls"
        assert sent(m.up, stream=True) == {"messages": [user_turn("Paris")], "toolConfig": {"tools": [WEATHER_SPEC]}}


async def test_matrix_parallel_tool_calls(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path, tool_calls=2) as m:
        messages = [{"role": "user", "content": "Oslo"}]
        reply = await m.client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER, TIME])
        calls = reply.choices[0].message.tool_calls
        assert [c.function.name for c in calls] == ["get_weather", "get_time"]
        assert [orjson.loads(c.function.arguments) for c in calls] == [{"city": "Oslo"}, {"tz": "Oslo"}]
        assert len({c.id for c in calls}) == 2
        stream = await m.client.chat.completions.create(
            model="claude", messages=messages, tools=[WEATHER, TIME], stream=True
        )
        chunks = await collect(stream)
        deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
        by_index: dict[int, list[Any]] = {}
        for d in deltas:
            by_index.setdefault(d.index, []).append(d)
        assert sorted(by_index) == [0, 1]
        for index, pieces in by_index.items():
            assert pieces[0].id == calls[index].id and pieces[0].function.name == calls[index].function.name
            assert "".join(p.function.arguments for p in pieces) == calls[index].function.arguments
        assert finish_of(chunks) == "tool_calls"


async def test_matrix_tool_result_round_trip(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path, tool_calls=2) as m:
        first = await m.client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "Oslo"}], tools=[WEATHER, TIME]
        )
        calls = first.choices[0].message.tool_calls
        messages = [
            {"role": "user", "content": "Oslo"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": calls[0].id, "content": "18C, sunny"},
            {"role": "tool", "tool_call_id": calls[1].id, "content": "noon"},
        ]
        reply = await m.client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER, TIME])
        assert reply.choices[0].message.content == "Echo: 18C, sunny noon"
        assert reply.choices[0].finish_reason == "stop"
        assert sent(m.up) == {
            "messages": [
                user_turn("Oslo"),
                {
                    "role": "assistant",
                    "content": [
                        {"toolUse": {"toolUseId": calls[0].id, "name": "get_weather", "input": {"city": "Oslo"}}},
                        {"toolUse": {"toolUseId": calls[1].id, "name": "get_time", "input": {"tz": "Oslo"}}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "toolResult": {
                                "toolUseId": calls[0].id,
                                "content": [{"text": "18C, sunny"}],
                                "status": "success",
                            }
                        },
                        {"toolResult": {"toolUseId": calls[1].id, "content": [{"text": "noon"}], "status": "success"}},
                    ],
                },
            ],
            "toolConfig": {"tools": [WEATHER_SPEC, TIME_SPEC]},
        }
        # the same history without tools: Converse still needs a toolConfig, declared from the history
        reply = await m.client.chat.completions.create(model="claude", messages=messages)
        assert reply.choices[0].message.content == "Echo: 18C, sunny noon"
        assert sent(m.up)["toolConfig"] == {
            "tools": [
                {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}},
                {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object"}}}},
            ]
        }


# ---- images, JSON mode, stop sequences, usage ----------------------------------------------------------


async def test_matrix_image(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        content = [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        ]
        reply = await m.client.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
        assert reply.choices[0].message.content == "Echo: What is this?"
        assert sent(m.up)["messages"] == [
            {
                "role": "user",
                "content": [{"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}],
            }
        ]
        with pytest.raises(openai.BadRequestError) as exc:
            bad = [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]
            await m.client.chat.completions.create(model="claude", messages=[{"role": "user", "content": bad}])
        assert exc.value.body["param"] == "messages[0].content[0].image_url.url"


def images_config(images: Any) -> dict[str, Any]:
    return {"images": {"allow_hosts": [images.origin]}}  # the image server is on 127.0.0.1


async def test_matrix_image_url(tmp_path) -> None:
    """Converse takes no image URLs: the gateway fetches them (SSRF-checked) and sends the bytes."""
    async with open_image_server() as images, omen_with_bedrock(tmp_path, extra=images_config(images)) as m:
        content = [
            {"type": "text", "text": "Compare"},
            {"type": "image_url", "image_url": {"url": images.url("/cat.png")}},
            {"type": "image_url", "image_url": {"url": images.url("/photo.jpg")}},  # served as image/png
        ]
        messages = [{"role": "user", "content": content}]
        reply = await m.client.chat.completions.create(model="claude", messages=messages)
        assert reply.choices[0].message.content == "Echo: Compare"
        blocks = [
            {"text": "Compare"},
            {"image": {"format": "png", "source": {"bytes": base64.b64encode(IMAGE_PNG).decode()}}},
            {"image": {"format": "jpeg", "source": {"bytes": base64.b64encode(IMAGE_JPEG).decode()}}},
        ]
        assert sent(m.up)["messages"] == [{"role": "user", "content": blocks}]
        chunks = await collect(await m.client.chat.completions.create(model="claude", messages=messages, stream=True))
        assert streamed_text(chunks) == "Echo: Compare"
        assert sent(m.up, stream=True)["messages"] == [{"role": "user", "content": blocks}]
        assert {s.path for s in images.seen} == {"/cat.png", "/photo.jpg"}
        with pytest.raises(openai.BadRequestError) as exc:  # a page, not an image: refused before Bedrock
            page = [{"type": "image_url", "image_url": {"url": images.url("/page.html")}}]
            await m.client.chat.completions.create(model="claude", messages=[{"role": "user", "content": page}])
        assert exc.value.body["param"] == "messages[0].content[0].image_url.url"


async def test_matrix_json_mode(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        reply = await m.client.chat.completions.create(
            model="claude", messages=HI, response_format={"type": "json_object"}
        )
        assert orjson.loads(reply.choices[0].message.content) == {"input": "hello there"}
        assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.tool_calls is None
        assert sent(m.up)["toolConfig"] == {
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
        stream = await m.client.chat.completions.create(
            model="claude", messages=HI, response_format={"type": "json_object"}, stream=True
        )
        chunks = await collect(stream)
        assert orjson.loads(streamed_text(chunks)) == {"input": "hello there"} and finish_of(chunks) == "stop"
        assert all(not c.choices or c.choices[0].delta.tool_calls is None for c in chunks)

        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
        response_format = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}
        reply = await m.client.chat.completions.create(model="claude", messages=HI, response_format=response_format)
        assert orjson.loads(reply.choices[0].message.content) == {"answer": "hello there"}
        assert sent(m.up) == {
            "messages": [user_turn("hello there")],
            "outputConfig": {
                "textFormat": {
                    "type": "json_schema",
                    "structure": {"jsonSchema": {"schema": orjson.dumps(schema).decode(), "name": "reply"}},
                }
            },
        }


async def test_matrix_stop_sequences(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        reply = await m.client.chat.completions.create(model="claude", messages=HI, stop=["there", "never"])
        assert reply.choices[0].message.content == "Echo: hello "
        assert reply.choices[0].finish_reason == "stop"
        assert sent(m.up)["inferenceConfig"] == {"stopSequences": ["there", "never"]}
        stream = await m.client.chat.completions.create(model="claude", messages=HI, stop="hello", stream=True)
        chunks = await collect(stream)
        assert streamed_text(chunks) == "Echo: " and finish_of(chunks) == "stop"
        assert sent(m.up, stream=True)["inferenceConfig"] == {"stopSequences": ["hello"]}


async def test_matrix_usage_cached_tokens(tmp_path) -> None:
    # the fake reports the first system block as read from the prompt cache, later ones as written to it
    messages = [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "developer", "content": "Answer in English."},
        *HI,
    ]
    async with omen_with_bedrock(tmp_path) as m:
        reply = await m.client.chat.completions.create(model="claude", messages=messages)
        usage = reply.usage
        # inputTokens 2 + cacheRead 5 + cacheWrite 3 = 10 prompt tokens, 5 of them cached
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 3, 13)
        assert usage.prompt_tokens_details.cached_tokens == 5
        assert sent(m.up)["system"] == [{"text": "You are a terse assistant."}, {"text": "Answer in English."}]
        raw = await m.client.chat.completions.with_raw_response.create(
            model="claude", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = await collect(raw.parse())
        usage = chunks[-1].usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details.cached_tokens) == (10, 3, 5)
        record = await m.omen.log_for(raw.headers["x-request-id"])
        assert (record["prompt_tokens"], record["completion_tokens"]) == (10, 3)


# ---- finish reasons ----------------------------------------------------------------------------------


async def test_matrix_finish_length(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        reply = await m.client.chat.completions.create(model="claude", messages=HI, max_completion_tokens=2)
        assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("Echo: hello", "length")
        assert sent(m.up)["inferenceConfig"] == {"maxTokens": 2}
        chunks = await collect(
            await m.client.chat.completions.create(model="claude", messages=HI, max_tokens=1, stream=True)
        )
        assert (streamed_text(chunks), finish_of(chunks)) == ("Echo:", "length")


@pytest.mark.parametrize("stop_reason", ["guardrail_intervened", "content_filtered"])
async def test_matrix_finish_content_filter(tmp_path, stop_reason) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        m.up.set_fault(finish_reason=stop_reason)
        reply = await m.client.chat.completions.create(model="claude", messages=HI)
        assert reply.choices[0].finish_reason == "content_filter"
        chunks = await collect(await m.client.chat.completions.create(model="claude", messages=HI, stream=True))
        assert finish_of(chunks) == "content_filter"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("malformed_model_output", "stop"),
    ],
)
async def test_matrix_finish_reasons(tmp_path, stop_reason, finish) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        m.up.set_fault(finish_reason=stop_reason)
        reply = await m.client.chat.completions.create(model="claude", messages=HI)
        assert reply.choices[0].finish_reason == finish
        chunks = await collect(await m.client.chat.completions.create(model="claude", messages=HI, stream=True))
        assert finish_of(chunks) == finish


# ---- errors ------------------------------------------------------------------------------------------


async def call_error(m: Matrix, fault: Fault | None = None, **create: Any) -> openai.APIStatusError:
    if fault is not None:
        m.up.fault_once(fault)
    with pytest.raises(openai.APIStatusError) as exc:
        await m.client.chat.completions.create(model="claude", messages=create.pop("messages", HI), **create)
    return exc.value


def aws_type(name: str) -> dict[str, str]:
    return {"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"}


async def test_matrix_error_400(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        # Bedrock's own validation: a conversation must start with a user turn
        err = await call_error(m, messages=[{"role": "assistant", "content": "hi"}])
        assert isinstance(err, openai.BadRequestError) and err.status_code == 400
        assert err.type == "invalid_request_error"
        assert err.body["message"].startswith(
            "Bedrock ValidationException: A conversation must start with a user message"
        )
        assert m.up.last_request.status == 400
        # refused by OMEN before any upstream work
        count = m.up.request_count
        err = await call_error(m, n=2)
        assert (err.status_code, err.body["param"]) == (400, "n") and m.up.request_count == count


async def test_matrix_error_401(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path, provider={"secret_access_key": "wrong-secret"}) as m:
        err = await call_error(m)
        assert isinstance(err, openai.AuthenticationError) and err.status_code == 401
        assert (err.type, err.code) == ("authentication_error", "upstream_auth_failed")
        assert "InvalidSignatureException" in err.message
        assert TOKEN not in err.message and "Canonical" not in err.message  # AWS's text quotes signed headers
        assert m.up.last_request.status == 403
    async with omen_with_bedrock(tmp_path, key=wire.credential("AKIDOTHER00000000000", "s")) as m:
        err = await call_error(m)
        assert err.status_code == 401 and "UnrecognizedClientException" in err.message


async def test_matrix_error_403(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        err = await call_error(m, Fault(status=403))
        assert isinstance(err, openai.PermissionDeniedError)
        assert (err.type, err.code) == ("permission_error", "access_denied")
        message = "Bedrock AccessDeniedException: You don't have access to the model with the specified model ID."
        assert err.body["message"] == message


async def test_matrix_error_404(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        err = await call_error(m, Fault(status=404))
        assert isinstance(err, openai.NotFoundError)
        assert (err.code, err.body["param"]) == ("model_not_found", "model")
        assert "ResourceNotFoundException" in err.message


async def test_matrix_error_408(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        err = await call_error(m, Fault(status=408))
        assert err.status_code == 408 and err.type == "timeout" and "ModelTimeoutException" in err.message


async def test_matrix_error_424_model_error(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        err = await call_error(
            m,
            Fault(
                status=424,
                body={"message": "Model failed", "originalStatusCode": 500},
                headers=aws_type("ModelErrorException"),
            ),
        )
        assert isinstance(err, openai.InternalServerError) and err.status_code == 502
        assert (err.code, err.body["message"]) == ("upstream_model_error", "Bedrock ModelErrorException: Model failed")


async def test_matrix_error_429(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        m.up.fault_once(Fault.rate_limited(retry_after=7))
        async with httpx.AsyncClient(base_url=m.omen.v1) as http:
            response = await http.post("/chat/completions", json={"model": "claude", "messages": HI})
        assert response.status_code == 429 and response.headers["retry-after"] == "7"
        assert response.json()["error"] == {
            "message": "Bedrock ThrottlingException: Too many requests, please wait before trying again.",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
        err = await call_error(m, Fault(status=429, headers=aws_type("ModelNotReadyException"), message="warming up"))
        assert isinstance(err, openai.RateLimitError) and err.code == "model_not_ready"


async def test_matrix_error_quota(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        fault = Fault(status=400, headers=aws_type("ServiceQuotaExceededException"), message="Quota exceeded")
        err = await call_error(m, fault)
        assert isinstance(err, openai.RateLimitError) and (err.type, err.code) == (
            "insufficient_quota",
            "insufficient_quota",
        )


@pytest.mark.parametrize(("status", "name"), [(500, "InternalServerException"), (503, "ServiceUnavailableException")])
async def test_matrix_error_5xx(tmp_path, status, name) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        err = await call_error(m, Fault(status=status))
        assert isinstance(err, openai.InternalServerError) and err.status_code == status
        assert err.type == "server_error" and name in err.message
        m.up.fault_once(Fault(status=status))  # streamed calls fail the same way, before any chunk
        with pytest.raises(openai.InternalServerError):
            await m.client.chat.completions.create(model="claude", messages=HI, stream=True)


async def test_matrix_error_500(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        err = await call_error(m, Fault(status=500, body="<html>gateway broke</html>", headers={}))
        assert err.status_code == 500 and "gateway broke" in err.message


async def test_matrix_error_503(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        err = await call_error(m, Fault(status=503, retry_after=2))
        assert err.status_code == 503 and err.code == "overloaded" and err.response.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("throttlingException: Too many tokens", "Bedrock ThrottlingException: Too many tokens"),
        ("model crashed", "Bedrock ModelStreamErrorException: model crashed"),
    ],
)
async def test_matrix_mid_stream_error(tmp_path, spec, fragment) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        m.up.set_fault(mid_stream_error=spec, error_after_chunks=3)
        stream = await m.client.chat.completions.create(model="claude", messages=HI, stream=True)
        seen: list[Any] = []
        with pytest.raises(openai.APIError) as exc:
            async for chunk in stream:
                seen.append(chunk)
        assert fragment in exc.value.message
        assert streamed_text(seen) == "Echo: hello"  # messageStart + two text frames came first
        assert m.up.last_request.outcome == "mid_stream_error"


async def test_matrix_stream_truncated(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        m.up.set_fault(break_after_chunks=6)  # every frame up to messageStop, then the connection drops
        stream = await m.client.chat.completions.create(model="claude", messages=HI, stream=True)
        seen: list[Any] = []
        with pytest.raises(openai.APIError) as exc:
            async for chunk in stream:
                seen.append(chunk)
        assert "broke the connection mid-response" in exc.value.message
        assert streamed_text(seen) == "Echo: hello there" and finish_of(seen) == "stop"
        assert m.up.last_request.outcome == "broken"


# ---- auth variants, embeddings, unsupported endpoints ----------------------------------------------------


async def test_matrix_bedrock_api_key(tmp_path) -> None:
    keys = {"api_key": "bedrock-api-key-0001", "access_key_id": None, "secret_access_key": None, "session_token": None}
    async with omen_with_bedrock(tmp_path, key="bedrock-api-key-0001", provider=keys) as m:
        reply = await m.client.chat.completions.create(model="claude", messages=HI)
        assert reply.choices[0].message.content == "Echo: hello there"
        rec = m.up.last_request
        assert rec.headers["authorization"] == "Bearer bedrock-api-key-0001" and "x-amz-date" not in rec.headers


async def test_matrix_embeddings(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        result = await m.client.embeddings.create(model="titan", input="hello embedding world", dimensions=256)
        assert len(result.data) == 1 and len(result.data[0].embedding) == 256
        assert result.usage.prompt_tokens == result.usage.total_tokens == 3
        assert sent(m.up, "/model/amazon.titan-embed-text-v2%3A0/invoke") == {
            "inputText": "hello embedding world",
            "dimensions": 256,
        }
        listed = await m.client.embeddings.create(model="titan", input=["only one"], encoding_format="float")
        assert listed.data[0].embedding == wire.embedding_vector("only one", 8)
        with pytest.raises(openai.BadRequestError) as exc:
            await m.client.embeddings.create(model="titan", input=["a", "b"])
        assert exc.value.body["param"] == "input" and "one text per request" in exc.value.message


async def test_matrix_completions_refused(tmp_path) -> None:
    async with omen_with_bedrock(tmp_path) as m:
        with pytest.raises(openai.BadRequestError) as exc:
            await m.client.completions.create(model="claude", prompt="Say hi")
        assert exc.value.code == "unsupported_endpoint" and m.up.request_count == 0


async def test_fake_bedrock_verifies_sigv4_over_http() -> None:
    """The fake refuses what AWS refuses: no signature, a signature for another request, unknown keys."""
    async with open_fake_upstream("bedrock", api_key=KEY) as up:
        provider = BedrockProvider("aws", ProviderConfig(**provider_config(up)), environ={})
        body = orjson.dumps({"model": "claude", "messages": HI})
        request = provider.chat_request(ChatCall(raw=body, upstream_model=MODEL, public_model="claude"))
        url = up.base_url + request.path
        signed = [*request.headers, *provider.authorize(request, url, None)]
        async with httpx.AsyncClient() as http:
            ok = await http.post(url, headers=signed, content=request.body)
            assert ok.status_code == 200 and ok.json()["output"]["message"]["content"] == [
                {"text": "Echo: hello there"}
            ]
            unsigned = await http.post(url, headers=request.headers, content=request.body)
            assert unsigned.status_code == 403 and unsigned.json() == {"message": "Missing Authentication Token"}
            assert unsigned.headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException:")
            other = await http.post(url.replace("v1%3A0", "v2%3A0"), headers=signed, content=request.body)
            assert other.status_code == 403
            assert other.headers["x-amzn-errortype"].startswith("InvalidSignatureException:")
            assert other.json()["message"].startswith("The request signature we calculated does not match")
        assert up.errors == []
