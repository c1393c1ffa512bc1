"""Self-tests of the fake upstreams: wire formats per kind, auth, every fault, disconnect counting.

They talk to the fakes over real sockets with httpx, exactly as the gateway will.
"""

from __future__ import annotations

import base64
import json
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from .common import embedding_vector, split_words
from .faults import Fault
from .upstream import FakeUpstream, open_fake_upstream, serve_fake_upstream

USER = [{"role": "user", "content": "hello brave new world"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


def sse_events(text: str) -> list[Any]:
    """Parse an SSE body into JSON objects; ``[DONE]`` becomes the string "[DONE]"."""
    out: list[Any] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def ndjson_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def content_of(events: list[Any]) -> str:
    return "".join(
        c["delta"].get("content") or ""
        for e in events
        if isinstance(e, dict)
        for c in e.get("choices", [])
        if "delta" in c
    )


def client(base_url: str, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=kw.pop("timeout", 5.0), **kw)


# --- helpers of the fake model -------------------------------------------------------------------


def test_split_words_roundtrip_and_padding() -> None:
    assert split_words("Echo: a  b ") == ["Echo:", " a", "  b "]
    assert "".join(split_words("Echo: a  b ")) == "Echo: a  b "
    assert split_words("Echo: a b c", 2) == ["Echo: a", " b c"]
    assert split_words("Echo: x", 4) == ["Echo:", " x", " w2", " w3"]
    assert split_words("") == []


def test_bad_kind_and_option() -> None:
    with pytest.raises(ValueError):
        FakeUpstream("nope")
    with pytest.raises(TypeError):
        FakeUpstream("openai", colour="red")


async def test_body_exception_is_not_wrapped() -> None:
    with pytest.raises(ZeroDivisionError):
        async with open_fake_upstream("openai"):
            _ = 1 / 0


# --- OpenAI ----------------------------------------------------------------------------------------


async def test_openai_chat_non_stream() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        assert up.openai_base == up.base_url + "/v1"
        r = await c.post("/chat/completions", json={"model": "gpt-4o-mini", "messages": USER})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.headers["x-request-id"].startswith("req_")
        body = r.json()
        assert body["object"] == "chat.completion"
        assert body["id"].startswith("chatcmpl-")
        assert body["model"] == "gpt-4o-mini"
        choice = body["choices"][0]
        assert choice["message"] == {
            "role": "assistant",
            "content": "Echo: hello brave new world",
            "refusal": None,
            "annotations": [],
        }
        assert choice["finish_reason"] == "stop"
        usage = body["usage"]
        assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (4, 5, 9)
        assert usage["completion_tokens_details"]["reasoning_tokens"] == 0

        rec = up.last_request
        assert (rec.method, rec.path, rec.status, rec.outcome) == ("POST", "/v1/chat/completions", 200, "ok")
        assert rec.json["model"] == "gpt-4o-mini"
        assert rec.headers["content-type"] == "application/json"
        assert json.loads(rec.body) == rec.json


async def test_openai_chat_stream_without_and_with_usage() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        req = {"model": "gpt-4o", "messages": USER, "stream": True}
        r = await c.post("/chat/completions", json=req)
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers.get("transfer-encoding") == "chunked"
        events = sse_events(r.text)
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert len({e["id"] for e in chunks}) == 1
        assert all(e["object"] == "chat.completion.chunk" and "usage" not in e for e in chunks)
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
        assert [e["choices"][0]["delta"].get("content") for e in chunks[1:-1]] == [
            "Echo:",
            " hello",
            " brave",
            " new",
            " world",
        ]
        assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}

        req["stream_options"] = {"include_usage": True}
        events = sse_events((await c.post("/chat/completions", json=req)).text)
        *chunks, usage_chunk, done = events
        assert done == "[DONE]"
        assert all(e["usage"] is None for e in chunks)
        assert usage_chunk["choices"] == []
        assert usage_chunk["usage"]["total_tokens"] == 9
        assert content_of(events) == "Echo: hello brave new world"


async def test_openai_tool_call_streamed_in_pieces() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        messages = [{"role": "user", "content": "Paris"}]
        req = {"model": "gpt-4o", "messages": messages, "tools": [WEATHER_TOOL], "stream": True}
        events = sse_events((await c.post("/chat/completions", json=req)).text)
        deltas = [e["choices"][0]["delta"] for e in events[:-1]]
        calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
        first, *rest = calls
        assert first["index"] == 0 and first["type"] == "function" and first["id"].startswith("call_")
        assert first["function"] == {"name": "get_weather", "arguments": ""}
        assert len(rest) >= 2 and all(set(p) == {"index", "function"} for p in rest)
        assert "".join(p["function"]["arguments"] for p in rest) == '{"location":"Paris"}'
        assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"

        req["stream"] = False
        body = (await c.post("/chat/completions", json=req)).json()
        msg = body["choices"][0]["message"]
        assert msg["content"] is None
        assert msg["tool_calls"] == [
            {
                "id": first["id"],
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
            }
        ]
        assert body["choices"][0]["finish_reason"] == "tool_calls"

        # After a tool result the fake answers in text, echoing the result.
        follow = [
            *messages,
            {"role": "assistant", "content": None, "tool_calls": msg["tool_calls"]},
            {"role": "tool", "tool_call_id": first["id"], "content": "18C sunny"},
        ]
        body = (await c.post("/chat/completions", json={**req, "messages": follow})).json()
        assert body["choices"][0]["message"]["content"] == "Echo: 18C sunny"
        assert body["choices"][0]["finish_reason"] == "stop"


async def test_openai_max_tokens_reply_and_chunks_options() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        body = (await c.post("/chat/completions", json={"model": "m", "messages": USER, "max_tokens": 2})).json()
        assert body["choices"][0]["message"]["content"] == "Echo: hello"
        assert body["choices"][0]["finish_reason"] == "length"
        up.configure(reply="fixed answer here", chunks=2)
        events = sse_events(
            (await c.post("/chat/completions", json={"model": "m", "messages": USER, "stream": True})).text
        )
        assert [e["choices"][0]["delta"].get("content") for e in events[1:-2]] == ["fixed answer", " here"]


async def test_openai_completions_suffix_and_stream() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        req = {"model": "gpt-3.5-turbo-instruct", "prompt": "def add(a, b):", "suffix": "return c"}
        body = (await c.post("/completions", json=req)).json()
        assert body["object"] == "text_completion"
        assert body["choices"][0]["text"] == "Echo: def add(a, b): [suffix: return c]"
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"]["prompt_tokens"] == 3

        req = {"model": "gpt-3.5-turbo-instruct", "prompt": "one two", "stream": True}
        events = sse_events((await c.post("/completions", json=req)).text)
        assert events[-1] == "[DONE]"
        assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "Echo: one two"
        assert events[-2]["choices"][0]["finish_reason"] == "stop"
        assert all(e["object"] == "text_completion" for e in events[:-1])


async def test_openai_embeddings_float_and_base64() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        r = await c.post("/embeddings", json={"model": "text-embedding-3-small", "input": ["a b", "c"]})
        body = r.json()
        assert body["object"] == "list" and body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
        assert [d["index"] for d in body["data"]] == [0, 1]
        assert body["data"][0]["embedding"] == embedding_vector("a b", 8)
        assert len(body["data"][1]["embedding"]) == 8

        req = {"model": "text-embedding-3-small", "input": "a b", "encoding_format": "base64", "dimensions": 5}
        data = (await c.post("/embeddings", json=req)).json()["data"][0]["embedding"]
        assert list(struct.unpack("<5f", base64.b64decode(data))) == embedding_vector("a b", 5)


async def test_openai_models_auth_and_unknown_route() -> None:
    async with open_fake_upstream("openai", api_key="sk-test-1234") as up, client(up.openai_base) as c:
        r = await c.get("/models")
        assert r.status_code == 401
        assert r.json()["error"]["code"] is None and "didn't provide" in r.json()["error"]["message"]
        r = await c.get("/models", headers={"authorization": "Bearer wrong-key-0000"})
        assert r.status_code == 401
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == "invalid_api_key"

        c.headers["authorization"] = "Bearer sk-test-1234"
        models = (await c.get("/models")).json()
        assert models["object"] == "list" and models["data"][0]["object"] == "model"
        assert (await c.get("/models/gpt-4o")).json()["id"] == "gpt-4o"
        r = await c.post("/nope", json={})
        assert r.status_code == 404 and r.json()["error"]["message"] == "Invalid URL (POST /v1/nope)"


async def test_openai_strict_models_and_bad_json() -> None:
    async with open_fake_upstream("openai", models=["gpt-4o"]) as up, client(up.openai_base) as c:
        r = await c.post("/chat/completions", json={"model": "gpt-5", "messages": USER})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        r = await c.post("/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = await c.post("/chat/completions", json={"model": "gpt-4o"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
        assert not up.errors


# --- xAI -------------------------------------------------------------------------------------------


async def test_xai_usage_on_every_chunk_and_error_shape() -> None:
    async with open_fake_upstream("xai", api_key="xai-secret-key") as up, client(up.openai_base) as c:
        r = await c.post("/chat/completions", json={"model": "grok-3-mini", "messages": USER})
        assert r.status_code == 400
        body = r.json()
        assert set(body) == {"code", "error"} and body["error"].startswith("Incorrect API key provided")

        c.headers["authorization"] = "Bearer xai-secret-key"
        req = {"model": "grok-3-mini", "messages": USER, "stream": True}
        events = sse_events((await c.post("/chat/completions", json=req)).text)
        chunks = events[:-1]
        assert all(e["usage"]["prompt_tokens"] == 4 for e in chunks)
        assert [e["usage"]["completion_tokens"] for e in chunks] == [0, 1, 2, 3, 4, 5, 5]

        up.fault_once(status=429)
        r = await c.post("/chat/completions", json=req)
        assert r.status_code == 429 and r.json()["code"] == "Some resource has been exhausted"


# --- Azure -----------------------------------------------------------------------------------------


async def test_azure_deployment_chat_and_stream() -> None:
    async with open_fake_upstream("azure", api_key="az-key") as up, client(up.base_url) as c:
        url = up.deployment_url("my-gpt")
        r = await c.post(url, json={"messages": USER})
        assert r.status_code == 401 and r.json()["error"]["code"] == "401"
        c.headers["api-key"] = "az-key"
        r = await c.post(url, json={"messages": USER})
        assert r.status_code == 200
        assert "apim-request-id" in r.headers
        body = r.json()
        assert body["model"] == "gpt-4o-2024-08-06"
        assert body["prompt_filter_results"][0]["content_filter_results"]["jailbreak"]["detected"] is False
        assert body["choices"][0]["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}
        assert body["choices"][0]["message"]["content"] == "Echo: hello brave new world"
        rec = up.last_request
        assert rec.params == {"deployment": "my-gpt", "api_version": "2024-10-21"}
        assert rec.query == {"api-version": "2024-10-21"}

        req = {"messages": USER, "stream": True, "stream_options": {"include_usage": True}}
        events = sse_events((await c.post(url, json=req)).text)
        first = events[0]
        assert first["choices"] == [] and (first["id"], first["model"], first["created"]) == ("", "", 0)
        assert "prompt_filter_results" in first
        assert events[1]["model"] == "gpt-4o-2024-08-06"
        assert content_of(events) == "Echo: hello brave new world"
        assert events[-2]["choices"] == [] and events[-2]["usage"]["total_tokens"] == 9
        assert events[-1] == "[DONE]"


async def test_azure_api_version_deployments_v1_and_ad_token() -> None:
    async with (
        open_fake_upstream("azure", api_key="az-key", ad_token="entra-token", deployments=["prod"]) as up,
        client(up.base_url, headers={"api-key": "az-key"}) as c,
    ):
        r = await c.post("/openai/deployments/prod/chat/completions", json={"messages": USER})
        assert r.status_code == 404 and r.json() == {"error": {"code": "404", "message": "Resource not found"}}
        r = await c.post("/openai/deployments/prod/chat/completions?api-version=yesterday", json={"messages": USER})
        assert r.status_code == 400
        r = await c.post(up.deployment_url("other"), json={"messages": USER})
        assert r.status_code == 404 and r.json()["error"]["code"] == "DeploymentNotFound"
        r = await c.post(up.deployment_url("prod", "embeddings"), json={"input": "x"})
        assert r.status_code == 200 and r.json()["model"] == "text-embedding-3-small"

        async with client(up.openai_base, headers={"authorization": "Bearer az-key"}) as v1:
            r = await v1.post("/chat/completions", json={"model": "prod", "messages": USER})
            assert r.status_code == 200 and r.json()["model"] == "gpt-4o-2024-08-06"
        async with client(up.base_url, headers={"authorization": "Bearer entra-token"}) as ad:
            assert (await ad.post(up.deployment_url("prod"), json={"messages": USER})).status_code == 200
            ad.headers["authorization"] = "Bearer expired"
            r = await ad.post(up.deployment_url("prod"), json={"messages": USER})
            assert r.status_code == 401 and "Access token" in r.json()["error"]["message"]


async def test_azure_rate_limit_and_content_filter_faults() -> None:
    async with open_fake_upstream("azure") as up, client(up.base_url) as c:
        up.fault_once(Fault.rate_limited(retry_after=7))
        r = await c.post(up.deployment_url("d"), json={"messages": USER})
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        err = r.json()["error"]
        assert err["code"] == "429" and "Please retry after 7 seconds" in err["message"] and "type" not in err
        up.fault_once(Fault.azure_content_filter())
        r = await c.post(up.deployment_url("d"), json={"messages": USER})
        assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"
        up.fault_once(finish_reason="content_filter")
        body = (await c.post(up.deployment_url("d"), json={"messages": USER})).json()
        assert body["choices"][0]["finish_reason"] == "content_filter"


# --- Ollama ----------------------------------------------------------------------------------------


async def test_ollama_chat_stream_default_and_non_stream() -> None:
    async with open_fake_upstream("ollama") as up, client(up.base_url) as c:
        r = await c.post("/api/chat", json={"model": "llama3.2", "messages": USER})
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = ndjson_lines(r.text)
        assert all(not line["done"] for line in lines[:-1])
        assert "".join(line["message"]["content"] for line in lines) == "Echo: hello brave new world"
        last = lines[-1]
        assert last["done"] is True and last["done_reason"] == "stop"
        assert (last["prompt_eval_count"], last["eval_count"]) == (4, 5)
        assert {"total_duration", "load_duration", "prompt_eval_duration", "eval_duration"} <= set(last)

        req = {"model": "llama3.2:latest", "messages": USER, "stream": False, "options": {"num_predict": 2}}
        body = (await c.post("/api/chat", json=req)).json()
        assert body["model"] == "llama3.2:latest"
        assert body["message"] == {"role": "assistant", "content": "Echo: hello"}
        assert body["done"] is True and body["done_reason"] == "length"


async def test_ollama_tools_unknown_model_generate_embed_tags() -> None:
    async with open_fake_upstream("ollama", models=["llama3.2", "qwen2.5-coder:7b"]) as up, client(up.base_url) as c:
        req = {"model": "llama3.2", "messages": [{"role": "user", "content": "Tokyo"}], "tools": [WEATHER_TOOL]}
        lines = ndjson_lines((await c.post("/api/chat", json=req)).text)
        assert lines[0]["message"]["tool_calls"] == [
            {"function": {"name": "get_weather", "arguments": {"location": "Tokyo"}}}
        ]
        assert lines[-1]["done"] is True and lines[-1]["done_reason"] == "stop"

        r = await c.post("/api/chat", json={"model": "x", "messages": USER})
        assert r.status_code == 404 and r.json() == {"error": "model 'x' not found"}
        r = await c.post("/api/chat", json={"model": "qwen2.5-coder", "messages": USER})
        assert r.status_code == 404  # only the :7b tag exists

        req = {"model": "qwen2.5-coder:7b", "prompt": "def f(", "suffix": "return 1", "stream": False}
        body = (await c.post("/api/generate", json=req)).json()
        assert body["response"] == "Echo: def f( [suffix: return 1]" and body["done"] is True
        lines = ndjson_lines((await c.post("/api/generate", json={"model": "llama3.2", "prompt": "hi"})).text)
        assert "".join(line["response"] for line in lines) == "Echo: hi" and lines[-1]["done"] is True

        body = (await c.post("/api/embed", json={"model": "llama3.2", "input": ["a", "b c"], "dimensions": 4})).json()
        assert body["embeddings"] == [embedding_vector("a", 4), embedding_vector("b c", 4)]
        assert body["prompt_eval_count"] == 3

        tags = (await c.get("/api/tags")).json()["models"]
        assert [m["name"] for m in tags] == ["llama3.2:latest", "qwen2.5-coder:7b"]
        assert tags[0]["details"]["format"] == "gguf"
        r = await c.get("/api/nothing")
        assert r.status_code == 404 and r.text == "404 page not found"


async def test_ollama_faults() -> None:
    async with open_fake_upstream("ollama", api_key="ollama-key") as up, client(up.base_url) as c:
        assert (await c.post("/api/chat", json={"model": "llama3.2", "messages": USER})).status_code == 401
        c.headers["authorization"] = "Bearer ollama-key"
        up.fault_once(mid_stream_error="model crashed", error_after_chunks=2)
        lines = ndjson_lines((await c.post("/api/chat", json={"model": "llama3.2", "messages": USER})).text)
        assert len(lines) == 3 and lines[-1] == {"error": "model crashed"}
        up.fault_once(status=500)
        r = await c.post("/api/chat", json={"model": "llama3.2", "messages": USER})
        assert r.status_code == 500 and set(r.json()) == {"error"}


# --- faults ----------------------------------------------------------------------------------------


async def test_status_faults_once_times_and_path() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        req = {"model": "m", "messages": USER}
        up.fault_once(status=400)
        r = await c.post("/chat/completions", json=req)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        assert (await c.post("/chat/completions", json=req)).status_code == 200

        up.set_fault(Fault.rate_limited(retry_after=7, times=2))
        for _ in range(2):
            r = await c.post("/chat/completions", json=req)
            assert r.status_code == 429 and r.headers["retry-after"] == "7"
            assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert (await c.post("/chat/completions", json=req)).status_code == 200
        assert up.fault is None

        up.fault = Fault(status=500, path="/embeddings")
        assert (await c.post("/chat/completions", json=req)).status_code == 200
        r = await c.post("/embeddings", json={"model": "m", "input": "x"})
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        up.set_fault(status=503, body={"custom": True}, headers={"x-should-retry": "false"})
        r = await c.get("/models")
        assert (r.status_code, r.json(), r.headers["x-should-retry"]) == (503, {"custom": True}, "false")
        up.set_fault()
        assert (await c.get("/models")).status_code == 200
        assert up.last_request.fault is None and up.requests[-2].fault is not None


async def test_reset_before_headers() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        up.fault_once(reset_before_headers=True)
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post("/chat/completions", json={"model": "m", "messages": USER})
        up.fault_once(reset_before_headers=True, rst=True)
        with pytest.raises(httpx.TransportError):
            await c.post("/chat/completions", json={"model": "m", "messages": USER})
        assert [r.outcome for r in up.requests] == ["reset", "reset"]
        assert (await c.post("/chat/completions", json={"model": "m", "messages": USER})).status_code == 200
        assert up.connections_opened == 3


async def test_delay_headers_first_byte_timeout_counts_disconnect() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base, timeout=0.1) as c:
        up.fault_once(delay_headers=2.0)
        with pytest.raises(httpx.ReadTimeout):
            await c.post("/chat/completions", json={"model": "m", "messages": USER, "stream": True})
        assert await up.wait_disconnect(1.0) == 1
        assert up.last_request.outcome == "client_closed"

        up.fault_once(delay_headers=0.05)
        r = await c.post("/chat/completions", json={"model": "m", "messages": USER}, timeout=2.0)
        assert r.status_code == 200


async def test_stall_after_chunks_idle_timeout() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        up.fault_once(stall_after_chunks=2)
        got: list[str] = []
        req = {"model": "m", "messages": USER, "stream": True}
        with pytest.raises(httpx.ReadTimeout):
            async with c.stream("POST", "/chat/completions", json=req, timeout=httpx.Timeout(5.0, read=0.2)) as r:
                async for line in r.aiter_lines():
                    if line:
                        got.append(line)
        assert len(got) == 2
        assert await up.wait_disconnect(1.0) == 1
        await up.wait_idle(1.0)
        assert up.last_request.client_closed


async def test_break_after_chunks() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        up.fault_once(break_after_chunks=3)
        got: list[str] = []
        with pytest.raises(httpx.RemoteProtocolError):
            req = {"model": "m", "messages": USER, "stream": True}
            async with c.stream("POST", "/chat/completions", json=req) as r:
                async for line in r.aiter_lines():
                    if line:
                        got.append(line)
        assert len(got) == 3 and "data: [DONE]" not in got
        assert up.last_request.outcome == "broken"
        assert up.disconnects == 0  # the server hung up, not the client

        up.fault_once(break_after_chunks=0)  # non-streamed: headers, then nothing
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post("/chat/completions", json={"model": "m", "messages": USER})


async def test_chunk_delay_and_mid_stream_error() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        req = {"model": "m", "messages": USER, "stream": True}
        up.fault_once(chunk_delay=0.03)
        stamps: list[float] = []
        async with c.stream("POST", "/chat/completions", json=req) as r:
            async for line in r.aiter_lines():
                if line:
                    stamps.append(time.monotonic())
        assert len(stamps) == 8  # role + 5 words + finish + [DONE]
        assert stamps[-1] - stamps[0] >= 6 * 0.03 * 0.9

        up.fault_once(mid_stream_error=True, error_after_chunks=2)
        events = sse_events((await c.post("/chat/completions", json=req)).text)
        assert len(events) == 3 and "[DONE]" not in events
        assert events[-1] == {
            "error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        assert up.last_request.outcome == "mid_stream_error"


async def test_client_disconnect_mid_stream_is_counted() -> None:
    async with open_fake_upstream("openai", chunk_delay=0.2) as up, client(up.openai_base) as c:
        body = json.dumps({"model": "m", "messages": USER, "stream": True}).encode()
        head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n"
        sock = await trio.open_tcp_stream(up.host, up.port)
        await sock.send_all(head.encode() + body)
        assert b"200 OK" in await sock.receive_some(65536)
        await up.wait_for(lambda: up.active_streams == 1, 1.0)
        await sock.aclose()  # hang up mid-stream
        assert await up.wait_disconnect(1.0) == 1
        await up.wait_idle(1.0)
        assert up.active_streams == 0 and up.last_request.client_closed
        # A stream that completes is not a disconnect.
        up.configure(chunk_delay=0.0)
        await c.post("/chat/completions", json={"model": "m", "messages": USER, "stream": True})
        assert up.disconnects == 1
        with pytest.raises(TimeoutError):
            await up.wait_disconnect(0.05)


async def test_drop_connections_and_keep_alive() -> None:
    async with open_fake_upstream("openai") as up, client(up.openai_base) as c:
        for _ in range(3):
            assert (await c.get("/models")).status_code == 200
        assert up.connections_opened == 1
        up.drop_connections()
        await up.wait_for(lambda: up.active_connections == 0, 1.0)
        assert (await c.get("/models")).status_code == 200
        assert up.connections_opened == 2


# --- fast mode, nursery API, CLI -------------------------------------------------------------------


async def test_fast_mode_matches_normal_mode() -> None:
    req = {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    async with open_fake_upstream("openai") as slow, client(slow.openai_base) as c:
        expected = (await c.post("/chat/completions", json=req)).text
    async with open_fake_upstream("openai", fast=True) as up, client(up.openai_base) as c:
        for _ in range(3):
            r = await c.post("/chat/completions", json=req)
            assert r.text == expected
        assert (await c.post("/chat/completions", json={**req, "stream": False})).json()["choices"]
        assert up.request_count == 4 and up.requests == [] and up.connections_opened == 1
        up.configure(chunk_delay=0.01)  # paced streams still work in fast mode
        assert sse_events((await c.post("/chat/completions", json=req)).text)[-1] == "[DONE]"
        up.fault_once(status=429)  # and faults still apply
        assert (await c.post("/chat/completions", json=req)).status_code == 429


async def test_serve_fake_upstream_with_nursery_start() -> None:
    async with trio.open_nursery() as nursery:
        up = await nursery.start(serve_fake_upstream, "generic", "127.0.0.1", 0)
        assert isinstance(up, FakeUpstream) and up.port > 0
        async with client(up.openai_base) as c:
            assert (await c.post("/chat/completions", json={"model": "m", "messages": USER})).status_code == 200
        nursery.cancel_scope.cancel()


async def test_bench_cli_runs_and_stops_on_sigterm() -> None:
    script = Path(__file__).resolve().parents[2] / "bench" / "fake_upstream.py"
    cmd = [sys.executable, str(script), "--kind", "ollama", "--port", "0", "--chunks", "4"]
    proc = await trio.lowlevel.open_process(cmd, stdout=-1)  # -1 == subprocess.PIPE
    try:
        assert proc.stdout is not None
        line = b""
        with trio.fail_after(10):
            while not line.endswith(b"\n"):
                line += await proc.stdout.receive_some(1)
        base = line.decode().split(" on ")[1].split()[0]
        async with client(base) as c:
            lines = ndjson_lines((await c.post("/api/chat", json={"model": "llama3.2", "messages": USER})).text)
            assert len(lines) == 5 and lines[-1]["eval_count"] == 4
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if proc.stdout is not None:
            await proc.stdout.aclose()
