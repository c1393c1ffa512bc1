"""The Anthropic-compatible API (/v1/messages, /v1/messages/count_tokens) through the real server, driven
by the official ``anthropic`` SDK, served by fake upstreams that speak other formats (OpenAI, Ollama):
text, streams, tools (streamed too), tool results, images, system, stop sequences, token counting, and
every error in Anthropic's shape. Each test asserts what the upstream was actually sent."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from omen.api.chat import ChatCompletionRequest
from omen.api.decode import decode_body
from omen.tokens import count_chat
from tests.conftest import RunningOmen, openai_provider, running_omen
from tests.fakes import FakeUpstream, Fault, open_fake_upstream

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10fake").decode()
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}
GIF = base64.b64encode(
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
).decode()
KINDS = ["openai", "ollama"]
VISION = ["llama3.2", "llama3.2-vision"]  # the catalog knows llama3.2 has no vision


@dataclass
class Served:
    kind: str
    up: FakeUpstream
    omen: RunningOmen
    client: anthropic.AsyncAnthropic
    model: str

    def sent(self) -> dict[str, Any]:
        """The JSON body of the upstream's last chat request."""
        return self.up.last_request.json


@asynccontextmanager
async def serve(kind: str, tmp_path: Any, config: dict | None = None, **options: Any) -> AsyncIterator[Served]:
    async with open_fake_upstream(kind, **options) as up:
        if kind == "ollama":
            cfg: dict[str, Any] = {"providers": {"ollama": {"endpoints": [up.base_url]}}}
            model = "ollama/llama3.2"
        else:
            cfg = {"providers": {"openai": openai_provider(up)}}
            model = "gpt-4o-mini"
        cfg.update(config or {})
        async with running_omen(cfg, tmp_path=tmp_path) as omen:
            client = anthropic.AsyncAnthropic(base_url=omen.url, api_key="unused", max_retries=0)
            try:
                yield Served(kind, up, omen, client, model)
            finally:
                await client.close()


def upstream_model(s: Served) -> str:
    return "llama3.2" if s.kind == "ollama" else "gpt-4o-mini"


# ---- text, system, sampling ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_text(kind, tmp_path) -> None:
    async with serve(kind, tmp_path, api_key="sk-upstream-secret" if kind == "openai" else None) as s:
        raw = await s.client.messages.with_raw_response.create(
            model=s.model,
            max_tokens=50,
            system="Be brief.",
            messages=[{"role": "user", "content": "hello gateway"}],
            extra_headers={"x-request-id": "msg-text-1"},
        )
        message = await raw.parse()
        assert message.type == "message" and message.role == "assistant" and message.model == s.model
        assert message.id.startswith("msg_")
        assert [(b.type, b.text) for b in message.content] == [("text", "Echo: hello gateway")]
        assert message.stop_reason == "end_turn" and message.stop_sequence is None
        assert message.usage.output_tokens == 3 and message.usage.input_tokens == 4  # the fake counts words
        assert raw.headers["x-omen-provider"] == kind
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello gateway"}]
        if kind == "openai":
            assert s.sent() == {"model": "gpt-4o-mini", "messages": messages, "max_completion_tokens": 50}
            assert s.up.last_request.headers["authorization"] == "Bearer sk-upstream-secret"
        else:
            assert s.sent() == {
                "model": "llama3.2",
                "messages": messages,
                "stream": False,
                "options": {"num_predict": 50},
            }
        record = await s.omen.log_for("msg-text-1")
        assert record["path"] == "/v1/messages" and record["status"] == 200
        assert (record["prompt_tokens"], record["completion_tokens"]) == (4, 3)


