"""Gemini translation matrix: the real OMEN server over real sockets, driven with the official openai SDK,
against the fake Gemini upstream (tests/fakes/gemini_wire.py), asserting what OMEN sent upstream."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
import trio

from tests.conftest import RunningOmen, running_omen
from tests.fakes import FakeUpstream, open_fake_upstream
from tests.fakes.gemini_wire import signature
from tests.media.image_server import JPEG as IMAGE_JPEG
from tests.media.image_server import PNG as IMAGE_PNG
from tests.media.image_server import open_image_server

KEY = "AIza-fake-gemini-key"
MODEL = "gemini/gemini-2.5-flash"
GEN = "/v1beta/models/gemini-2.5-flash:generateContent"
STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
PING = [{"role": "user", "content": "ping pong"}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"], "enum": ["C", "F", None]}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
}
WEATHER_DECLARATION = {
    "name": "get_weather",
    "description": "Current weather",
    "parameters": {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}, "unit": {"type": "STRING", "enum": ["C", "F"], "nullable": True}},
        "required": ["city"],
    },
}
TIME_DECLARATION = {"name": "get_time", "parameters": {"type": "OBJECT", "properties": {"tz": {"type": "STRING"}}}}


@asynccontextmanager
async def gemini_omen(
    tmp_path: Any, key: str = KEY, discover: bool = False, extra: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[tuple[FakeUpstream, RunningOmen, openai.AsyncOpenAI]]:
    async with open_fake_upstream("gemini", api_key=KEY, **options) as up:
        cfg = {
            "providers": {"gemini": {"api_key": key, "base_url": up.base_url, "discover_models": discover}},
            **(extra or {}),
        }
        async with running_omen(cfg, tmp_path=tmp_path) as omen:
            client = openai.AsyncOpenAI(base_url=omen.v1, api_key="omen-client", max_retries=0)
            try:
                yield up, omen, client
            finally:
                await client.close()


def assert_sent(up: FakeUpstream, path: str, body: dict[str, Any], *, stream: bool = False) -> None:
    """The exact request OMEN made: path, query, auth header (never the key in the URL) and body."""
    sent = up.last_request
    assert (sent.method, sent.path) == ("POST", path)
    assert sent.query == ({"alt": "sse"} if stream else {})
    assert sent.headers["x-goog-api-key"] == KEY and KEY not in sent.target
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert sent.json == body


async def collect(stream: Any) -> tuple[str, dict[int, dict[str, Any]], str | None, Any, list[Any]]:
    """(text, tool calls merged by index, finish reason, usage, raw chunks) of a streamed answer."""
    text, calls, finish, usage, chunks = "", {}, None, None, []
    async for chunk in stream:
        chunks.append(chunk)
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                slot = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                slot["id"] = call.id or slot["id"]
                if call.function is not None:
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
    return text, calls, finish, usage, chunks


# ---- text, streams, usage ---------------------------------------------------------------------------------


async def test_matrix_text(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "developer", "content": "Be terse."}, *PING],
            temperature=0.3,
            top_p=0.5,
            seed=9,
        )
        answer = raw.parse()
        assert raw.headers["x-omen-provider"] == "gemini"
        assert answer.choices[0].message.content == "Echo: ping pong"
        assert answer.choices[0].finish_reason == "stop"
        assert answer.model == "gemini-2.5-flash" and answer.id.startswith("chatcmpl-")
        assert_sent(
            up,
            GEN,
            {
                "contents": [{"role": "user", "parts": [{"text": "ping pong"}]}],
                "systemInstruction": {"parts": [{"text": "Be terse."}]},
                "generationConfig": {"temperature": 0.3, "topP": 0.5, "seed": 9},
            },
        )


async def test_matrix_stream(tmp_path) -> None:
    async with gemini_omen(tmp_path, chunks=4) as (up, _, client):
        stream = await client.chat.completions.create(
            model=MODEL, messages=PING, stream=True, stream_options={"include_usage": True}
        )
        text, calls, finish, usage, chunks = await collect(stream)
        assert text == "Echo: ping pong w3" and not calls and finish == "stop"
        assert chunks[0].choices[0].delta.role == "assistant"
        assert len({c.id for c in chunks}) == 1
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2, 4, 6)
        assert_sent(up, STREAM, {"contents": [{"role": "user", "parts": [{"text": "ping pong"}]}]}, stream=True)
        # without include_usage no usage chunk reaches the client
        _, _, _, usage, chunks = await collect(
            await client.chat.completions.create(model=MODEL, messages=PING, stream=True)
        )
        assert usage is None and all(c.choices for c in chunks)


async def test_matrix_usage_cached_tokens(tmp_path) -> None:
    system = {"role": "system", "content": "You answer with an echo of the question."}  # 8 words, "cached"
    async with gemini_omen(tmp_path) as (up, _, client):
        answer = await client.chat.completions.create(model=MODEL, messages=[system, *PING], reasoning_effort="medium")
        usage = answer.usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
            10,
            8,
            18,
        )  # 3 answer + 5 thinking
        assert usage.prompt_tokens_details.cached_tokens == 8
        assert usage.completion_tokens_details.reasoning_tokens == 5
        assert up.last_request.json["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 8192}}
        stream = await client.chat.completions.create(
            model=MODEL, messages=[system, *PING], stream=True, stream_options={"include_usage": True}
        )
        _, _, _, usage, _ = await collect(stream)
        assert (usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details.cached_tokens) == (10, 3, 8)


async def test_matrix_n_candidates(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        answer = await client.chat.completions.create(model=MODEL, messages=PING, n=2)
        assert [(c.index, c.message.content) for c in answer.choices] == [
            (0, "Echo: ping pong"),
            (1, "Echo: ping pong"),
        ]
        assert up.last_request.json["generationConfig"] == {"candidateCount": 2}
        stream = await client.chat.completions.create(model=MODEL, messages=PING, n=2, stream=True)
        texts: dict[int, str] = {}
        async for chunk in stream:
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
        assert texts == {0: "Echo: ping pong", 1: "Echo: ping pong"}


# ---- tools ------------------------------------------------------------------------------------------------


async def test_matrix_tools(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        answer = await client.chat.completions.create(
            model=MODEL,
            messages=PING,
            tools=[WEATHER, TIME],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_")
        assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "ping pong"})
        assert_sent(
            up,
            GEN,
            {
                "contents": [{"role": "user", "parts": [{"text": "ping pong"}]}],
                "tools": [{"functionDeclarations": [WEATHER_DECLARATION, TIME_DECLARATION]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            },
        )
        answer = await client.chat.completions.create(model=MODEL, messages=PING, tools=[WEATHER], tool_choice="none")
        assert answer.choices[0].message.content == "Echo: ping pong" and answer.choices[0].finish_reason == "stop"
        assert up.last_request.json["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}


async def test_matrix_streamed_tools(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        stream = await client.chat.completions.create(
            model=MODEL, messages=PING, tools=[WEATHER], tool_choice="required", stream=True
        )
        text, calls, finish, _, chunks = await collect(stream)
        assert text == "" and finish == "tool_calls"
        assert list(calls) == [0]
        assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "ping pong"}
        assert calls[0]["id"].startswith("call_")
        # Gemini sends a call whole: one delta carries the id, the name and all the arguments, with a stable index
        deltas = [tc for c in chunks for ch in c.choices for tc in ch.delta.tool_calls or ()]
        assert [(d.index, d.id is not None) for d in deltas] == [(0, True)]
        assert_sent(
            up,
            STREAM,
            {
                "contents": [{"role": "user", "parts": [{"text": "ping pong"}]}],
                "tools": [{"functionDeclarations": [WEATHER_DECLARATION]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            },
            stream=True,
        )


async def test_matrix_parallel_tool_calls(tmp_path) -> None:
    async with gemini_omen(tmp_path, tool_calls=2) as (_, _, client):
        answer = await client.chat.completions.create(model=MODEL, messages=PING, tools=[WEATHER, TIME])
        calls = answer.choices[0].message.tool_calls
        assert [c.function.name for c in calls] == ["get_weather", "get_time"]
        assert len({c.id for c in calls}) == 2
        stream = await client.chat.completions.create(model=MODEL, messages=PING, tools=[WEATHER, TIME], stream=True)
        _, streamed, finish, _, _ = await collect(stream)
        assert finish == "tool_calls"
        assert {i: (c["name"], json.loads(c["arguments"])) for i, c in streamed.items()} == {
            0: ("get_weather", {"city": "ping pong"}),
            1: ("get_time", {"tz": "ping pong"}),
        }


async def test_matrix_tool_result_round_trip(tmp_path) -> None:
    async with gemini_omen(tmp_path, tool_calls=2) as (up, _, client):
        first = await client.chat.completions.create(model=MODEL, messages=PING, tools=[WEATHER, TIME])
        message = first.choices[0].message
        weather, time = message.tool_calls
        history = [
            *PING,
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": time.id, "content": "12:00"},
            {"role": "tool", "tool_call_id": weather.id, "content": "18C and sunny"},
        ]
        answer = await client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER, TIME])
        assert answer.choices[0].message.content == "Echo: 18C and sunny"
        assert answer.choices[0].finish_reason == "stop"
        # the first call's thought signature went back verbatim (the fake refuses any it did not issue)
        assert up.last_request.json["contents"] == [
            {"role": "user", "parts": [{"text": "ping pong"}]},
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "ping pong"}},
                        "thoughtSignature": signature("get_weather"),
                    },
                    {"functionCall": {"name": "get_time", "args": {"tz": "ping pong"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_time", "response": {"output": "12:00"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"output": "18C and sunny"}}},
                ],
            },
        ]
        orphan = [*PING, {"role": "tool", "tool_call_id": "call_unknown", "content": "x"}]
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(model=MODEL, messages=orphan)
        assert exc.value.status_code == 400 and exc.value.param == "messages[1].tool_call_id"


# ---- media, formats, stop -----------------------------------------------------------------------------------


async def test_matrix_image(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        content = [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        ]
        answer = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
        assert answer.choices[0].message.content == "Echo: What is this? [image/png]"
        assert_sent(
            up,
            GEN,
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [{"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}],
                    }
                ]
            },
        )
        bad = [{"type": "image_url", "image_url": {"url": "data:image/svg+xml;base64," + PNG}}]
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": bad}])
        assert exc.value.param == "messages[0].content[0].image_url.url" and "image/svg+xml" in exc.value.message


async def test_matrix_image_url(tmp_path) -> None:
    """Gemini takes no arbitrary image URLs: the gateway fetches them (SSRF-checked) into inlineData."""
    async with open_image_server() as images:
        extra = {"images": {"allow_hosts": [images.origin]}}  # the image server is on 127.0.0.1
        async with gemini_omen(tmp_path, extra=extra) as (up, _, client):
            content = [
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": images.url("/cat.png")}},
                {"type": "image_url", "image_url": {"url": images.url("/photo.jpg")}},  # JPEG labelled image/png
            ]
            messages = [{"role": "user", "content": content}]
            answer = await client.chat.completions.create(model=MODEL, messages=messages)
            assert answer.choices[0].message.content == "Echo: Compare [image/png] [image/jpeg]"
            parts = [
                {"text": "Compare"},
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(IMAGE_PNG).decode()}},
                {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(IMAGE_JPEG).decode()}},
            ]
            assert_sent(up, GEN, {"contents": [{"role": "user", "parts": parts}]})
            text, _, _, _, _ = await collect(
                await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
            )
            assert text == "Echo: Compare [image/png] [image/jpeg]"
            assert_sent(up, STREAM, {"contents": [{"role": "user", "parts": parts}]}, stream=True)
            count = up.request_count
            page = [{"type": "image_url", "image_url": {"url": images.url("/page.html")}}]
            with pytest.raises(openai.BadRequestError) as exc:  # not an image: refused before Gemini
                await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": page}])
            assert exc.value.param == "messages[0].content[0].image_url.url" and up.request_count == count


async def test_matrix_json_mode(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        answer = await client.chat.completions.create(
            model=MODEL, messages=PING, response_format={"type": "json_object"}
        )
        assert json.loads(answer.choices[0].message.content) == {"echo": "ping pong"}
        assert up.last_request.json["generationConfig"] == {"responseMimeType": "application/json"}


async def test_matrix_json_schema(tmp_path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "words": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["answer", "words", "tags"],
        "additionalProperties": False,
    }
    async with gemini_omen(tmp_path) as (up, _, client):
        answer = await client.chat.completions.create(
            model=MODEL,
            messages=PING,
            response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}},
        )
        assert json.loads(answer.choices[0].message.content) == {
            "answer": "ping pong",
            "words": 2,
            "tags": ["ping pong"],
        }
        assert up.last_request.json["generationConfig"] == {
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "OBJECT",
                "properties": {
                    "answer": {"type": "STRING"},
                    "words": {"type": "INTEGER"},
                    "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
                },
                "required": ["answer", "words", "tags"],
                "propertyOrdering": ["answer", "words", "tags"],
            },
        }


async def test_matrix_stop_sequences(tmp_path) -> None:
    async with gemini_omen(tmp_path, reply="alpha beta END gamma") as (up, _, client):
        answer = await client.chat.completions.create(model=MODEL, messages=PING, stop=["END", "###"])
        assert answer.choices[0].message.content == "alpha beta " and answer.choices[0].finish_reason == "stop"
        assert up.last_request.json["generationConfig"] == {"stopSequences": ["END", "###"]}
        stream = await client.chat.completions.create(model=MODEL, messages=PING, stop="END", stream=True)
        text, _, finish, _, _ = await collect(stream)
        assert (text, finish) == ("alpha beta ", "stop")
        assert up.last_request.json["generationConfig"] == {"stopSequences": ["END"]}


# ---- finish reasons -----------------------------------------------------------------------------------------


async def test_matrix_finish_stop(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (_, _, client):
        answer = await client.chat.completions.create(model=MODEL, messages=PING)
        assert answer.choices[0].finish_reason == "stop"


async def test_matrix_finish_length(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        answer = await client.chat.completions.create(model=MODEL, messages=PING, max_completion_tokens=2)
        assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == ("Echo: ping", "length")
        assert up.last_request.json["generationConfig"] == {"maxOutputTokens": 2}
        text, _, finish, _, _ = await collect(
            await client.chat.completions.create(model=MODEL, messages=PING, max_tokens=1, stream=True)
        )
        assert (text, finish) == ("Echo:", "length")


async def test_matrix_finish_tool_calls(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (_, _, client):
        answer = await client.chat.completions.create(model=MODEL, messages=PING, tools=[WEATHER])
        assert answer.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("reason", "want", "content"),
    [
        ("SAFETY", "content_filter", ""),
        ("PROHIBITED_CONTENT", "content_filter", ""),
        ("BLOCKLIST", "content_filter", ""),
        ("SPII", "content_filter", ""),
        ("RECITATION", "content_filter", "Echo: ping pong"),
        ("LANGUAGE", "content_filter", "Echo: ping pong"),
        ("MALFORMED_FUNCTION_CALL", "stop", ""),
        ("OTHER", "stop", "Echo: ping pong"),
    ],
)
async def test_matrix_finish_content_filter_and_others(tmp_path, reason, want, content) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        up.set_fault(finish_reason=reason)
        answer = await client.chat.completions.create(model=MODEL, messages=PING)
        assert (answer.choices[0].finish_reason, answer.choices[0].message.content) == (want, content)
        text, _, finish, _, _ = await collect(
            await client.chat.completions.create(model=MODEL, messages=PING, stream=True)
        )
        assert (finish, text) == (want, content)


async def test_matrix_prompt_blocked(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        up.set_fault(finish_reason="blocked:SAFETY")
        with pytest.raises(openai.BadRequestError) as exc:
            await client.chat.completions.create(model=MODEL, messages=PING)
        assert (exc.value.status_code, exc.value.code, exc.value.param) == (400, "content_filter", "messages")
        assert "blockReason SAFETY" in exc.value.message
        stream = await client.chat.completions.create(model=MODEL, messages=PING, stream=True)
        with pytest.raises(openai.APIError, match="blockReason SAFETY"):
            await collect(stream)


# ---- errors -------------------------------------------------------------------------------------------------


async def status_error(
    tmp_path: Any, status: int, exc_type: type[openai.APIStatusError], **fault: Any
) -> openai.APIStatusError:
    async with gemini_omen(tmp_path) as (up, _, client):
        up.set_fault(status=status, **fault)
        with pytest.raises(exc_type) as exc:
            await client.chat.completions.create(model=MODEL, messages=PING)
        assert exc.value.status_code == status
        body = exc.value.response.json()
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert KEY not in exc.value.response.text
        with pytest.raises(exc_type):  # streamed calls fail the same way, before any chunk
            await client.chat.completions.create(model=MODEL, messages=PING, stream=True)
        return exc.value


async def test_matrix_error_400(tmp_path) -> None:
    err = await status_error(tmp_path, 400, openai.BadRequestError)
    assert (err.type, err.body["message"]) == ("invalid_request_error", "Request contains an invalid argument.")


async def test_matrix_error_401(tmp_path) -> None:
    err = await status_error(tmp_path, 401, openai.AuthenticationError)
    assert err.type == "authentication_error"


async def test_matrix_error_403(tmp_path) -> None:
    err = await status_error(tmp_path, 403, openai.PermissionDeniedError)
    assert (err.type, err.code, err.body["message"]) == (
        "permission_error",
        "permission_denied",
        "The caller does not have permission",
    )


async def test_matrix_error_404(tmp_path) -> None:
    err = await status_error(tmp_path, 404, openai.NotFoundError)
    assert err.body["message"] == "Requested entity was not found."


async def test_matrix_error_429(tmp_path) -> None:
    err = await status_error(tmp_path, 429, openai.RateLimitError)
    assert (err.type, err.code) == ("rate_limit_error", "rate_limit_exceeded")
    assert err.response.headers["retry-after"] == "7"  # from Google's RetryInfo retryDelay "7s"


async def test_matrix_error_500(tmp_path) -> None:
    err = await status_error(tmp_path, 500, openai.InternalServerError)
    assert err.type == "server_error" and err.body["message"].startswith("An internal error has occurred.")


async def test_matrix_error_503(tmp_path) -> None:
    err = await status_error(tmp_path, 503, openai.InternalServerError)
    assert (err.type, err.code, err.body["message"]) == (
        "server_error",
        "overloaded",
        "The model is overloaded. Please try again later.",
    )


async def test_matrix_error_504(tmp_path) -> None:
    err = await status_error(tmp_path, 504, openai.InternalServerError)
    assert err.type == "server_error"


async def test_matrix_error_invalid_api_key(tmp_path) -> None:
    async with gemini_omen(tmp_path, key="AIza-wrong") as (up, _, client):
        with pytest.raises(openai.AuthenticationError) as exc:
            await client.chat.completions.create(model=MODEL, messages=PING)
        # Google answers a bad key with 400 INVALID_ARGUMENT / API_KEY_INVALID
        assert up.last_request.status == 400
        assert (exc.value.code, exc.value.body["message"]) == (
            "invalid_api_key",
            "API key not valid. Please pass a valid API key.",
        )
        assert "AIza-wrong" not in exc.value.response.text


async def test_matrix_error_model_not_found(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        with pytest.raises(openai.NotFoundError) as exc:
            await client.chat.completions.create(model="gemini/gemini-9-ultra", messages=PING)
        assert (exc.value.code, exc.value.param) == ("model_not_found", "model")
        assert "models/gemini-9-ultra is not found" in exc.value.message
        assert up.last_request.path == "/v1beta/models/gemini-9-ultra:generateContent"


async def test_matrix_error_mid_stream(tmp_path) -> None:
    async with gemini_omen(tmp_path, chunks=4) as (up, _, client):
        up.set_fault(mid_stream_error="Backend failed mid-answer.", error_after_chunks=2)
        stream = await client.chat.completions.create(model=MODEL, messages=PING, stream=True)
        seen = []
        with pytest.raises(openai.APIError, match=r"Backend failed mid-answer\."):
            async for chunk in stream:
                seen.extend(c.delta.content for c in chunk.choices if c.delta.content)
        assert seen == ["Echo:", " ping"]


async def test_matrix_error_stream_truncated(tmp_path) -> None:
    async with gemini_omen(tmp_path, chunks=4) as (up, _, client):
        up.set_fault(break_after_chunks=2)
        stream = await client.chat.completions.create(model=MODEL, messages=PING, stream=True)
        with pytest.raises(openai.APIError, match="broke the connection mid-response"):
            await collect(stream)


async def test_matrix_request_refusals(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        count = up.request_count
        for kwargs, param in (
            ({"logprobs": True}, "logprobs"),
            ({"logit_bias": {"50256": -100}}, "logit_bias"),
            ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ):
            with pytest.raises(openai.BadRequestError) as exc:
                await client.chat.completions.create(model=MODEL, messages=PING, **kwargs)
            assert exc.value.param == param
        assert up.request_count == count  # refused before anything was sent upstream


# ---- legacy completions, embeddings, models ---------------------------------------------------------------------


async def test_matrix_legacy_completions(tmp_path) -> None:
    async with gemini_omen(tmp_path) as (up, _, client):
        answer = await client.completions.create(model=MODEL, prompt="ping pong", max_tokens=16)
        assert (answer.choices[0].text, answer.choices[0].finish_reason) == ("Echo: ping pong", "stop")
        assert answer.object == "text_completion" and answer.usage.total_tokens == 5
        assert_sent(
            up,
            GEN,
            {
                "contents": [{"role": "user", "parts": [{"text": "ping pong"}]}],
                "generationConfig": {"maxOutputTokens": 16},
            },
        )
        stream = await client.completions.create(model=MODEL, prompt="ping pong", stream=True)
        text, finish = "", None
        async for chunk in stream:
            text += chunk.choices[0].text
            finish = chunk.choices[0].finish_reason or finish
        assert (text, finish) == ("Echo: ping pong", "stop")
        with pytest.raises(openai.BadRequestError) as exc:
            await client.completions.create(model=MODEL, prompt="def f():", suffix="return 1")
        assert exc.value.param == "suffix" and "fill-in-the-middle" in exc.value.message


async def test_matrix_embeddings(tmp_path) -> None:
    embed = "gemini/gemini-embedding-001"
    async with gemini_omen(tmp_path) as (up, _, client):
        single = await client.embeddings.create(model=embed, input="hello world", dimensions=4)
        assert len(single.data) == 1 and len(single.data[0].embedding) == 4
        assert_sent(
            up,
            "/v1beta/models/gemini-embedding-001:embedContent",
            {"content": {"parts": [{"text": "hello world"}]}, "outputDimensionality": 4},
        )
        batch = await client.embeddings.create(model=embed, input=["a", "b"])  # the SDK asks for base64
        assert [d.index for d in batch.data] == [0, 1] and len(batch.data[0].embedding) == 8
        assert_sent(
            up,
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            {
                "requests": [
                    {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
                    {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}},
                ]
            },
        )
        floats = await client.embeddings.create(model=embed, input=["a", "b"], encoding_format="float")
        assert [d.embedding for d in floats.data] == [d.embedding for d in batch.data]
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model=MODEL, input="x")  # not an embedding model


async def test_matrix_models(tmp_path) -> None:
    async with gemini_omen(tmp_path, discover=True) as (up, omen, _):
        await up.wait_for(lambda: bool(up.requests_to("/v1beta/models")), what="model discovery")
        listing = up.requests_to("/v1beta/models")[0]
        assert (listing.method, listing.query, listing.headers["x-goog-api-key"]) == ("GET", {"pageSize": "1000"}, KEY)
        async with httpx.AsyncClient(base_url=omen.v1) as http:
            for _ in range(100):
                ids = {m["id"] for m in (await http.get("/models")).json()["data"]}
                if "gemini/gemini-2.5-flash" in ids:
                    break
                await trio.sleep(0.02)
        assert {"gemini/gemini-2.5-flash", "gemini/gemini-2.5-pro", "gemini/gemini-embedding-001"} <= ids
        assert "gemini/imagen-4.0-generate-001" not in ids  # predict-only: not reachable through OMEN


async def test_matrix_fake_refuses_what_gemini_refuses() -> None:
    """The fake is as strict as Gemini, so the translation checked above cannot pass by leniency."""
    user = [{"role": "user", "parts": [{"text": "x"}]}]
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    cases = [
        (
            {"contents": user, "tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}]},
            400,
            'Unknown name "additionalProperties"',
        ),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, 400, "valid role"),
        ({"contents": user, "generation_config": {}}, 400, 'Unknown name "generation_config"'),
        ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, 400, "empty text parameter"),
        (
            {"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f"}, "thoughtSignature": "AAAA"}]}]},
            400,
            "Corrupted thought signature",
        ),
    ]
    async with open_fake_upstream("gemini", api_key=KEY) as up, httpx.AsyncClient(base_url=up.base_url) as http:
        for body, status, fragment in cases:
            response = await http.post(GEN, json=body, headers={"x-goog-api-key": KEY})
            assert response.status_code == status and fragment in response.json()["error"]["message"], body
        response = await http.post(GEN, json={"contents": user})
        assert (response.status_code, response.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
