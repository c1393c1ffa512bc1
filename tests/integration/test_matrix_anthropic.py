"""Translation matrix for the Anthropic provider: the official ``openai`` SDK talks to a real OMEN,
which talks to the fake Anthropic upstream in Anthropic's own wire format (tests/fakes/anthropic_wire.py).
Each test asserts what the client got and the exact request OMEN sent upstream."""

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
import trio

from omen.providers.anthropic_request import JSON_OBJECT_INSTRUCTION
from tests.conftest import running_omen
from tests.fakes import open_fake_upstream

KEY = "sk-ant-upstream-secret"
MODEL = "claude-sonnet-4-5-20250929"
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
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n matrix image").decode()


@dataclass
class Matrix:
    up: Any  # the fake Anthropic upstream
    omen: Any  # the running gateway
    client: openai.AsyncOpenAI


@asynccontextmanager
async def omen_with_anthropic(
    tmp_path: Any, *, key: str = KEY, provider: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[Matrix]:
    async with open_fake_upstream("anthropic", api_key=KEY, **options) as up:
        cfg = {
            "providers": {"anthropic": {"api_key": key, "base_url": up.base_url, **(provider or {})}},
            "models": {"claude": {"provider": "anthropic", "model": MODEL}},
        }
        async with running_omen(cfg, tmp_path=tmp_path) as omen:
            client = openai.AsyncOpenAI(base_url=omen.v1, api_key="client-key", max_retries=0)
            try:
                yield Matrix(up, omen, client)
            finally:
                await client.close()


def sent(up: Any) -> dict[str, Any]:
    """The last request OMEN sent upstream, checked for Anthropic's headers; returns its JSON body."""
    rec = up.last_request
    assert (rec.method, rec.path) == ("POST", "/v1/messages")
    assert rec.headers["x-api-key"] == KEY
    assert rec.headers["anthropic-version"] == "2023-06-01"
    assert rec.headers["content-type"] == "application/json"
    assert "authorization" not in rec.headers  # the client's key never reaches Anthropic
    return rec.json


async def collect(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


def streamed_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finish_of(chunks: list[Any]) -> str | None:
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(reasons) == 1
    return reasons[0]


# ---- text and streams --------------------------------------------------------------------------------


async def test_matrix_text(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        messages = [{"role": "system", "content": "Be brief."}, *HI]
        raw = await m.client.chat.completions.with_raw_response.create(
            model="claude", messages=messages, temperature=0.5, top_p=0.9, max_tokens=50, user="u-1"
        )
        reply = raw.parse()
        assert reply.choices[0].message.content == "Echo: hello there"
        assert reply.choices[0].finish_reason == "stop"
        assert reply.id == "msg_fake00000001" and reply.model == MODEL
        assert reply.usage.prompt_tokens == 4 and reply.usage.completion_tokens == 3
        assert raw.headers["x-omen-provider"] == "anthropic"
        assert sent(m.up) == {
            "model": MODEL,
            "max_tokens": 50,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "hello there"}],
            "temperature": 0.5,
            "top_p": 0.9,
            "metadata": {"user_id": "u-1"},
        }


async def test_matrix_stream(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        stream = await m.client.chat.completions.create(
            model="claude", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        chunks = await collect(stream)
        assert chunks[0].choices[0].delta.role == "assistant"
        assert [c.choices[0].delta.content for c in chunks[1:4]] == ["Echo:", " hello", " there"]
        assert streamed_text(chunks) == "Echo: hello there"
        assert finish_of(chunks) == "stop"
        assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 2 + 3
        assert {c.id for c in chunks} == {"msg_fake00000001"}
        assert sent(m.up) == {
            "model": MODEL,
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": "hello there"}],
            "stream": True,
        }
        # without include_usage no usage chunk reaches the client, but the access log still counts tokens
        raw = await m.client.chat.completions.with_raw_response.create(model="claude", messages=HI, stream=True)
        chunks = await collect(raw.parse())
        assert all(c.usage is None for c in chunks) and streamed_text(chunks) == "Echo: hello there"
        record = await m.omen.log_for(raw.headers["x-request-id"])
        assert (record["prompt_tokens"], record["completion_tokens"]) == (2, 3)


# ---- tools -------------------------------------------------------------------------------------------


async def test_matrix_tools(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        reply = await m.client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "Paris"}],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == "Let me call get_weather."
        [call] = choice.message.tool_calls
        assert call.id.startswith("toolu_") and call.type == "function"
        assert (call.function.name, orjson.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
        assert sent(m.up) == {
            "model": MODEL,
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": "Paris"}],
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "input_schema": WEATHER["function"]["parameters"],
                }
            ],
            "tool_choice": {"type": "tool", "name": "get_weather"},
        }


async def test_matrix_streamed_tools(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
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
        assert first.id.startswith("toolu_")
        assert len(rest) == 3  # the arguments arrive in pieces (the fake's empty first fragment is dropped)
        assert all(d.index == 0 and d.id is None and d.function.name is None for d in rest)
        assert orjson.loads("".join(d.function.arguments for d in rest)) == {"city": "Paris"}
        assert streamed_text(chunks) == "Let me call get_weather."
        assert finish_of(chunks) == "tool_calls"
        assert sent(m.up)["stream"] is True and "tool_choice" not in sent(m.up)


async def test_matrix_parallel_tool_calls(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path, tool_calls=2) as m:
        tools = [WEATHER, TIME]
        messages = [{"role": "user", "content": "Oslo"}]
        reply = await m.client.chat.completions.create(model="claude", messages=messages, tools=tools)
        calls = reply.choices[0].message.tool_calls
        assert [(c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [
            ("get_weather", {"city": "Oslo"}),
            ("get_time", {"tz": "Oslo"}),
        ]
        assert len({c.id for c in calls}) == 2
        stream = await m.client.chat.completions.create(model="claude", messages=messages, tools=tools, stream=True)
        chunks = await collect(stream)
        by_index: dict[int, dict[str, Any]] = {}
        for c in chunks:
            for tc in (c.choices[0].delta.tool_calls or ()) if c.choices else ():
                entry = by_index.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "args": ""})
                entry["args"] += tc.function.arguments or ""
        assert [(e["id"], e["name"], orjson.loads(e["args"])) for e in by_index.values()] == [
            (calls[0].id, "get_weather", {"city": "Oslo"}),
            (calls[1].id, "get_time", {"tz": "Oslo"}),
        ]
        assert list(by_index) == [0, 1]  # OpenAI indexes count tool calls only (Anthropic's block 0 is text)
        # parallel_tool_calls=false -> disable_parallel_tool_use
        reply = await m.client.chat.completions.create(
            model="claude", messages=messages, tools=tools, parallel_tool_calls=False, tool_choice="required"
        )
        assert len(reply.choices[0].message.tool_calls) == 1
        assert sent(m.up)["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


async def test_matrix_tool_result_round_trip(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path, tool_calls=2) as m:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "Oslo"}]
        reply = await m.client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER, TIME])
        assistant = reply.choices[0].message
        messages.append(assistant.model_dump(exclude_none=True))
        for call, result in zip(assistant.tool_calls, ["-3C and snowing", "14:05"], strict=True):
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        final = await m.client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER, TIME])
        assert final.choices[0].message.content == "Echo: -3C and snowing 14:05"
        assert final.choices[0].finish_reason == "stop"
        ids = [c.id for c in assistant.tool_calls]
        assert sent(m.up)["messages"] == [
            {"role": "user", "content": "Oslo"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me call get_weather, get_time."},
                    {"type": "tool_use", "id": ids[0], "name": "get_weather", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": ids[1], "name": "get_time", "input": {"tz": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": ids[0], "content": "-3C and snowing"},
                    {"type": "tool_result", "tool_use_id": ids[1], "content": "14:05"},
                ],
            },
        ]


