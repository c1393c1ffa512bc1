"""Chat, completions, embeddings and models through OMEN to a fake OpenAI upstream, driven by the
official openai SDK (async and sync) and httpx over real sockets."""

from __future__ import annotations

import base64
import re
import struct

import httpx
import openai
import orjson
import trio

from tests.conftest import openai_provider, running_omen
from tests.fakes import open_fake_upstream


def config_for(up, **extra) -> dict:
    return {
        "providers": {"openai": openai_provider(up, api_key="sk-upstream-secret")},
        "models": {
            "gpt-4o-mini": {"provider": "openai", "model": "gpt-4o-mini"},
            "fast": {"provider": "openai", "model": "gpt-4o-mini-2024-07-18"},
        },
        **extra,
    }


async def test_chat_non_stream_async_sdk(tmp_path) -> None:
    async with (
        open_fake_upstream("openai", api_key="sk-upstream-secret") as up,
        running_omen(config_for(up), tmp_path=tmp_path) as omen,
    ):
        client = openai.AsyncOpenAI(base_url=omen.v1, api_key="unused", max_retries=0)
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hello there gateway"}],
            seed=7,
            extra_body={"custom_vendor_field": {"keep": True}},
        )
        completion = raw.parse()
        assert completion.choices[0].message.content == "Echo: Hello there gateway"
        assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
        assert raw.headers["x-omen-provider"] == "openai"
        assert raw.headers["x-omen-upstream-model"] == "gpt-4o-mini"
        assert raw.headers["x-request-id"]
        sent = up.last_request
        assert sent.headers["authorization"] == "Bearer sk-upstream-secret"  # the gateway's key, not the client's
        assert sent.json["custom_vendor_field"] == {"keep": True}  # unknown fields pass through
        assert sent.json["seed"] == 7
        await client.close()


async def test_chat_model_rewritten_for_alias_sync_sdk(tmp_path) -> None:
    async with open_fake_upstream("openai") as up, running_omen(config_for(up), tmp_path=tmp_path) as omen:

        def call() -> str:
            client = openai.OpenAI(base_url=omen.v1, api_key="unused", max_retries=0)
            result = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
            client.close()
            return result.choices[0].message.content

        assert await trio.to_thread.run_sync(call) == "Echo: hi"
        assert up.last_request.json["model"] == "gpt-4o-mini-2024-07-18"


async def test_stream_with_and_without_usage(tmp_path) -> None:
    async with open_fake_upstream("openai") as up, running_omen(config_for(up), tmp_path=tmp_path) as omen:
        client = openai.AsyncOpenAI(base_url=omen.v1, api_key="unused", max_retries=0)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "one two three four"}],
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage
        assert text == "Echo: one two three four"
        assert usage is not None and usage.completion_tokens > 0

        # Without include_usage the client gets no usage chunk, but OMEN asked the upstream for it
        # and logs the tokens.
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            stream=True,
            messages=[{"role": "user", "content": "five six"}],
        )
        chunks = [c async for c in raw.parse()]
        assert all(c.usage is None for c in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: five six"
        assert up.last_request.json["stream_options"] == {"include_usage": True}
        record = await omen.log_for(raw.headers["x-request-id"])
        assert record["stream"] is True and record["completion_tokens"] > 0 and record["status"] == 200
        assert record["provider"] == "openai" and record["model"] == "gpt-4o-mini"
        assert "ttfb_ms" in record
        await client.close()


async def test_streamed_tool_calls(tmp_path) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
            },
        }
    ]
    async with open_fake_upstream("openai") as up, running_omen(config_for(up), tmp_path=tmp_path) as omen:
        client = openai.AsyncOpenAI(base_url=omen.v1, api_key="unused", max_retries=0)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            stream=True,
            tools=tools,
            tool_choice="auto",
            messages=[{"role": "user", "content": "weather in Paris?"}],
        )
        args, name, finish = "", None, None
        async for chunk in stream:
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    name = call.function.name or name
                    args += call.function.arguments or ""
                finish = choice.finish_reason or finish
        assert name and orjson.loads(args)
        assert finish == "tool_calls"
        await client.close()