async def test_system_blocks_stop_sequences_and_sampling(tmp_path) -> None:
    async with serve("openai", tmp_path, reply="Echo: one two STOP three") as s:
        message = await s.client.messages.create(
            model=s.model,
            max_tokens=20,
            system=[{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}],
            messages=[{"role": "user", "content": [{"type": "text", "text": "count"}]}],
            stop_sequences=["STOP", "END"],
            metadata={"user_id": "user-7"},
            extra_body={"temperature": 0.2, "top_p": 0.8, "top_k": 5},
        )
        assert message.content[0].text == "Echo: one two STOP three"
        assert s.sent() == {
            "model": "gpt-4o-mini",
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}],
                },
                {"role": "user", "content": [{"type": "text", "text": "count"}]},
            ],
            "temperature": 0.2,
            "top_p": 0.8,
            "max_completion_tokens": 20,
            "stop": ["STOP", "END"],
            "user": "user-7",
        }  # top_k has no OpenAI equivalent


@pytest.mark.parametrize("kind", KINDS)
async def test_max_tokens_stop_reason(kind, tmp_path) -> None:
    async with serve(kind, tmp_path) as s:
        message = await s.client.messages.create(
            model=s.model, max_tokens=2, messages=[{"role": "user", "content": "a b c d"}]
        )
        assert message.content[0].text == "Echo: a" and message.stop_reason == "max_tokens"
        async with s.client.messages.stream(
            model=s.model, max_tokens=2, messages=[{"role": "user", "content": "a b c d"}]
        ) as stream:
            final = await stream.get_final_message()
        assert final.content[0].text == "Echo: a" and final.stop_reason == "max_tokens"
        assert final.usage.output_tokens == 2


# ---- streaming -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_text(kind, tmp_path) -> None:
    async with serve(kind, tmp_path) as s:
        async with s.client.messages.stream(
            model=s.model, max_tokens=100, messages=[{"role": "user", "content": "stream me please"}]
        ) as stream:
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
        assert pieces == ["Echo:", " stream", " me", " please"]
        assert [(b.type, b.text) for b in final.content] == [("text", "Echo: stream me please")]
        assert final.stop_reason == "end_turn"
        # usage arrives in message_delta: OMEN asked the upstream for it
        assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)
        if kind == "openai":
            assert s.sent()["stream"] is True and s.sent()["stream_options"] == {"include_usage": True}
        else:
            assert s.sent()["stream"] is True


