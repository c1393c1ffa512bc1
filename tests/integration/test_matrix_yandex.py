"""Yandex translation matrix: the real OMEN server, driven with the official openai SDK, against the fake
Yandex Foundation Models API (tests/fakes/yandex_wire.py: proto3 JSON, cumulative-text NDJSON streams,
native tool calls for yandexgpt, OMEN's prompt-based tool protocol obeyed by the other models)."""

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

from tests.conftest import RunningOmen, running_omen
from tests.fakes import FakeUpstream, Fault, open_fake_upstream
from tests.fakes.yandex_wire import REASONING_TOKENS, tool_block

KEY = "AQVNfake-yandex-api-key"
FOLDER = "b1gfolder"
COMPLETION = "/foundationModels/v1/completion"
EMBEDDING = "/foundationModels/v1/textEmbedding"
PRO = "yandex/yandexgpt/rc"  # native function calling
LITE = "yandex/yandexgpt-lite"  # emulated tools (bare id = /latest)
HI = [{"role": "user", "content": "ping pong"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLOCK = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
}
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()


@dataclass
class Env:
    up: FakeUpstream
    omen: RunningOmen
    client: openai.AsyncOpenAI

    @property
    def sent(self) -> dict[str, Any]:
        return self.up.requests_to(COMPLETION)[-1].json

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.omen.v1) as http:
            return await http.post(path, json=body)


@asynccontextmanager
async def yandex(tmp_path: Any, *, provider: dict[str, Any] | None = None, **options: Any) -> AsyncIterator[Env]:
    options.setdefault("api_key", KEY)
    async with open_fake_upstream("yandex", **options) as up:
        section = {"type": "yandex", "api_key": KEY, "folder_id": FOLDER, "base_url": up.base_url, **(provider or {})}
        section = {k: v for k, v in section.items() if v is not None}  # None: leave the key out
        cfg = {
            "providers": {"yandex": section},
            "models": {"ygpt": {"provider": "yandex", "model": "yandexgpt"}},
            "routing": {"retries": 0},  # one upstream error -> one client error: translation, not retries
        }
        async with running_omen(cfg, tmp_path=tmp_path) as omen:
            client = openai.AsyncOpenAI(base_url=omen.v1, api_key="unused", max_retries=0)
            try:
                yield Env(up, omen, client)
            finally:
                await client.close()


async def collect(stream: Any) -> tuple[list[Any], str, Any]:
    chunks, text, usage = [], "", None
    async for chunk in stream:
        chunks.append(chunk)
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    return chunks, text, usage


def finish_of(chunks: list[Any]) -> str | None:
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(reasons) <= 1
    return reasons[0] if reasons else None


