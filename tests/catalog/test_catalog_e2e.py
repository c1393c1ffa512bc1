"""Capabilities through the real server with a fake OpenAI upstream: a request a model cannot serve
is a 400 naming the capability (and never reaches the upstream); /v1/models shows capabilities,
context length and pricing the way OpenRouter lists them."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from tests.conftest import openai_provider, running_omen
from tests.fakes import open_fake_upstream

IMAGE = {"type": "image_url", "image_url": {"url": "https://images.example/cat.png"}}
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE]}]
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def config(up: Any) -> dict[str, Any]:
    return {
        "providers": {"openai": openai_provider(up)},
        "models": {
            "gpt-4o": {"provider": "openai"},
            "text-only": {"provider": "openai", "model": "gpt-3.5-turbo"},
            "custom": {
                "provider": "openai",
                "model": "ft:my-model",
                "capabilities": {"tools": False, "max_output_tokens": 100, "context_window": 8000},
                "pricing": {"input": 1.0, "output": 2.0},
            },
            "private": {"provider": "openai", "model": "my-deployment"},
        },
    }


async def test_requests_a_model_cannot_serve(tmp_path) -> None:
    async with (
        open_fake_upstream("openai", api_key="sk-upstream-secret") as up,
        running_omen(config(up), tmp_path=tmp_path) as omen,
    ):
        async with httpx.AsyncClient(base_url=omen.v1) as http:
            image = await http.post("/chat/completions", json={"model": "text-only", "messages": MESSAGES})
            assert image.status_code == 400
            assert image.json()["error"] == {
                "message": "The model 'text-only' does not support images (capability 'vision').",
                "type": "invalid_request_error",
                "param": "messages[0].content[1]",
                "code": "unsupported_capability",
            }
            text = [{"role": "user", "content": "hi"}]
            tools = await http.post("/chat/completions", json={"model": "custom", "messages": text, "tools": TOOLS})
            assert tools.status_code == 400 and tools.json()["error"]["param"] == "tools"
            assert "capability 'tools'" in tools.json()["error"]["message"]
            too_long = await http.post(
                "/chat/completions", json={"model": "custom", "messages": text, "max_tokens": 101}
            )
            assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "max_tokens"
            assert up.requests == []  # nothing reached the upstream

        # what the model can do (or what OMEN does not know) passes through untouched
        client = openai.AsyncOpenAI(base_url=omen.v1, api_key="unused", max_retries=0)
        for model in ("gpt-4o", "private", "openai/gpt-4o-mini"):
            reply = await client.chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
            assert reply.choices[0].message.content
            assert up.last_request.json["messages"] == MESSAGES
        await client.chat.completions.create(model="custom", messages=text, max_tokens=100)  # type: ignore[arg-type]
        await client.close()


async def test_models_list_shows_capabilities_and_pricing(tmp_path) -> None:
    async with (
        open_fake_upstream("openai", api_key="sk-upstream-secret") as up,
        running_omen(config(up), tmp_path=tmp_path) as omen,
    ):
        client = openai.AsyncOpenAI(base_url=omen.v1, api_key="unused", max_retries=0)
        listing = {m.id: m for m in (await client.models.list()).data}
        gpt = listing["gpt-4o"].model_dump()
        assert gpt["object"] == "model" and gpt["owned_by"] == "openai"  # the OpenAI shape is kept
        assert gpt["context_length"] == 128_000
        assert gpt["pricing"] == {"prompt": "0.0000025", "completion": "0.00001", "input_cache_read": "0.00000125"}
        assert gpt["capabilities"] == {
            "vision": True,
            "tools": True,
            "json_mode": True,
            "context_window": 128_000,
            "max_output_tokens": 16_384,
        }
        assert gpt["architecture"] == {"input_modalities": ["text", "image"], "output_modalities": ["text"]}
        assert gpt["top_provider"] == {"context_length": 128_000, "max_completion_tokens": 16_384}

        text_only = listing["text-only"].model_dump()
        assert text_only["capabilities"]["vision"] is False
        assert text_only["architecture"]["input_modalities"] == ["text"]

        custom = listing["custom"].model_dump()
        assert custom["pricing"] == {"prompt": "0.000001", "completion": "0.000002"}
        assert custom["capabilities"]["tools"] is False and custom["context_length"] == 8000

        private = listing["private"].model_dump()  # unknown: nulls, not guesses
        assert private["pricing"] is None and private["context_length"] is None
        assert set(private["capabilities"].values()) == {None} and "architecture" not in private

        one = (await client.models.retrieve("gpt-4o")).model_dump()
        assert one["pricing"] == gpt["pricing"] and one["capabilities"] == gpt["capabilities"]
        await client.close()