async def test_stream_exact_events_over_http(tmp_path) -> None:
    async with serve("openai", tmp_path) as s, httpx.AsyncClient(base_url=s.omen.url) as http:
        body = {"model": s.model, "max_tokens": 9, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        response = await http.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.text == (
            "event: message_start\n"
            'data: {"type":"message_start","message":{"id":"msg_fake00000001","type":"message","role":"assistant",'
            '"model":"gpt-4o-mini","content":[],"stop_reason":null,"stop_sequence":null,'
            '"usage":{"input_tokens":0,"output_tokens":0}}}\n\n'
            "event: content_block_start\n"
            'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
            "event: content_block_delta\n"
            'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Echo:"}}\n\n'
            "event: content_block_delta\n"
            'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" hi"}}\n\n'
            "event: content_block_stop\n"
            'data: {"type":"content_block_stop","index":0}\n\n'
            "event: message_delta\n"
            'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
            '"usage":{"input_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":2}}\n\n'
            "event: message_stop\n"
            'data: {"type":"message_stop"}\n\n'
        )


# ---- tools -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_tools(kind, tmp_path) -> None:
    async with serve(kind, tmp_path) as s:
        message = await s.client.messages.create(
            model=s.model,
            max_tokens=100,
            messages=[{"role": "user", "content": "Paris"}],
            tools=[WEATHER],
            tool_choice={"type": "auto"},
        )
        assert message.stop_reason == "tool_use"
        [block] = message.content
        assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
        assert block.id
        tool = {"type": "function", "function": {"name": "get_weather", "description": WEATHER["description"]}}
        tool["function"]["parameters"] = WEATHER["input_schema"]
        assert s.sent()["tools"] == [tool if kind == "openai" else {**tool, "type": "function"}]
        if kind == "openai":
            assert s.sent()["tool_choice"] == "auto"


@pytest.mark.parametrize("kind", KINDS)
async def test_streaming_with_parallel_tools(kind, tmp_path) -> None:
    async with serve(kind, tmp_path, tool_calls=2) as s:
        async with s.client.messages.stream(
            model=s.model,
            max_tokens=100,
            messages=[{"role": "user", "content": "Tokyo"}],
            tools=[WEATHER, TIME],
        ) as stream:
            events = [event async for event in stream]
            final = await stream.get_final_message()
        assert final.stop_reason == "tool_use"
        assert [(b.type, b.name, b.input) for b in final.content] == [
            ("tool_use", "get_weather", {"city": "Tokyo"}),
            ("tool_use", "get_time", {"tz": "Tokyo"}),
        ]
        assert len({b.id for b in final.content}) == 2
        types = [e.type for e in events]
        assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
        starts = [e.index for e in events if e.type == "content_block_start"]
        stops = [e.index for e in events if e.type == "content_block_stop"]
        assert starts == stops == [0, 1]
        fragments = [e.delta.partial_json for e in events if e.type == "content_block_delta"]
        # OpenAI streams the arguments in pieces; Ollama sends each call whole
        assert len(fragments) == (6 if kind == "openai" else 2)
        assert "".join(fragments) == '{"city":"Tokyo"}{"tz":"Tokyo"}'
        assert final.usage.output_tokens > 0


async def test_tool_choice_tool_and_disable_parallel(tmp_path) -> None:
    async with serve("openai", tmp_path, tool_calls=2) as s:
        message = await s.client.messages.create(
            model=s.model,
            max_tokens=100,
            messages=[{"role": "user", "content": "UTC"}],
            tools=[WEATHER, TIME],
            tool_choice={"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
        )
        assert [(b.name, b.input) for b in message.content] == [("get_time", {"tz": "UTC"})]
        sent = s.sent()
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
        assert sent["parallel_tool_calls"] is False


@pytest.mark.parametrize("kind", KINDS)
async def test_tool_result_round_trip(kind, tmp_path) -> None:
    async with serve(kind, tmp_path) as s:
        first = await s.client.messages.create(
            model=s.model, max_tokens=100, messages=[{"role": "user", "content": "Oslo"}], tools=[WEATHER]
        )
        [call] = first.content
        history = [
            {"role": "user", "content": "Oslo"},
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny and 21C"}],
            },
        ]
        second = await s.client.messages.create(model=s.model, max_tokens=100, messages=history, tools=[WEATHER])
        assert second.stop_reason == "end_turn"
        assert second.content[0].text == "Echo: sunny and 21C"
        sent = s.sent()["messages"]
        if kind == "openai":
            assert sent[1] == {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            }
            assert sent[2] == {"role": "tool", "content": "sunny and 21C", "tool_call_id": call.id}
        else:
            assert sent[1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]
            assert sent[2] == {"role": "tool", "content": "sunny and 21C", "tool_name": "get_weather"}


# ---- images ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_image_base64(kind, tmp_path) -> None:
    async with serve(kind, tmp_path, models=VISION if kind == "ollama" else None) as s:
        message = await s.client.messages.create(
            model=s.model if kind == "openai" else "ollama/llama3.2-vision",
            max_tokens=100,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                        {"type": "text", "text": "what is this"},
                    ],
                }
            ],
        )
        assert message.content[0].text == "Echo: what is this"
        [user] = s.sent()["messages"]
        if kind == "openai":
            assert user["content"] == [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "text", "text": "what is this"},
            ]
        else:
            assert user == {"role": "user", "content": "what is this", "images": [PNG]}