def streamed_calls(chunks: list[Any]) -> list[dict[str, Any]]:
    """Tool-call deltas merged by index, the way OpenAI clients accumulate them."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            slot["id"] = tc.id or slot["id"]
            if tc.function is not None:
                slot["name"] += tc.function.name or ""
                slot["arguments"] += tc.function.arguments or ""
    return [calls[i] for i in sorted(calls)]


# ---- text, stream, auth, routing -------------------------------------------------------------------------


async def test_matrix_text(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        raw = await env.client.chat.completions.with_raw_response.create(
            model=PRO,
            messages=[{"role": "system", "content": "Be brief."}, *HI],
            temperature=0.5,
            max_tokens=50,
        )
        answer = raw.parse()
        assert answer.choices[0].message.content == "Echo: ping pong"
        assert answer.choices[0].finish_reason == "stop"
        assert answer.model == "yandexgpt/rc" and answer.id.startswith("chatcmpl-")
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (4, 3, 7)
        assert answer.usage.prompt_tokens_details is None  # Yandex reports no cached tokens
        assert raw.headers["x-omen-provider"] == "yandex"
        (sent,) = env.up.requests
        assert (sent.method, sent.path) == ("POST", COMPLETION)
        assert sent.headers["authorization"] == f"Api-Key {KEY}" and sent.headers["x-folder-id"] == FOLDER
        assert sent.headers["content-type"] == "application/json"
        assert sent.body == (
            b'{"modelUri":"gpt://b1gfolder/yandexgpt/rc","completionOptions":{"stream":false,"temperature":0.5,'
            b'"maxTokens":"50"},"messages":[{"role":"system","text":"Be brief."},{"role":"user","text":"ping pong"}]}'
        )


async def test_matrix_model_ids_and_listing(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        for model, uri in [
            ("ygpt", "gpt://b1gfolder/yandexgpt/latest"),  # configured model, bare id
            ("yandex/yandexgpt-32k/deprecated", "gpt://b1gfolder/yandexgpt-32k/deprecated"),
            ("yandex/gpt://b1gother/yandexgpt-lite/rc", "gpt://b1gother/yandexgpt-lite/rc"),  # a URI passes through
            ("yandex/llama-lite/latest", "gpt://b1gfolder/llama-lite/latest"),  # not listed: provider prefix
        ]:
            answer = await env.client.chat.completions.create(model=model, messages=HI)
            assert answer.choices[0].message.content == "Echo: ping pong"
            assert env.sent["modelUri"] == uri
        listing = await env.client.models.list()
        ids = {m.id for m in listing.data}
        for name in ("yandexgpt", "yandexgpt-lite", "yandexgpt-32k"):
            for version in ("latest", "rc", "deprecated"):
                assert f"yandex/{name}/{version}" in ids
        assert {"yandex/text-search-doc", "yandex/text-search-query", "ygpt"} <= ids
        entry = await env.client.models.retrieve("yandex/yandexgpt/rc")
        assert entry.owned_by == "yandex"
        with pytest.raises(openai.BadRequestError) as exc:
            await env.client.chat.completions.create(model="yandex/yandexgpt/rc/x", messages=HI)
        assert exc.value.body["param"] == "model"


async def test_matrix_iam_token_auth(tmp_path) -> None:
    provider = {"api_key": None, "iam_token": "t1.iam-token"}
    async with yandex(tmp_path, api_key="t1.iam-token", provider=provider) as env:
        answer = await env.client.chat.completions.create(model=LITE, messages=HI)
        assert answer.choices[0].message.content == "Echo: ping pong"
        headers = env.up.last_request.headers
        assert headers["authorization"] == "Bearer t1.iam-token" and headers["x-folder-id"] == FOLDER


async def test_matrix_stream(tmp_path) -> None:
    async with yandex(tmp_path, chunks=4) as env:
        stream = await env.client.chat.completions.create(
            model=PRO, messages=HI, stream=True, stream_options={"include_usage": True}
        )
        chunks, text, usage = await collect(stream)
        assert text == "Echo: ping pong w3"  # the fake's cumulative texts, turned into deltas
        deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert deltas == ["Echo:", " ping", " pong", " w3"]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert finish_of(chunks) == "stop"
        assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2, 4, 6)
        assert env.sent == {
            "modelUri": "gpt://b1gfolder/yandexgpt/rc",
            "completionOptions": {"stream": True},
            "messages": [{"role": "user", "text": "ping pong"}],
        }
        chunks, _, usage = await collect(await env.client.chat.completions.create(model=PRO, messages=HI, stream=True))
        assert usage is None and all(c.choices for c in chunks)


# ---- tools: native (yandexgpt) and emulated (yandexgpt-lite) ----------------------------------------------


async def test_matrix_tools(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        answer = await env.client.chat.completions.create(
            model=PRO, messages=[{"role": "user", "content": "Kazan"}], tools=[WEATHER], tool_choice="auto"
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.id.startswith("call_") and call.type == "function"
        assert (call.function.name, orjson.loads(call.function.arguments)) == ("get_weather", {"city": "Kazan"})
        assert env.sent == {
            "modelUri": "gpt://b1gfolder/yandexgpt/rc",
            "completionOptions": {"stream": False},
            "messages": [{"role": "user", "text": "Kazan"}],
            "tools": [{"function": WEATHER["function"]}],
            "toolChoice": {"mode": "AUTO"},
        }


async def test_matrix_tools_emulated(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        answer = await env.client.chat.completions.create(
            model=LITE,
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Kazan"}],
            tools=[WEATHER],
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert (call.function.name, orjson.loads(call.function.arguments)) == ("get_weather", {"city": "Kazan"})
        sent = env.sent
        assert "tools" not in sent and sent["modelUri"] == "gpt://b1gfolder/yandexgpt-lite/latest"
        system, user = sent["messages"]
        assert system["role"] == "system" and system["text"].startswith("Be brief.\n\nYou can call tools")
        assert '"name": "get_weather"' in system["text"] and '{"tool_calls": [{"name": "<tool name>"' in system["text"]
        assert user == {"role": "user", "text": "Kazan"}
        # prose around the block becomes content; a block naming an unknown tool stays text
        env.up.configure(reply="Let me look.\n" + tool_block([("get_weather", {"city": "Oslo"})]))
        answer = await env.client.chat.completions.create(model=LITE, messages=HI, tools=[WEATHER])
        assert answer.choices[0].message.content == "Let me look."
        assert answer.choices[0].message.tool_calls[0].function.arguments == '{"city":"Oslo"}'
        env.up.configure(reply=tool_block([("format_disk", {})]))
        answer = await env.client.chat.completions.create(model=LITE, messages=HI, tools=[WEATHER])
        assert answer.choices[0].finish_reason == "stop" and "format_disk" in answer.choices[0].message.content


async def test_matrix_tool_choice(tmp_path) -> None:
    async with yandex(tmp_path, tool_calls=2) as env:
        forced = {"type": "function", "function": {"name": "get_time"}}
        answer = await env.client.chat.completions.create(
            model=PRO, messages=HI, tools=[WEATHER, CLOCK], tool_choice=forced
        )
        assert [c.function.name for c in answer.choices[0].message.tool_calls] == ["get_time"]
        assert env.sent["toolChoice"] == {"functionName": "get_time"}
        answer = await env.client.chat.completions.create(model=PRO, messages=HI, tools=[WEATHER], tool_choice="none")
        assert answer.choices[0].message.content == "Echo: ping pong" and env.sent["toolChoice"] == {"mode": "NONE"}
        answer = await env.client.chat.completions.create(model=LITE, messages=HI, tools=[WEATHER], tool_choice="none")
        assert answer.choices[0].message.content == "Echo: ping pong"
        assert env.sent["messages"] == [{"role": "user", "text": "ping pong"}]  # no tool prompt at all
        await env.client.chat.completions.create(model=LITE, messages=HI, tools=[WEATHER], tool_choice="required")
        assert "You must call at least one tool now." in env.sent["messages"][0]["text"]
        with pytest.raises(openai.BadRequestError) as exc:
            await env.client.chat.completions.create(
                model=LITE, messages=HI, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "x"}}
            )
        assert exc.value.body["param"] == "tool_choice"


async def test_matrix_streamed_tools(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        # emulated: the block arrives as several cumulative texts; OMEN holds it and sends tool_calls deltas
        stream = await env.client.chat.completions.create(
            model=LITE, messages=[{"role": "user", "content": "Kazan"}], tools=[WEATHER], stream=True
        )
        chunks, text, _ = await collect(stream)
        assert text == ""  # nothing of the block leaks out as content
        assert finish_of(chunks) == "tool_calls"
        (call,) = streamed_calls(chunks)
        assert call["id"].startswith("call_") and call["name"] == "get_weather"
        assert orjson.loads(call["arguments"]) == {"city": "Kazan"}
        assert env.sent["completionOptions"] == {"stream": True}
        # prose before the block streams as content
        env.up.configure(reply="Checking the weather.\n" + tool_block([("get_weather", {"city": "Oslo"})]))
        chunks, text, _ = await collect(
            await env.client.chat.completions.create(model=LITE, messages=HI, tools=[WEATHER], stream=True)
        )
        assert text == "Checking the weather.\n" and finish_of(chunks) == "tool_calls"
        assert orjson.loads(streamed_calls(chunks)[0]["arguments"]) == {"city": "Oslo"}
        env.up.configure(reply=None)
        # native: the tool calls arrive with the final object
        chunks, text, _ = await collect(
            await env.client.chat.completions.create(model=PRO, messages=HI, tools=[WEATHER], stream=True)
        )
        assert text == "" and finish_of(chunks) == "tool_calls"
        assert streamed_calls(chunks)[0]["name"] == "get_weather"


@pytest.mark.parametrize("model", [PRO, LITE])
async def test_matrix_parallel_tool_calls(tmp_path, model) -> None:
    async with yandex(tmp_path, tool_calls=2) as env:
        answer = await env.client.chat.completions.create(model=model, messages=HI, tools=[WEATHER, CLOCK])
        calls = answer.choices[0].message.tool_calls
        assert [c.function.name for c in calls] == ["get_weather", "get_time"]
        assert len({c.id for c in calls}) == 2
        chunks, _, _ = await collect(
            await env.client.chat.completions.create(model=model, messages=HI, tools=[WEATHER, CLOCK], stream=True)
        )
        merged = streamed_calls(chunks)
        assert [c["name"] for c in merged] == ["get_weather", "get_time"]
        assert [orjson.loads(c["arguments"]) for c in merged] == [{"city": "ping pong"}, {"tz": "ping pong"}]
        answer = await env.client.chat.completions.create(
            model=model, messages=HI, tools=[WEATHER, CLOCK], parallel_tool_calls=False
        )
        assert len(answer.choices[0].message.tool_calls) == 1
        if model == PRO:
            assert env.sent["parallelToolCalls"] is False
        else:
            assert "Call at most one tool per answer." in env.sent["messages"][0]["text"]


def _round_trip_messages() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Weather in Kazan?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Kazan"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "+18, sunny"},
    ]


async def test_matrix_tool_result_round_trip(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        answer = await env.client.chat.completions.create(model=PRO, messages=_round_trip_messages(), tools=[WEATHER])
        assert answer.choices[0].message.content == "Echo: +18, sunny"
        assert answer.choices[0].finish_reason == "stop"
        assert env.sent["messages"] == [
            {"role": "user", "text": "Weather in Kazan?"},
            {
                "role": "assistant",
                "toolCallList": {
                    "toolCalls": [{"functionCall": {"name": "get_weather", "arguments": {"city": "Kazan"}}}]
                },
            },
            {
                "role": "user",
                "toolResultList": {
                    "toolResults": [{"functionResult": {"name": "get_weather", "content": "+18, sunny"}}]
                },
            },
        ]


async def test_matrix_tool_result_round_trip_emulated(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        answer = await env.client.chat.completions.create(model=LITE, messages=_round_trip_messages(), tools=[WEATHER])
        assert answer.choices[0].message.content == "Echo: +18, sunny"
        _, user, assistant, results = env.sent["messages"]
        assert user == {"role": "user", "text": "Weather in Kazan?"}
        assert assistant == {
            "role": "assistant",
            "text": '```json\n{"tool_calls":[{"name":"get_weather","arguments":{"city":"Kazan"}}]}\n```',
        }
        assert results == {
            "role": "user",
            "text": 'Tool results:\n```json\n{"tool_results":[{"name":"get_weather","content":"+18, sunny"}]}\n```',
        }


# ---- images, JSON mode, stop sequences, usage --------------------------------------------------------------


@pytest.mark.parametrize("url", [PNG, "https://example.com/cat.png"])
async def test_matrix_image_refused(tmp_path, url) -> None:
    async with yandex(tmp_path) as env:
        content = [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": url}}]
        with pytest.raises(openai.BadRequestError) as exc:
            await env.client.chat.completions.create(model=PRO, messages=[{"role": "user", "content": content}])
        body = exc.value.body
        assert body["code"] == "unsupported_capability" and body["param"] == "messages[0].content[1]"
        # refused before any upstream work, by the capability catalog or by the translator itself
        assert "images" in body["message"]
        assert env.up.requests == []


async def test_matrix_json_mode(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        answer = await env.client.chat.completions.create(
            model=PRO, messages=HI, response_format={"type": "json_object"}
        )
        assert orjson.loads(answer.choices[0].message.content) == {"answer": "Echo: ping pong"}
        assert env.sent["jsonObject"] is True
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
        await env.client.chat.completions.create(
            model=PRO,
            messages=HI,
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        )
        assert env.sent["jsonSchema"] == {"schema": schema} and "jsonObject" not in env.sent


async def test_matrix_stop_sequences(tmp_path) -> None:
    async with yandex(tmp_path, reply="one two three four five") as env:
        answer = await env.client.chat.completions.create(model=PRO, messages=HI, stop=["four", "zzz"])
        assert answer.choices[0].message.content == "one two three "
        assert answer.choices[0].finish_reason == "stop"
        assert "stop" not in orjson.dumps(env.sent).decode()  # Yandex has no stop sequences: OMEN cuts
        chunks, text, _ = await collect(
            await env.client.chat.completions.create(model=PRO, messages=HI, stop="thr", stream=True)
        )
        assert text == "one two " and finish_of(chunks) == "stop"


async def test_matrix_usage_reasoning_tokens(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        answer = await env.client.chat.completions.create(model=PRO, messages=HI, reasoning_effort="high")
        usage = answer.usage
        assert usage.completion_tokens == 3 + REASONING_TOKENS
        assert usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS
        assert usage.prompt_tokens_details is None  # Yandex reports no cached tokens
        assert env.sent["completionOptions"]["reasoningOptions"] == {"mode": "ENABLED_HIDDEN"}
        _, _, usage = await collect(
            await env.client.chat.completions.create(
                model=PRO, messages=HI, reasoning_effort="high", stream=True, stream_options={"include_usage": True}
            )
        )
        assert usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS


@pytest.mark.parametrize(
    ("param", "value"),
    [("top_p", 0.5), ("seed", 1), ("n", 2), ("frequency_penalty", 0.3), ("temperature", 1.5), ("logprobs", True)],
)
async def test_matrix_unsupported_parameters(tmp_path, param, value) -> None:
    async with yandex(tmp_path) as env:
        response = await env.post("/chat/completions", {"model": PRO, "messages": HI, param: value})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == param
        assert env.up.requests == []


# ---- finish reasons --------------------------------------------------------------------------------------


async def _finish(tmp_path: Any, fault: Fault | None, **kw: Any) -> tuple[str, str | None]:
    async with yandex(tmp_path, chunks=3) as env:
        if fault is not None:
            env.up.set_fault(fault)
        answer = await env.client.chat.completions.create(model=PRO, messages=HI, **kw)
        chunks, _, _ = await collect(
            await env.client.chat.completions.create(model=PRO, messages=HI, stream=True, **kw)
        )
        return answer.choices[0].finish_reason, finish_of(chunks)


async def test_matrix_finish_stop(tmp_path) -> None:
    assert await _finish(tmp_path, None) == ("stop", "stop")


async def test_matrix_finish_length(tmp_path) -> None:
    assert await _finish(tmp_path, None, max_tokens=2) == ("length", "length")


async def test_matrix_finish_content_filter(tmp_path) -> None:
    assert await _finish(tmp_path, Fault(finish_reason="content_filter")) == ("content_filter", "content_filter")


async def test_matrix_finish_tool_calls(tmp_path) -> None:
    assert await _finish(tmp_path, None, tools=[WEATHER]) == ("tool_calls", "tool_calls")


# ---- errors ----------------------------------------------------------------------------------------------


async def _error(tmp_path: Any, status: int, exc_type: type[Exception], message: str | None = None) -> Any:
    async with yandex(tmp_path) as env:
        env.up.set_fault(Fault(status=status, message=message, retry_after=3 if status == 429 else None))
        with pytest.raises(exc_type) as exc:
            await env.client.chat.completions.create(model=PRO, messages=HI)
        assert exc.value.status_code == status
        with pytest.raises(exc_type):  # streamed requests fail the same way, before the stream starts
            await env.client.chat.completions.create(model=PRO, messages=HI, stream=True)
        return exc.value


async def test_matrix_error_400(tmp_path) -> None:
    err = await _error(
        tmp_path, 400, openai.BadRequestError, "Specified folder ID 'b1gx' does not match with service account folder"
    )
    assert err.body["type"] == "invalid_request_error" and err.body["code"] == "invalid_argument"
    assert err.body["message"].startswith("Specified folder ID")


async def test_matrix_error_401(tmp_path) -> None:
    err = await _error(tmp_path, 401, openai.AuthenticationError)
    assert err.body["type"] == "authentication_error" and err.body["code"] == "unauthenticated"


async def test_matrix_error_401_wrong_key(tmp_path) -> None:
    async with yandex(tmp_path, api_key="AQVN-the-right-key") as env:
        with pytest.raises(openai.AuthenticationError) as exc:
            await env.client.chat.completions.create(model=PRO, messages=HI)
        assert exc.value.body["message"] == "Unknown api key 'AQVN***'"
        assert KEY not in orjson.dumps(exc.value.body).decode()


async def test_matrix_error_403(tmp_path) -> None:
    err = await _error(tmp_path, 403, openai.PermissionDeniedError)
    assert (err.body["type"], err.body["code"], err.body["message"]) == (
        "permission_error",
        "permission_denied",
        "Permission denied",
    )


async def test_matrix_error_404(tmp_path) -> None:
    async with yandex(tmp_path, models=["yandexgpt"]) as env:
        with pytest.raises(openai.NotFoundError) as exc:
            await env.client.chat.completions.create(model=LITE, messages=HI)
        assert (exc.value.body["code"], exc.value.body["param"]) == ("model_not_found", "model")
        assert "gpt://b1gfolder/yandexgpt-lite/latest" in exc.value.body["message"]
        response = await env.post("/chat/completions", {"model": "nobody/yandexgpt", "messages": HI})
        assert response.status_code == 404  # unknown provider prefix: OMEN's own 404
    err = await _error(tmp_path, 404, openai.NotFoundError)
    assert err.body["code"] == "not_found"


async def test_matrix_error_429(tmp_path) -> None:
    err = await _error(tmp_path, 429, openai.RateLimitError)
    assert err.body["type"] == "rate_limit_error" and err.body["code"] == "rate_limit_exceeded"
    assert "quota limit exceed" in err.body["message"]
    assert err.response.headers["retry-after"] == "3"


async def test_matrix_error_500(tmp_path) -> None:
    err = await _error(tmp_path, 500, openai.InternalServerError)
    assert err.body["type"] == "server_error" and err.body["message"] == "Internal error"


async def test_matrix_error_503(tmp_path) -> None:
    err = await _error(tmp_path, 503, openai.InternalServerError)
    assert err.body["type"] == "server_error" and err.body["message"] == "Service is not available now"


async def test_matrix_error_plain_grpc_gateway_shape(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        env.up.set_fault(Fault(status=400, body={"code": 3, "message": "modelUri: invalid", "details": []}))
        with pytest.raises(openai.BadRequestError) as exc:
            await env.client.chat.completions.create(model=PRO, messages=HI)
        assert (exc.value.body["message"], exc.value.body["code"]) == ("modelUri: invalid", "invalid_argument")


async def test_matrix_error_mid_stream(tmp_path) -> None:
    async with yandex(tmp_path, chunks=4) as env:
        env.up.set_fault(Fault(mid_stream_error="model crashed", error_after_chunks=2))
        stream = await env.client.chat.completions.create(model=PRO, messages=HI, stream=True)
        with pytest.raises(openai.APIError) as exc:
            await collect(stream)
        assert "model crashed" in exc.value.message


async def test_matrix_error_stream_cut(tmp_path) -> None:
    async with yandex(tmp_path, chunks=4) as env:
        env.up.set_fault(Fault(break_after_chunks=2))
        stream = await env.client.chat.completions.create(model=PRO, messages=HI, stream=True)
        with pytest.raises(openai.APIError):
            await collect(stream)


# ---- embeddings, legacy completions, secrets ------------------------------------------------------------


async def test_matrix_embeddings(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        result = await env.client.embeddings.create(model="yandex/text-search-doc", input="hello world", dimensions=4)
        assert len(result.data) == 1 and len(result.data[0].embedding) == 4
        assert result.usage.prompt_tokens == 2
        sent = env.up.requests_to(EMBEDDING)[-1]
        assert sent.json == {"modelUri": "emb://b1gfolder/text-search-doc/latest", "text": "hello world", "dim": "4"}
        assert sent.headers["authorization"] == f"Api-Key {KEY}" and sent.headers["x-folder-id"] == FOLDER
        result = await env.client.embeddings.create(model="yandex/text-search-query", input=["query"])
        assert env.up.requests_to(EMBEDDING)[-1].json["modelUri"] == "emb://b1gfolder/text-search-query/latest"
        with pytest.raises(openai.BadRequestError) as exc:
            await env.client.embeddings.create(model="yandex/text-search-doc", input=["a", "b"])
        assert exc.value.body["param"] == "input" and "one text per request" in exc.value.body["message"]


async def test_matrix_legacy_completions(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        result = await env.client.completions.create(model="yandex/yandexgpt-lite/rc", prompt="ping pong", max_tokens=9)
        assert result.choices[0].text == "Echo: ping pong" and result.choices[0].finish_reason == "stop"
        assert env.sent == {
            "modelUri": "gpt://b1gfolder/yandexgpt-lite/rc",
            "completionOptions": {"stream": False, "maxTokens": "9"},
            "messages": [{"role": "user", "text": "ping pong"}],
        }
        stream = await env.client.completions.create(model="yandex/yandexgpt-lite/rc", prompt="ping pong", stream=True)
        assert "".join([c.choices[0].text async for c in stream if c.choices]) == "Echo: ping pong"


async def test_matrix_secrets_not_logged_or_echoed(tmp_path) -> None:
    async with yandex(tmp_path) as env:
        await env.client.chat.completions.create(model=PRO, messages=HI)
        env.up.set_fault(Fault(status=401, message=f"Unknown api key '{KEY}'"))
        with pytest.raises(openai.AuthenticationError) as exc:
            await env.client.chat.completions.create(model=PRO, messages=HI)
        assert KEY not in exc.value.body["message"] and "***" in exc.value.body["message"]
        assert KEY not in env.omen.log.getvalue().decode()