# ---- images, JSON, stop sequences ------------------------------------------------------------------------


async def test_matrix_image_data_uri(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        content = [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        ]
        reply = await m.client.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
        assert reply.choices[0].message.content == "Echo: What is this?"
        assert sent(m.up)["messages"] == [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ],
            }
        ]


async def test_matrix_image_url(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        content = [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            {"type": "text", "text": "Describe"},
        ]
        reply = await m.client.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
        assert reply.choices[0].message.content == "Echo: Describe"
        # Anthropic fetches URLs itself: OMEN forwards the URL, it does not download it
        assert sent(m.up)["messages"][0]["content"][0] == {
            "type": "image",
            "source": {"type": "url", "url": "https://example.com/cat.jpg"},
        }


async def test_matrix_json_mode(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path, reply='{"answer": 42}') as m:
        reply = await m.client.chat.completions.create(
            model="claude", messages=HI, response_format={"type": "json_object"}
        )
        assert orjson.loads(reply.choices[0].message.content) == {"answer": 42}
        assert sent(m.up)["system"] == JSON_OBJECT_INSTRUCTION and "output_config" not in sent(m.up)
    async with omen_with_anthropic(tmp_path) as m:
        schema = {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        }
        rf = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}}
        reply = await m.client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "Rome"}], response_format=rf
        )
        assert orjson.loads(reply.choices[0].message.content) == {"city": "Rome"}
        stream = await m.client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "Rome"}], response_format=rf, stream=True
        )
        assert orjson.loads(streamed_text(await collect(stream))) == {"city": "Rome"}
        body = sent(m.up)
        assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
        assert "system" not in body and "tools" not in body