# ---- count_tokens ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_count_tokens(kind, tmp_path) -> None:
    async with serve(kind, tmp_path) as s:
        count = await s.client.messages.count_tokens(
            model=s.model,
            system="You are a helpful assistant.",
            messages=[{"role": "user", "content": "How many tokens is this sentence?"}],
            tools=[WEATHER],
        )
        expected_request = decode_body(
            orjson.dumps(
                {
                    "model": "x",
                    "messages": [
                        {"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": "How many tokens is this sentence?"},
                    ],
                }
            ),
            ChatCompletionRequest,
        )
        tool = {"type": "function", "function": {"name": WEATHER["name"], "description": WEATHER["description"]}}
        tool["function"]["parameters"] = WEATHER["input_schema"]
        assert count.input_tokens == count_chat(expected_request.messages, upstream_model(s), [tool])
        assert count.input_tokens > 20
        assert s.up.requests_to("/v1/chat/completions") == [] and s.up.requests_to("/api/chat") == []


# ---- errors ----------------------------------------------------------------------------------------


def anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind and body["request_id"]
    assert set(body) == {"type", "error", "request_id"} and set(body["error"]) == {"type", "message"}
    return body["error"]["message"]


async def test_errors_unknown_model_and_bad_requests(tmp_path) -> None:
    async with serve("openai", tmp_path) as s:
        with pytest.raises(anthropic.NotFoundError) as info:
            await s.client.messages.create(
                model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
        assert info.value.status_code == 404 and info.value.body["error"]["type"] == "not_found_error"
        assert "no-such-model" in info.value.body["error"]["message"]
        with pytest.raises(anthropic.BadRequestError) as info:
            await s.client.messages.create(
                model=s.model,
                max_tokens=5,
                messages=[
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": "y"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "z"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/tiff", "data": "AA"}},
                        ],
                    },
                ],
            )
        error = info.value.body["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"].startswith("messages[2].content[1].source.media_type: Unsupported image media_type")
        with pytest.raises(anthropic.NotFoundError):
            await s.client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "x"}])
        assert s.up.request_count == 0  # refused before reaching the upstream
        async with httpx.AsyncClient(base_url=s.omen.url) as http:
            missing = await http.post(
                "/v1/messages", json={"model": s.model, "messages": [{"role": "user", "content": "x"}]}
            )
            assert anthropic_error(missing, 400, "invalid_request_error") == "Missing required field 'max_tokens'."
            wrong_type = await http.post(
                "/v1/messages",
                json={
                    "model": s.model,
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": [{"type": "audio"}]}],
                },
            )
            assert "'messages[0].content[0].type'" in anthropic_error(wrong_type, 400, "invalid_request_error")
            not_json = await http.post("/v1/messages", content=b"{nope", headers={"content-type": "application/json"})
            assert "not valid JSON" in anthropic_error(not_json, 400, "invalid_request_error")
            method = await http.get("/v1/messages")
            assert "use POST" in anthropic_error(method, 405, "invalid_request_error")
            assert method.headers["allow"] == "POST"
            # the OpenAI endpoints keep OpenAI's shape
            openai_shape = await http.post("/v1/chat/completions", json={"model": "nope", "messages": []})
            assert set(openai_shape.json()) == {"error"}


async def test_errors_from_the_upstream(tmp_path) -> None:
    # how one upstream error is rendered in Anthropic's shape: no retries
    async with serve("openai", tmp_path, config={"routing": {"retries": 0}}) as s:
        user = [{"role": "user", "content": "x"}]
        s.up.fault = Fault.rate_limited(retry_after=7)
        with pytest.raises(anthropic.RateLimitError) as info:
            await s.client.messages.create(model=s.model, max_tokens=5, messages=user)
        assert info.value.status_code == 429 and info.value.body["error"]["type"] == "rate_limit_error"
        assert info.value.response.headers["retry-after"] == "7"
        with pytest.raises(anthropic.RateLimitError):  # before the stream starts: a plain HTTP error too
            async with s.client.messages.stream(model=s.model, max_tokens=5, messages=user) as stream:
                await stream.get_final_message()
        for status, error_class, kind in [
            (401, anthropic.AuthenticationError, "authentication_error"),
            (403, anthropic.PermissionDeniedError, "permission_error"),
            (500, anthropic.InternalServerError, "api_error"),
            (503, anthropic.InternalServerError, "overloaded_error"),
        ]:
            s.up.fault = Fault(status=status)
            with pytest.raises(error_class) as info:
                await s.client.messages.create(model=s.model, max_tokens=5, messages=user)
            assert info.value.status_code == status and info.value.body["error"]["type"] == kind
        # an upstream 400 naming an OpenAI param is reported with the param the client sent
        s.up.fault = Fault(
            status=400,
            body={
                "error": {
                    "message": "Too long.",
                    "type": "invalid_request_error",
                    "param": "messages[1].content",
                    "code": None,
                }
            },
        )
        with pytest.raises(anthropic.BadRequestError) as info:
            await s.client.messages.create(model=s.model, max_tokens=5, system="sys", messages=user)
        assert info.value.body["error"]["message"] == "messages[0].content: Too long."


