"""GigaChat translation matrix: the real OMEN server, driven with the official openai SDK, against the
fake GigaChat (tests/fakes/gigachat_wire.py: OAuth endpoint + v1 API on one server, exact wire format)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest
import trio

from tests.conftest import RunningOmen, running_omen
from tests.fakes import FakeUpstream, Fault, open_fake_upstream
from tests.fakes.gigachat_wire import API_BASE, OAUTH_PATH, state
from tests.server.certs import CertPair

KEY = base64.b64encode(b"omen-client-id:omen-client-secret").decode()
MODEL = "GigaChat-2-Max"
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
    def api(self) -> list[Any]:
        """Requests OMEN sent to the chat API (not the token endpoint)."""
        return self.up.requests_to("/chat/completions")

    @property
    def sent(self) -> dict[str, Any]:
        return self.api[-1].json

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.omen.v1) as http:
            return await http.post(path, json=body)


@asynccontextmanager
async def gigachat(
    tmp_path: Any, *, ssl_context: Any = None, provider: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[Env]:
    options.setdefault("api_key", KEY)
    async with open_fake_upstream("gigachat", ssl_context=ssl_context, **options) as up:
        section = {
            "type": "gigachat",
            "credentials": KEY,
            "auth_url": up.url(OAUTH_PATH),
            "base_url": up.url(API_BASE),
            **(provider or {}),
        }
        cfg = {
            "providers": {"gigachat": section},
            "models": {"giga": {"provider": "gigachat", "model": MODEL}},
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


# ---- text, stream, OAuth on the wire ---------------------------------------------------------------------


async def test_matrix_text(tmp_path) -> None:
    async with gigachat(tmp_path) as env:
        raw = await env.client.chat.completions.with_raw_response.create(
            model="giga",
            messages=[{"role": "system", "content": "Be brief."}, *HI],
            temperature=0.5,
            top_p=0.9,
            max_tokens=50,
            extra_body={"repetition_penalty": 1.1, "profanity_check": False, "update_interval": 0.2},
        )
        answer = raw.parse()
        assert answer.choices[0].message.content == "Echo: ping pong"
        assert answer.choices[0].finish_reason == "stop"
        assert answer.model == MODEL and answer.id.startswith("chatcmpl-")
        assert answer.usage.prompt_tokens == 4 and answer.usage.completion_tokens == 3
        # the exact token exchange
        (token_req,) = env.up.requests_to(OAUTH_PATH)
        assert token_req.method == "POST" and token_req.body == b"scope=GIGACHAT_API_PERS"
        assert token_req.headers["authorization"] == f"Basic {KEY}"
        assert token_req.headers["content-type"] == "application/x-www-form-urlencoded"
        assert token_req.headers["accept"] == "application/json"
        assert uuid.UUID(token_req.headers["rquid"]).version == 4
        # the exact chat request
        (sent,) = env.api
        assert sent.path == "/api/v1/chat/completions"
        assert sent.headers["authorization"] == "Bearer giga-token-1"
        assert sent.headers["content-type"] == "application/json" and sent.headers["accept"] == "application/json"
        assert sent.json == {
            "model": MODEL,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ping pong"}],
            "stream": False,
            "temperature": 0.5,
            "top_p": 0.9,
            "max_tokens": 50,
            "repetition_penalty": 1.1,
            "update_interval": 0.2,
            "profanity_check": False,
        }
        # a second call reuses the cached token; new RqUID per exchange is checked in test_tokens
        await env.client.chat.completions.create(model="giga", messages=HI)
        assert state(env.up).exchanges == 1 and env.api[-1].headers["authorization"] == "Bearer giga-token-1"


async def test_matrix_stream(tmp_path) -> None:
    async with gigachat(tmp_path, chunks=4) as env:
        stream = await env.client.chat.completions.create(
            model="giga", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        chunks, text, usage = await collect(stream)
        assert text == "Echo: ping pong w3"
        assert chunks[0].choices[0].delta.role == "assistant"
        assert finish_of(chunks) == "stop"
        assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2, 4, 6)
        assert env.sent == {"model": MODEL, "messages": HI, "stream": True}
        assert env.api[-1].headers["accept"] == "text/event-stream"
        # without include_usage no usage chunk reaches the client
        chunks, _, usage = await collect(
            await env.client.chat.completions.create(model="giga", messages=HI, stream=True)
        )
        assert usage is None and all(c.choices for c in chunks)


# ---- tools -----------------------------------------------------------------------------------------------


async def test_matrix_tools(tmp_path) -> None:
    async with gigachat(tmp_path) as env:
        answer = await env.client.chat.completions.create(
            model="giga", messages=[{"role": "user", "content": "Tokyo"}], tools=[WEATHER, CLOCK]
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert (call.type, call.function.name, orjson.loads(call.function.arguments)) == (
            "function",
            "get_weather",
            {"city": "Tokyo"},
        )
        assert call.id == "call_77d3fb14-0000-4000-8000-000000000002"  # carries functions_state_id
        assert env.sent["functions"] == [WEATHER["function"], CLOCK["function"]]
        assert env.sent["function_call"] == "auto" and "tools" not in env.sent


async def test_matrix_tool_choice(tmp_path) -> None:
    async with gigachat(tmp_path) as env:
        forced = {"type": "function", "function": {"name": "get_time"}}
        answer = await env.client.chat.completions.create(
            model="giga", messages=HI, tools=[WEATHER, CLOCK], tool_choice=forced
        )
        assert answer.choices[0].message.tool_calls[0].function.name == "get_time"
        assert env.sent["function_call"] == {"name": "get_time"}
        answer = await env.client.chat.completions.create(
            model="giga", messages=HI, tools=[WEATHER], tool_choice="none"
        )
        assert answer.choices[0].message.content == "Echo: ping pong" and env.sent["function_call"] == "none"
        answer = await env.client.chat.completions.create(
            model="giga", messages=HI, tools=[CLOCK], tool_choice="required"
        )
        assert env.sent["function_call"] == {"name": "get_time"}
        with pytest.raises(openai.BadRequestError) as exc:
            await env.client.chat.completions.create(
                model="giga", messages=HI, tools=[WEATHER, CLOCK], tool_choice="required"
            )
        assert exc.value.body["param"] == "tool_choice" and exc.value.body["code"] == "unsupported_capability"


async def test_matrix_streamed_tools(tmp_path) -> None:
    async with gigachat(tmp_path) as env:
        stream = await env.client.chat.completions.create(
            model="giga", messages=[{"role": "user", "content": "Oslo"}], tools=[WEATHER], stream=True
        )
        chunks, text, _ = await collect(stream)
        deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
        # GigaChat sends a call whole: one delta with index 0, its id and the complete arguments
        assert len(deltas) == 1
        (delta,) = deltas
        assert (delta.index, delta.type, delta.function.name) == (0, "function", "get_weather")
        assert delta.id == "call_77d3fb14-0000-4000-8000-000000000002"
        assert orjson.loads(delta.function.arguments) == {"city": "Oslo"}
        assert finish_of(chunks) == "tool_calls" and text == ""


def _tool_history() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Weather and time in Tokyo?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'},
                },
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": '{"tz":"JST"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_b", "content": '{"time":"21:00"}'},
        {"role": "tool", "tool_call_id": "call_a", "content": "22C and sunny"},
    ]


async def test_matrix_parallel_tool_calls(tmp_path) -> None:
    async with gigachat(tmp_path) as env:
        answer = await env.client.chat.completions.create(
            model="giga", messages=_tool_history(), tools=[WEATHER, CLOCK], parallel_tool_calls=True
        )
        # GigaChat takes one call per turn: the two calls are replayed one by one, each with its result
        assert env.sent["messages"] == [
            {"role": "user", "content": "Weather and time in Tokyo?"},
            {
                "role": "assistant",
                "content": "Checking both.",
                "function_call": {"name": "get_weather", "arguments": {"city": "Tokyo"}},
            },
            {"role": "function", "name": "get_weather", "content": '"22C and sunny"'},
            {"role": "assistant", "content": "", "function_call": {"name": "get_time", "arguments": {"tz": "JST"}}},
            {"role": "function", "name": "get_time", "content": '{"time":"21:00"}'},
        ]
        assert answer.choices[0].message.content == 'Echo: {"time":"21:00"}'
        # a tool result answering no call is refused with the exact message index
        bad = [*_tool_history()[:3], {"role": "tool", "tool_call_id": "call_zzz", "content": "x"}]
        with pytest.raises(openai.BadRequestError) as exc:
            await env.client.chat.completions.create(model="giga", messages=bad, tools=[WEATHER, CLOCK])
        assert exc.value.body["param"] == "messages[1].tool_calls[0]"


async def test_matrix_tool_result_round_trip(tmp_path) -> None:
    async with gigachat(tmp_path) as env:
        messages: list[Any] = [{"role": "user", "content": "Paris"}]
        first = await env.client.chat.completions.create(model="giga", messages=messages, tools=[WEATHER])
        call = first.choices[0].message.tool_calls[0]
        messages.append(first.choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp": 18}'})
        second = await env.client.chat.completions.create(model="giga", messages=messages, tools=[WEATHER])
        assert second.choices[0].message.content == 'Echo: {"temp": 18}'
        assert second.choices[0].finish_reason == "stop"
        assert env.sent["messages"][1:] == [
            {
                "role": "assistant",
                "content": "",
                "function_call": {"name": "get_weather", "arguments": {"city": "Paris"}},
                "functions_state_id": "77d3fb14-0000-4000-8000-000000000002",  # given back from the call id
            },
            {"role": "function", "name": "get_weather", "content": '{"temp": 18}'},
        ]
        # the legacy functions API answers in its own shape
        legacy = await env.post(
            "/chat/completions",
            {"model": "giga", "messages": messages[:1], "functions": [WEATHER["function"]], "function_call": "auto"},
        )
        choice = legacy.json()["choices"][0]
        assert choice["finish_reason"] == "function_call"
        assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}


# ---- images, JSON, stop -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [PNG, "https://example.com/cat.png"])
async def test_matrix_image_refused(tmp_path, url) -> None:
    async with gigachat(tmp_path) as env:
        content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]
        with pytest.raises(openai.BadRequestError) as exc:
            await env.client.chat.completions.create(model="giga", messages=[{"role": "user", "content": content}])
        body = exc.value.body
        assert body["code"] == "unsupported_capability" and body["param"] == "messages[0].content[1]"
        assert "GigaChat" in body["message"] and "images" in body["message"]
        assert env.api == [] and env.up.requests_to(OAUTH_PATH) == []  # refused before any upstream call


async def test_matrix_json_mode(tmp_path) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    async with gigachat(tmp_path) as env:
        answer = await env.client.chat.completions.create(
            model="giga",
            messages=HI,
            response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}},
        )
        assert orjson.loads(answer.choices[0].message.content) == {"answer": "ping pong"}
        assert env.sent["response_format"] == {"type": "json_schema", "schema": schema, "strict": True}
        # GigaChat has no JSON mode without a schema: a clear 400 before any upstream call
        calls = len(env.api)
        with pytest.raises(openai.BadRequestError) as exc:
            await env.client.chat.completions.create(model="giga", messages=HI, response_format={"type": "json_object"})
        assert exc.value.body["param"] == "response_format" and "json_schema" in exc.value.body["message"]
        assert len(env.api) == calls


async def test_matrix_stop_sequences(tmp_path) -> None:
    async with gigachat(tmp_path, reply="alpha beta STOP gamma delta", chunks=5) as env:
        answer = await env.client.chat.completions.create(model="giga", messages=HI, stop=["STOP", "zzz"])
        assert answer.choices[0].message.content == "alpha beta "
        assert answer.choices[0].finish_reason == "stop"
        assert "stop" not in env.sent  # GigaChat has none: OMEN applies it
        stream = await env.client.chat.completions.create(
            model="giga", messages=HI, stop="STOP", stream=True, stream_options={"include_usage": True}
        )
        chunks, text, usage = await collect(stream)
        assert text == "alpha beta " and finish_of(chunks) == "stop"
        assert usage.completion_tokens == 5  # what GigaChat generated and bills


async def test_matrix_usage_cached_tokens(tmp_path) -> None:
    async with gigachat(tmp_path) as env:
        state(env.up).precached_prompt_tokens = 2
        messages = [{"role": "user", "content": "one two three four"}]
        answer = await env.client.chat.completions.create(model="giga", messages=messages)
        assert answer.usage.prompt_tokens == 4 and answer.usage.prompt_tokens_details.cached_tokens == 2
        assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
        stream = await env.client.chat.completions.create(
            model="giga", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        _, _, usage = await collect(stream)
        assert usage.prompt_tokens_details.cached_tokens == 2
        assert (usage.prompt_tokens, usage.completion_tokens) == (4, 5)


# ---- finish reasons ------------------------------------------------------------------------------------------


async def _finish(tmp_path: Any, fault: Fault | None, expected: str, **create: Any) -> None:
    async with gigachat(tmp_path) as env:
        if fault is not None:
            env.up.set_fault(fault)
        answer = await env.client.chat.completions.create(model="giga", messages=HI, **create)
        assert answer.choices[0].finish_reason == expected
        chunks, _, _ = await collect(
            await env.client.chat.completions.create(model="giga", messages=HI, stream=True, **create)
        )
        assert finish_of(chunks) == expected


async def test_matrix_finish_stop(tmp_path) -> None:
    await _finish(tmp_path, None, "stop")


async def test_matrix_finish_length(tmp_path) -> None:
    await _finish(tmp_path, None, "length", max_tokens=2)


async def test_matrix_finish_tool_calls(tmp_path) -> None:
    await _finish(tmp_path, None, "tool_calls", tools=[WEATHER])


async def test_matrix_finish_content_filter(tmp_path) -> None:
    await _finish(tmp_path, Fault(finish_reason="blacklist", path="/chat/completions"), "content_filter")


async def test_matrix_finish_error_is_stop(tmp_path) -> None:
    await _finish(tmp_path, Fault(finish_reason="error", path="/chat/completions"), "stop")


# ---- errors ------------------------------------------------------------------------------------------------


async def _error(tmp_path: Any, status: int, exc_type: type[Exception], message: str | None = None) -> Any:
    async with gigachat(tmp_path) as env:
        env.up.set_fault(Fault(status=status, message=message, retry_after=3 if status == 429 else None, path="/chat/"))
        with pytest.raises(exc_type) as exc:
            await env.client.chat.completions.create(model="giga", messages=HI)
        err = exc.value
        assert err.status_code == status
        # streamed requests fail the same way, before the stream starts
        with pytest.raises(exc_type):
            await env.client.chat.completions.create(model="giga", messages=HI, stream=True)
        return err, env.up


async def test_matrix_error_400(tmp_path) -> None:
    err, _ = await _error(tmp_path, 400, openai.BadRequestError, "Invalid model params")
    assert err.body["type"] == "invalid_request_error" and err.body["message"] == "Invalid model params"


async def test_matrix_error_401(tmp_path) -> None:
    err, up = await _error(tmp_path, 401, openai.AuthenticationError, "Token has expired")
    assert "refused OMEN's access token: Token has expired" in err.body["message"]
    # each refused request was retried once with a fresh token
    assert [r.status for r in up.requests_to("/chat/")] == [401, 401, 401, 401]
    assert state(up).exchanges == 3  # first token, then one refresh per refused request


async def test_matrix_error_403(tmp_path) -> None:
    err, _ = await _error(tmp_path, 403, openai.PermissionDeniedError)
    assert err.body["type"] == "permission_error" and err.body["message"] == "Permission denied"


async def test_matrix_error_404(tmp_path) -> None:
    err, _ = await _error(tmp_path, 404, openai.NotFoundError)
    assert (err.body["code"], err.body["param"]) == ("model_not_found", "model")


async def test_matrix_error_413(tmp_path) -> None:
    err, _ = await _error(tmp_path, 413, openai.APIStatusError)
    assert err.body["code"] == "request_too_large" and err.body["type"] == "invalid_request_error"


async def test_matrix_error_422(tmp_path) -> None:
    err, _ = await _error(tmp_path, 422, openai.UnprocessableEntityError, "messages: field required")
    assert err.body["message"] == "messages: field required"


async def test_matrix_error_429(tmp_path) -> None:
    err, _ = await _error(tmp_path, 429, openai.RateLimitError)
    assert err.body["type"] == "rate_limit_error" and err.body["code"] == "rate_limit_exceeded"
    assert err.response.headers["retry-after"] == "3"


async def test_matrix_error_500(tmp_path) -> None:
    err, _ = await _error(tmp_path, 500, openai.InternalServerError)
    assert err.body["type"] == "server_error"


async def test_matrix_error_503(tmp_path) -> None:
    err, _ = await _error(tmp_path, 503, openai.InternalServerError)
    assert err.body["type"] == "server_error"


async def test_matrix_error_unknown_model(tmp_path) -> None:
    async with gigachat(tmp_path) as env:
        with pytest.raises(openai.NotFoundError) as exc:
            await env.client.chat.completions.create(model="gigachat/GigaChat-9", messages=HI)
        assert exc.value.body["code"] == "model_not_found" and exc.value.body["message"] == "No such model"


async def test_matrix_error_mid_stream(tmp_path) -> None:
    async with gigachat(tmp_path, chunks=4) as env:
        env.up.set_fault(Fault(mid_stream_error="model crashed", error_after_chunks=2, path="/chat/"))
        stream = await env.client.chat.completions.create(model="giga", messages=HI, stream=True)
        with pytest.raises(openai.APIError) as exc:
            await collect(stream)
        assert "model crashed" in exc.value.message


async def test_matrix_error_token_exchange(tmp_path) -> None:
    async with gigachat(tmp_path, provider={"credentials": "d3Jvbmc6a2V5"}) as env:
        with pytest.raises(openai.InternalServerError) as exc:
            await env.client.chat.completions.create(model="giga", messages=HI)
        body = exc.value.body
        assert exc.value.status_code == 502 and body["code"] == "upstream_authentication_failed"
        assert "'gigachat'" in body["message"] and "OAuth token exchange failed (HTTP 401)" in body["message"]
        assert "credentials doesn't match db data" in body["message"]
        assert "d3Jvbmc6a2V5" not in body["message"] and env.api == []
        assert "d3Jvbmc6a2V5" not in env.omen.log.getvalue().decode()


# ---- embeddings, models, endpoints -----------------------------------------------------------------------------


async def test_matrix_embeddings(tmp_path) -> None:
    async with gigachat(tmp_path) as env:
        result = await env.client.embeddings.create(model="gigachat/Embeddings", input=["one two", "three"])
        assert [d.index for d in result.data] == [0, 1] and len(result.data[0].embedding) == 8
        assert result.usage.prompt_tokens == 3 and result.usage.total_tokens == 3
        sent = env.up.requests_to("/embeddings")[-1]
        assert sent.json == {"model": "Embeddings", "input": ["one two", "three"]}
        assert sent.headers["authorization"] == "Bearer giga-token-1"
        b64 = await env.client.embeddings.create(model="gigachat/EmbeddingsGigaR", input="x", encoding_format="base64")
        assert len(b64.data) == 1
        with pytest.raises(openai.BadRequestError) as exc:
            await env.client.embeddings.create(model="gigachat/Embeddings", input="x", dimensions=4)
        assert exc.value.body["param"] == "dimensions"


async def test_matrix_models_and_completions(tmp_path) -> None:
    async with gigachat(tmp_path, provider={"discover_models": True}) as env:
        with trio.fail_after(5):  # discovery runs in the background at startup
            while not {"gigachat/GigaChat-2", "gigachat/Embeddings"} <= {
                m.id for m in (await env.client.models.list()).data
            }:
                await trio.sleep(0.02)
        assert env.up.requests_to("/models")[-1].headers["authorization"].startswith("Bearer giga-token-")
        with pytest.raises(openai.BadRequestError) as exc:
            await env.client.completions.create(model="giga", prompt="x")
        assert exc.value.body["code"] == "unsupported_endpoint"


async def test_matrix_secrets_not_logged(tmp_path) -> None:
    async with gigachat(tmp_path) as env:
        await env.client.chat.completions.create(model="giga", messages=HI)
        log = env.omen.log.getvalue().decode()
        assert KEY not in log and "giga-token" not in log


# ---- TLS with the provider's own CA ----------------------------------------------------------------------------


def _server_context(certs: CertPair) -> Any:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.certfile, certs.keyfile)
    return context


async def test_matrix_ca_bundle(tmp_path, certs) -> None:
    async with gigachat(tmp_path, ssl_context=_server_context(certs), provider={"ca_bundle": certs.certfile}) as env:
        assert env.up.base_url.startswith("https://")
        answer = await env.client.chat.completions.create(model="giga", messages=HI)
        assert answer.choices[0].message.content == "Echo: ping pong"
        assert state(env.up).exchanges == 1 and len(env.api) == 1  # token and API both over TLS


async def test_matrix_tls_without_ca_bundle_fails_clearly(tmp_path, certs) -> None:
    async with gigachat(tmp_path, ssl_context=_server_context(certs)) as env:
        with pytest.raises(openai.APIStatusError) as exc:
            await env.client.chat.completions.create(model="giga", messages=HI)
        assert exc.value.status_code == 502
        message = exc.value.body["message"]
        assert "'gigachat'" in message and "TLS handshake" in message and "CERTIFICATE_VERIFY_FAILED" in message
        assert env.up.requests == []  # nothing got through