async def test_matrix_stop_sequences(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path, reply="one two STOP three") as m:
        reply = await m.client.chat.completions.create(model="claude", messages=HI, stop=["STOP", "never"])
        assert reply.choices[0].message.content == "one two "
        assert reply.choices[0].finish_reason == "stop"
        assert sent(m.up)["stop_sequences"] == ["STOP", "never"]
        stream = await m.client.chat.completions.create(model="claude", messages=HI, stop="STOP", stream=True)
        chunks = await collect(stream)
        assert streamed_text(chunks) == "one two " and finish_of(chunks) == "stop"
        assert sent(m.up)["stop_sequences"] == ["STOP"]


# ---- usage ---------------------------------------------------------------------------------------------


async def test_matrix_usage_cached_tokens(tmp_path) -> None:
    manual = "You answer questions about the OMEN gateway manual which is long"  # 11 fake tokens
    messages = [
        {"role": "system", "content": [{"type": "text", "text": manual, "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "hello there"},
    ]
    async with omen_with_anthropic(tmp_path) as m:
        first = await m.client.chat.completions.create(model="claude", messages=messages)
        # first call writes the cache: cache_creation counts in prompt_tokens, nothing cached yet
        assert (first.usage.prompt_tokens, first.usage.completion_tokens, first.usage.total_tokens) == (13, 3, 16)
        assert first.usage.prompt_tokens_details is None
        assert sent(m.up)["system"] == [{"type": "text", "text": manual, "cache_control": {"type": "ephemeral"}}]
        second = await m.client.chat.completions.create(model="claude", messages=messages)
        assert second.usage.prompt_tokens == 13  # input 2 + cache_read 11
        assert second.usage.prompt_tokens_details.cached_tokens == 11
        stream = await m.client.chat.completions.create(
            model="claude", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        usage = (await collect(stream))[-1].usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details.cached_tokens) == (13, 3, 11)
        # top-level cache_control (Anthropic's automatic caching) is forwarded as sent
        await m.client.chat.completions.create(
            model="claude", messages=HI, extra_body={"cache_control": {"type": "ephemeral"}}
        )
        assert sent(m.up)["cache_control"] == {"type": "ephemeral"}
        again = await m.client.chat.completions.create(
            model="claude", messages=HI, extra_body={"cache_control": {"type": "ephemeral"}}
        )
        assert again.usage.prompt_tokens == 2 and again.usage.prompt_tokens_details.cached_tokens == 2


# ---- finish reasons ------------------------------------------------------------------------------------


async def test_matrix_finish_stop(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        reply = await m.client.chat.completions.create(model="claude", messages=HI)
        assert reply.choices[0].finish_reason == "stop"


async def test_matrix_finish_length(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        reply = await m.client.chat.completions.create(model="claude", messages=HI, max_completion_tokens=2)
        assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("Echo: hello", "length")
        assert sent(m.up)["max_tokens"] == 2
        stream = await m.client.chat.completions.create(model="claude", messages=HI, max_tokens=1, stream=True)
        chunks = await collect(stream)
        assert streamed_text(chunks) == "Echo:" and finish_of(chunks) == "length"


async def test_matrix_finish_tool_calls(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        reply = await m.client.chat.completions.create(model="claude", messages=HI, tools=[WEATHER])
        assert reply.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        ("stop_sequence", "stop"),
    ],
)
async def test_matrix_finish_anthropic_specials(tmp_path, stop_reason, finish) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        m.up.set_fault(finish_reason=stop_reason)
        reply = await m.client.chat.completions.create(model="claude", messages=HI)
        assert reply.choices[0].finish_reason == finish
        chunks = await collect(await m.client.chat.completions.create(model="claude", messages=HI, stream=True))
        assert finish_of(chunks) == finish


async def test_matrix_finish_content_filter(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path, reply="I can't help with that.") as m:
        m.up.set_fault(finish_reason="refusal")
        reply = await m.client.chat.completions.create(model="claude", messages=HI)
        assert reply.choices[0].finish_reason == "content_filter"
        assert reply.choices[0].message.content == "I can't help with that."


# ---- errors --------------------------------------------------------------------------------------------


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    ("status", "exc_type", "want_status", "want_type", "want_code"),
    [
        (400, openai.BadRequestError, 400, "invalid_request_error", None),
        (401, openai.AuthenticationError, 401, "authentication_error", "invalid_api_key"),
        (403, openai.PermissionDeniedError, 403, "permission_error", None),
        (404, openai.NotFoundError, 404, "invalid_request_error", None),
        (413, openai.APIStatusError, 413, "invalid_request_error", "request_too_large"),
        (429, openai.RateLimitError, 429, "rate_limit_error", "rate_limit_exceeded"),
        (500, openai.InternalServerError, 500, "server_error", None),
        (503, openai.InternalServerError, 503, "server_error", None),
    ],
)
async def test_matrix_error_status(tmp_path, status, exc_type, want_status, want_type, want_code) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        m.up.set_fault(status=status, message=f"fake {status}", retry_after=3 if status == 429 else None)
        with pytest.raises(exc_type) as info:
            await m.client.chat.completions.create(model="claude", messages=HI)
        assert info.value.status_code == want_status
        error = error_of(info.value)
        assert (error["type"], error["code"], error["message"]) == (want_type, want_code, f"fake {status}")
        if status == 429:
            assert info.value.response.headers["retry-after"] == "3"
        assert m.up.last_request.headers["x-api-key"] == KEY


async def test_matrix_error_400(tmp_path) -> None:
    """A request Anthropic itself refuses (the fake validates as Anthropic does) comes back as a 400."""
    async with omen_with_anthropic(tmp_path) as m:
        with pytest.raises(openai.BadRequestError) as info:
            await m.client.chat.completions.create(
                model="claude",
                messages=HI,
                tools=[WEATHER],
                tool_choice={"type": "function", "function": {"name": "get_stock"}},
            )
        error = error_of(info.value)
        assert (error["type"], error["message"]) == (
            "invalid_request_error",
            "tool_choice.name: tool 'get_stock' was not found in tools",
        )
        assert m.up.last_request.status == 400


async def test_matrix_error_400_from_upstream(tmp_path) -> None:
    schema = {"type": "object", "properties": {"x": {"type": "string"}}}
    async with omen_with_anthropic(tmp_path) as m:
        m.up.set_fault(status=400, message="output_config.format.schema: additionalProperties must be false")
        with pytest.raises(openai.BadRequestError) as info:
            await m.client.chat.completions.create(
                model="claude",
                messages=HI,
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
            )
        assert error_of(info.value)["message"] == "output_config.format.schema: additionalProperties must be false"


async def test_matrix_error_400_refused_locally(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        for kwargs, param in [
            ({"n": 2}, "n"),
            ({"temperature": 1.7}, "temperature"),
            ({"logprobs": True}, "logprobs"),
            ({"presence_penalty": 0.4}, "presence_penalty"),
        ]:
            with pytest.raises(openai.BadRequestError) as info:
                await m.client.chat.completions.create(model="claude", messages=HI, **kwargs)
            assert error_of(info.value)["param"] == param
        assert m.up.request_count == 0  # refused before anything was sent


async def test_matrix_error_401_wrong_key(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path, key="sk-ant-wrong") as m:
        with pytest.raises(openai.AuthenticationError) as info:
            await m.client.chat.completions.create(model="claude", messages=HI)
        error = error_of(info.value)
        assert (error["message"], error["code"]) == ("invalid x-api-key", "invalid_api_key")
        assert "sk-ant-wrong" not in info.value.response.text


async def test_matrix_error_404_unknown_model(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path, models=["claude-haiku-4-5"]) as m:
        with pytest.raises(openai.NotFoundError) as info:
            await m.client.chat.completions.create(model="claude", messages=HI)
        error = error_of(info.value)
        assert (error["code"], error["param"], error["message"]) == ("model_not_found", "model", f"model: {MODEL}")


async def test_matrix_error_529_overloaded(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        m.up.set_fault(status=529, retry_after=2)
        with pytest.raises(openai.InternalServerError) as info:
            await m.client.chat.completions.create(model="claude", messages=HI)
        assert info.value.status_code == 503
        assert info.value.response.headers["retry-after"] == "2"
        error = error_of(info.value)
        assert (error["type"], error["code"], error["message"]) == ("server_error", "overloaded", "Overloaded")


async def test_matrix_error_402_billing(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        m.up.set_fault(status=402)
        with pytest.raises(openai.RateLimitError) as info:
            await m.client.chat.completions.create(model="claude", messages=HI)
        error = error_of(info.value)
        assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")


async def test_matrix_error_mid_stream(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path, chunks=6) as m:
        m.up.set_fault(mid_stream_error="Overloaded", error_after_chunks=4)
        stream = await m.client.chat.completions.create(model="claude", messages=HI, stream=True)
        received: list[Any] = []
        with pytest.raises(openai.APIError) as info:
            async for chunk in stream:
                received.append(chunk)
        assert streamed_text(received) == "Echo:"  # start, block start, ping, first delta, then the error
        assert info.value.message == "Overloaded"
        assert info.value.body == {"message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded"}


async def test_matrix_error_stream_truncated(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        m.up.set_fault(break_after_chunks=5)
        async with httpx.AsyncClient(base_url=m.omen.v1) as http:
            response = await http.post("/chat/completions", json={"model": "claude", "messages": HI, "stream": True})
        payloads = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert payloads[-1] == "[DONE]"
        error = orjson.loads(payloads[-2])["error"]
        assert error["type"] == "server_error" and error["code"] == "upstream_error"  # the transport saw the break


# ---- endpoints Anthropic lacks, model listing ----------------------------------------------------------


async def test_matrix_unsupported_endpoints(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path) as m:
        with pytest.raises(openai.BadRequestError) as info:
            await m.client.embeddings.create(model="claude", input="hi")
        error = error_of(info.value)
        assert error["code"] == "unsupported_endpoint" and "embeddings" in error["message"]
        with pytest.raises(openai.BadRequestError) as info:
            await m.client.completions.create(model="claude", prompt="hi")
        assert error_of(info.value)["code"] == "unsupported_endpoint"
        assert m.up.request_count == 0


async def test_matrix_model_discovery(tmp_path) -> None:
    async with omen_with_anthropic(tmp_path, provider={"discover_models": True}) as m:
        await m.up.wait_requests(1)
        listing = m.up.requests_to("/v1/models")[0]
        assert listing.query == {"limit": "1000"}
        assert listing.headers["x-api-key"] == KEY and listing.headers["anthropic-version"] == "2023-06-01"
        for _ in range(100):
            ids = {m.id async for m in m.client.models.list()}
            if "anthropic/claude-haiku-4-5-20251001" in ids:
                break
            await trio.sleep(0.02)
        assert {"anthropic/claude-sonnet-4-5-20250929", "anthropic/claude-haiku-4-5-20251001"} <= ids
        reply = await m.client.chat.completions.create(model="anthropic/claude-haiku-4-5-20251001", messages=HI)
        assert reply.model == "claude-haiku-4-5-20251001"