async def test_mid_stream_error_is_an_error_event(tmp_path) -> None:
    async with serve("openai", tmp_path, chunks=6) as s:
        s.up.fault = Fault(mid_stream_error="model crashed", error_after_chunks=3)
        with pytest.raises(anthropic.APIStatusError) as info:
            async with s.client.messages.stream(
                model=s.model, max_tokens=50, messages=[{"role": "user", "content": "x"}]
            ) as stream:
                async for _ in stream:
                    pass
        assert "model crashed" in str(info.value)
        async with httpx.AsyncClient(base_url=s.omen.url) as http:
            body = {"model": s.model, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "x"}]}
            text = (await http.post("/v1/messages", json=body)).text
        assert text.count("event: content_block_delta\n") == 2  # the role chunk, two words, then the error
        assert text.endswith(
            "event: error\n" + 'data: {"type":"error","error":{"type":"api_error","message":"model crashed"}}\n\n'
        )
        assert "message_stop" not in text


async def test_master_key_with_x_api_key(tmp_path) -> None:
    async with serve("openai", tmp_path, config={"auth": {"master_key": "mk-anthropic"}}) as s:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await s.client.messages.create(model=s.model, max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert info.value.body["error"]["type"] == "authentication_error"
        client = anthropic.AsyncAnthropic(base_url=s.omen.url, api_key="mk-anthropic", max_retries=0)
        message = await client.messages.create(model=s.model, max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert message.content[0].text == "Echo: x"
        assert "mk-anthropic" not in orjson.dumps(s.up.last_request.headers).decode()  # never forwarded
        await client.close()


async def test_ollama_errors_use_anthropic_paths(tmp_path) -> None:
    async with serve("ollama", tmp_path, models=VISION) as s:
        with pytest.raises(anthropic.NotFoundError) as info:
            await s.client.messages.create(
                model="ollama/missing-model", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
        assert info.value.body["error"]["type"] == "not_found_error"
        assert "missing-model" in info.value.body["error"]["message"]
        # Ollama takes png/jpeg/webp only: its translator's OpenAI path is reported as the client's
        with pytest.raises(anthropic.BadRequestError) as info:
            await s.client.messages.create(
                model="ollama/llama3.2-vision",
                max_tokens=5,
                system="sys",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "look"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": GIF}},
                        ],
                    }
                ],
            )
        message = info.value.body["error"]["message"]
        assert message.startswith("messages[0].content[1]: ") and "image/gif" in message


# ---- native upstreams: Anthropic in, OpenAI format inside, another native format out ------------------

NATIVE_KEY = "native-upstream-secret"


def _native_kinds() -> list[Any]:
    """Native fakes written alongside this API; a kind whose provider or fake is absent is skipped."""
    import importlib.util

    kinds = []
    for kind in ("anthropic", "gemini"):
        present = all(
            importlib.util.find_spec(module) is not None
            for module in (f"omen.providers.{kind}", f"tests.fakes.{kind}_wire")
        )
        kinds.append(pytest.param(kind, marks=pytest.mark.skipif(not present, reason=f"no {kind} provider/fake yet")))
    return kinds