async def test_legacy_completions_with_suffix_and_stream(tmp_path) -> None:
    async with open_fake_upstream("openai") as up, running_omen(config_for(up), tmp_path=tmp_path) as omen:
        client = openai.AsyncOpenAI(base_url=omen.v1, api_key="unused", max_retries=0)
        result = await client.completions.create(model="gpt-4o-mini", prompt="def add(a, b):", suffix="\nprint(add)")
        assert result.choices[0].text
        assert up.last_request.json["suffix"] == "\nprint(add)"
        stream = await client.completions.create(model="gpt-4o-mini", prompt="hello", stream=True)
        pieces = [c.choices[0].text async for c in stream if c.choices]
        assert "".join(pieces)
        await client.close()


async def test_embeddings_float_and_base64(tmp_path) -> None:
    async with open_fake_upstream("openai") as up, running_omen(config_for(up), tmp_path=tmp_path) as omen:
        async with httpx.AsyncClient(base_url=omen.v1) as http:
            floats = (await http.post("/embeddings", json={"model": "gpt-4o-mini", "input": "abc"})).json()
            assert floats["object"] == "list" and isinstance(floats["data"][0]["embedding"], list)
            b64 = (
                await http.post(
                    "/embeddings", json={"model": "gpt-4o-mini", "input": ["abc", "d"], "encoding_format": "base64"}
                )
            ).json()
            assert len(b64["data"]) == 2
            decoded = struct.unpack(
                f"<{len(floats['data'][0]['embedding'])}f", base64.b64decode(b64["data"][0]["embedding"])
            )
            assert [round(x, 5) for x in decoded] == [round(x, 5) for x in floats["data"][0]["embedding"]]
        assert up.last_request.json["encoding_format"] == "base64"


async def test_models_listing_and_lookup(tmp_path) -> None:
    cfg = config_for_aliases = None  # noqa: F841
    async with open_fake_upstream("openai") as up:
        cfg = config_for(up, aliases={"default": "gpt-4o-mini"})
        async with running_omen(cfg, tmp_path=tmp_path) as omen, httpx.AsyncClient(base_url=omen.v1) as http:
            listing = (await http.get("/models")).json()
            ids = {m["id"]: m for m in listing["data"]}
            assert set(ids) >= {"gpt-4o-mini", "fast", "default"}
            assert ids["default"]["alias_of"] == "gpt-4o-mini"
            assert ids["fast"]["provider"] == "openai" and ids["fast"]["upstream_model"] == "gpt-4o-mini-2024-07-18"
            assert "omen-demo" not in ids  # the demo model only appears when nothing is configured
            one = await http.get("/models/default")
            assert one.status_code == 200 and one.json()["id"] == "default"
            missing = await http.get("/models/nope")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
            # provider-qualified names route to any upstream model
            routed = await http.post(
                "/chat/completions",
                json={"model": "openai/gpt-4.1-nano", "messages": [{"role": "user", "content": "x"}]},
            )
            assert routed.status_code == 200
            assert up.last_request.json["model"] == "gpt-4.1-nano"


async def test_injected_usage_leaves_chunks_byte_identical(tmp_path) -> None:
    """Without include_usage the client sees exactly the chunks the upstream would have sent it."""
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "same bytes"}]}
    async with open_fake_upstream("openai") as up, running_omen(config_for(up), tmp_path=tmp_path) as omen, \
            httpx.AsyncClient() as http:
        direct = await http.post(up.openai_base + "/chat/completions", json=body)
        through = await http.post(omen.v1 + "/chat/completions", json=body)
        same_id = re.compile(rb"chatcmpl-fake\d+")  # the fake numbers its responses
        assert same_id.sub(b"ID", through.content) == same_id.sub(b"ID", direct.content)


async def test_upstream_request_headers_are_the_gateways(tmp_path) -> None:
    """No compression (bytes are relayed as they are), no cookies carried between callers, and a
    client's own credentials never reach the upstream."""
    async with open_fake_upstream("openai") as up, running_omen(config_for(up), tmp_path=tmp_path) as omen, \
            httpx.AsyncClient() as http:
        response = await http.post(omen.v1 + "/chat/completions", headers={"cookie": "session=abc"}, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
        assert response.status_code == 200
        sent = up.last_request.headers
        assert sent["accept-encoding"] == "identity"
        assert sent["user-agent"].startswith("omen/")
        assert "cookie" not in sent
