"""Request JSON nesting is limited before msgspec sees the body: msgspec has no depth limit of its own
(a deep body was an uncaught RecursionError, a 500), and bodies it could decode but nested past 255
levels broke orjson in the provider translators (another 500)."""

from __future__ import annotations

import random
from typing import Any

import httpx
import msgspec
import pytest

from omen.api import decode
from omen.api.anthropic import MessagesRequest
from omen.api.chat import ChatCompletionRequest
from omen.api.decode import MAX_NESTING, decode_body, nesting_exceeds
from omen.api.embeddings import EmbeddingRequest
from omen.config.schema import ProviderConfig
from omen.errors import OmenError
from omen.providers.base import ChatCall
from omen.providers.registry import create_provider
from tests.conftest import openai_provider, running_omen
from tests.fakes import open_fake_upstream

LIMIT_BYTES = 32 * 1024 * 1024  # [server] max_body_bytes default


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


_TRICKY = ['"', "\\", "[", "]", "{", "}", "a", ",", ":", '\\"', "\\\\", '\\\\"']


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_TRICKY) for _ in range(rng.randint(0, 8)))


def _value(rng: random.Random, budget: list[int]) -> Any:
    """A random JSON value of at most ``budget[0]`` containers (shared, so the tree stays small)."""
    roll = rng.random()
    if budget[0] <= 0 or roll < 0.3:
        return rng.choice([_text(rng), 1, None, True, 2.5])
    budget[0] -= 1
    if roll < 0.65:
        return [_value(rng, budget) for _ in range(rng.randint(0, 3))]
    return {_text(rng): _value(rng, budget) for _ in range(rng.randint(0, 3))}


@pytest.mark.parametrize("small", [decode._SMALL, 0])  # small bodies start with two counts; larger ones do not
def test_nesting_scan_matches_a_parser(monkeypatch, small):
    """Strings full of brackets, quotes and backslash runs never count; the depth is exact."""
    monkeypatch.setattr(decode, "_SMALL", small)
    rng = random.Random(7)
    for _ in range(1500):
        value = _value(rng, [rng.randint(0, 40)])
        for _ in range(rng.choice([0, 0, rng.randint(100, 140)])):
            value = [value] if rng.random() < 0.5 else {_text(rng): value}
        body = msgspec.json.encode(value)
        depth = depth_of(value)
        for limit in (1, 2, 7, MAX_NESTING):
            assert nesting_exceeds(body, limit) == (depth > limit), (limit, depth, body[:300])


def test_brackets_inside_strings_are_not_nesting():
    content = "[" * 5000 + '\\"{' * 100 + "]" * 10
    body = msgspec.json.encode({"model": "m", "messages": [{"role": "user", "content": content}]})
    assert decode_body(body, ChatCompletionRequest).messages[0].content == content


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 300, 5000])
@pytest.mark.parametrize("type_", [ChatCompletionRequest, MessagesRequest, EmbeddingRequest])
def test_too_deep_is_a_clear_400(type_, depth):
    """300 used to decode (then orjson failed in a translator); 5000 was a RecursionError out of msgspec."""
    body = b'{"model":"m","messages":[],"input":"x","metadata":{"a":' + b"[" * depth + b"]" * depth + b"}}"
    with pytest.raises(OmenError) as exc:
        decode_body(body, type_)
    assert (exc.value.status, exc.value.code) == (400, "json_too_deep")
    assert f"more than {MAX_NESTING} levels" in exc.value.message


def test_a_32_mib_bracket_body_is_a_400():
    half = (LIMIT_BYTES - 2) // 2
    body = b"[" * half + b"]" * half
    for unclosed in (body, b"[" * LIMIT_BYTES):
        with pytest.raises(OmenError) as exc:
            decode_body(unclosed, ChatCompletionRequest)
        assert exc.value.code == "json_too_deep"


def _schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": ["a"]}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def _chat_body(levels: int) -> bytes:
    return msgspec.json.encode(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": _schema(levels)}}],
        }
    )


_PROVIDERS = {
    "openai": {"api_key": "k"},
    "anthropic": {"api_key": "k"},
    "gemini": {"api_key": "k"},
    "bedrock": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s" * 40, "region": "us-east-1"},
    "gigachat": {"credentials": "Y2xpZW50OnNlY3JldA=="},
    "yandex": {"api_key": "k", "folder_id": "f"},
    "ollama": {"endpoints": ["http://127.0.0.1:1"]},
}


@pytest.mark.parametrize("kind", sorted(_PROVIDERS))
def test_the_deepest_accepted_body_translates_for_every_provider(kind):
    """At the limit, every translator (orjson re-encoding, recursive schema conversion) still works."""
    levels = (MAX_NESTING - 6) // 2  # 4 levels to tools[0].function, 2 per schema level, 2 for the leaf
    body = _chat_body(levels)
    assert depth_of(msgspec.json.decode(body)) == MAX_NESTING
    call = ChatCall(raw=body, upstream_model="m", public_model="m", request=decode_body(body, ChatCompletionRequest))
    provider = create_provider(kind, ProviderConfig(type=kind, **_PROVIDERS[kind]))
    assert provider.chat_request(call).body
    with pytest.raises(OmenError):
        decode_body(_chat_body(levels + 1), ChatCompletionRequest)


async def test_server_answers_400_in_each_api_shape(tmp_path):
    half = (LIMIT_BYTES - 40) // 2
    deep = b'{"model":"gpt-4o-mini","x":' + b"[" * half + b"]" * half + b"}"
    assert len(deep) <= LIMIT_BYTES
    async with (
        open_fake_upstream("openai") as up,
        running_omen({"providers": {"openai": openai_provider(up)}}, tmp_path=tmp_path) as omen,
    ):
        async with httpx.AsyncClient(base_url=omen.url, timeout=60) as client:
            chat = await client.post("/v1/chat/completions", content=deep)
            messages = await client.post("/v1/messages", content=deep)
        assert chat.status_code == 400
        assert chat.json()["error"]["code"] == "json_too_deep"
        assert messages.status_code == 400
        body = messages.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert "levels deep" in body["error"]["message"]
        assert not [r for r in omen.log_records() if r.get("event") == "unhandled_error"]
        assert up.request_count == 0