@asynccontextmanager
async def serve_native(kind: str, tmp_path: Any, **options: Any) -> AsyncIterator[Served]:
    upstream = {"anthropic": "claude-sonnet-4-5-20250929", "gemini": "gemini-2.5-flash"}[kind]
    async with open_fake_upstream(kind, api_key=NATIVE_KEY, **options) as up:
        cfg = {
            "providers": {kind: {"type": kind, "api_key": NATIVE_KEY, "base_url": up.base_url}},
            "models": {"native": {"provider": kind, "model": upstream}},
            "routing": {"retries": 0},  # the closing 429 is about its Anthropic rendering, not a retry
        }
        async with running_omen(cfg, tmp_path=tmp_path) as omen:
            client = anthropic.AsyncAnthropic(base_url=omen.url, api_key="unused", max_retries=0)
            try:
                yield Served(kind, up, omen, client, "native")
            finally:
                await client.close()


@pytest.mark.parametrize("kind", _native_kinds())
async def test_native_upstreams(kind, tmp_path) -> None:
    async with serve_native(kind, tmp_path) as s:
        message = await s.client.messages.create(
            model=s.model, max_tokens=50, system="Be brief.", messages=[{"role": "user", "content": "hello native"}]
        )
        assert message.content[0].text == "Echo: hello native" and message.stop_reason == "end_turn"
        assert message.usage.output_tokens == 3
        async with s.client.messages.stream(
            model=s.model, max_tokens=50, messages=[{"role": "user", "content": "stream native"}]
        ) as stream:
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
        assert "".join(pieces) == "Echo: stream native" and final.usage.output_tokens == 3
        # streamed tool call, then its result round trip
        async with s.client.messages.stream(
            model=s.model, max_tokens=50, messages=[{"role": "user", "content": "Lima"}], tools=[WEATHER]
        ) as stream:
            first = await stream.get_final_message()
        assert first.stop_reason == "tool_use"
        [call] = [block for block in first.content if block.type == "tool_use"]  # some fakes talk first
        assert (call.name, call.input) == ("get_weather", {"city": "Lima"})
        history = [
            {"role": "user", "content": "Lima"},
            {
                "role": "assistant",
                "content": [b.model_dump(exclude_none=True, exclude={"parsed_output"}) for b in first.content],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "foggy"}]},
        ]
        second = await s.client.messages.create(model=s.model, max_tokens=50, messages=history, tools=[WEATHER])
        assert second.content[0].text == "Echo: foggy"
        if kind == "anthropic":  # Anthropic in, Anthropic out: the tool result went back as a tool_result block
            sent = s.up.last_request.json["messages"]
            assert sent[-1]["content"][0]["type"] == "tool_result"
            assert sent[-1]["content"][0]["tool_use_id"] == call.id
        s.up.fault = Fault.rate_limited(retry_after=3)
        with pytest.raises(anthropic.RateLimitError) as info:
            await s.client.messages.create(model=s.model, max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert info.value.body["error"]["type"] == "rate_limit_error"


async def test_demo_model_runs_inside_the_gateway(tmp_path) -> None:
    async with running_omen({}, tmp_path=tmp_path) as omen:  # no provider: the local demo model
        client = anthropic.AsyncAnthropic(base_url=omen.url, api_key="unused", max_retries=0)
        user = [{"role": "user", "content": "hi there"}]
        message = await client.messages.create(model="omen-demo", max_tokens=50, messages=user)
        async with client.messages.stream(model="omen-demo", max_tokens=50, messages=user) as stream:
            final = await stream.get_final_message()
        assert message.content[0].text == final.content[0].text
        assert message.content[0].text.startswith("Hello from OMEN's built-in demo model.")
        assert final.stop_reason == "end_turn" and final.usage.output_tokens == message.usage.output_tokens > 0
        assert (await client.messages.count_tokens(model="omen-demo", messages=user)).input_tokens == 9
        await client.close()
