"""Bad input and upstream faults: every case returns the right status and an OpenAI-format error
naming what was wrong, streams always end with an error event and [DONE], and a client that goes
away cancels the upstream request."""

from __future__ import annotations

import httpx
import orjson
import trio

from tests.conftest import openai_provider, running_omen
from tests.fakes import Fault, open_fake_upstream

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def config(up, **timeouts) -> dict:
    provider = openai_provider(up)
    if timeouts:
        provider["timeouts"] = timeouts
    return {
        "providers": {"openai": provider},
        "models": {"gpt-4o-mini": {"provider": "openai"}},
        "server": {"max_body_bytes": 4096},
        # how one upstream failure reaches the client: no retries (tests/integration/test_resilience.py)
        "routing": {"retries": 0},
    }


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    return error


def sse_payloads(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


async def test_bad_input(tmp_path) -> None:
    async with (
        open_fake_upstream("openai") as up,
        running_omen(config(up), tmp_path=tmp_path) as omen,
        httpx.AsyncClient(base_url=omen.v1) as http,
    ):
        error = assert_openai_error(await http.post("/chat/completions", content=b'{"model": "x", "mess'), 400)
        assert "byte" in error["message"]
        error = assert_openai_error(await http.post("/chat/completions", content=b'{"model": "x", ]'), 400)
        assert "byte" in error["message"] and error["code"] == "invalid_json"
        error = assert_openai_error(await http.post("/chat/completions", json={"model": "gpt-4o-mini"}), 400)
        assert error["param"] == "messages"
        bad_role = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a"}, {"role": "usr"}]}
        error = assert_openai_error(await http.post("/chat/completions", json=bad_role), 400)
        assert error["param"] == "messages[1].role"
        error = assert_openai_error(await http.post("/chat/completions", json={**CHAT, "temperature": "hot"}), 400)
        assert error["param"] == "temperature"
        error = assert_openai_error(await http.post("/chat/completions", json={**CHAT, "model": "mystery-model"}), 404)
        assert error["code"] == "model_not_found" and "/v1/models" in error["message"]
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
        assert_openai_error(await http.post("/chat/completions", json=big), 413)
        error = assert_openai_error(await http.get("/chat/completions"), 405)
        assert (await http.get("/chat/completions")).headers["allow"] == "POST"
        assert_openai_error(await http.post("/nothing/here", json={}), 404)
        assert_openai_error(await http.get(omen.url + "/admin"), 404)
        # deeply nested JSON inside a free-form field is refused, not a crash
        deep = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"}],"metadata":' + b"[" * 3000
        assert (await http.post("/chat/completions", content=deep)).status_code in (400, 413)
        assert up.request_count == 0  # nothing bad reached the upstream


async def test_upstream_errors_keep_status_and_message(tmp_path) -> None:
    async with (
        open_fake_upstream("openai") as up,
        running_omen(config(up), tmp_path=tmp_path) as omen,
        httpx.AsyncClient(base_url=omen.v1) as http,
    ):
        up.fault = Fault(status=400, message="Invalid 'messages[0].content': too long.")
        error = assert_openai_error(await http.post("/chat/completions", json=CHAT), 400)
        assert error["message"] == "Invalid 'messages[0].content': too long."
        up.fault = Fault(status=429, retry_after=7)
        response = await http.post("/chat/completions", json=CHAT)
        error = assert_openai_error(response, 429)
        assert response.headers["retry-after"] == "7"
        assert "Rate limit" in error["message"]
        up.fault = Fault(status=429, retry_after=3)
        response = await http.post("/chat/completions", json={**CHAT, "stream": True})
        assert_openai_error(response, 429)  # errors before the stream starts are plain JSON responses
        assert response.headers["retry-after"] == "3"


async def test_upstream_unreachable_and_reset(tmp_path) -> None:
    async with open_fake_upstream("openai") as up:
        dead_port = up.port
    dead = {
        "providers": {"openai": {"type": "openai", "api_key": "k", "base_url": f"http://127.0.0.1:{dead_port}/v1"}},
        "models": {"gpt-4o-mini": {"provider": "openai"}},
        "routing": {"retries": 0},
    }
    async with running_omen(dead, tmp_path=tmp_path) as omen, httpx.AsyncClient(base_url=omen.v1) as http:
        error = assert_openai_error(await http.post("/chat/completions", json=CHAT), 502)
        assert "openai" in error["message"] and "unreachable" in error["message"]
    async with (
        open_fake_upstream("openai") as up,
        running_omen(config(up), tmp_path=tmp_path) as omen,
        httpx.AsyncClient(base_url=omen.v1) as http,
    ):
        up.fault = Fault(reset_before_headers=True)
        assert_openai_error(await http.post("/chat/completions", json=CHAT), 502)
        up.fault = Fault(reset_before_headers=True, rst=True)
        assert_openai_error(await http.post("/chat/completions", json={**CHAT, "stream": True}), 502)


async def test_first_byte_and_idle_timeouts(tmp_path) -> None:
    async with (
        open_fake_upstream("openai") as up,
        running_omen(config(up, first_byte=0.5, idle=0.5), tmp_path=tmp_path) as omen,
        httpx.AsyncClient(base_url=omen.v1, timeout=10) as http,
    ):
        up.fault = Fault(delay_headers=3)
        error = assert_openai_error(await http.post("/chat/completions", json=CHAT), 504)
        assert "first byte" in error["message"]
        up.fault = Fault(stall_after_chunks=2)
        response = await http.post("/chat/completions", json={**CHAT, "stream": True})
        assert response.status_code == 200
        payloads = sse_payloads(response.text)
        assert payloads[-1] == "[DONE]"
        error = orjson.loads(payloads[-2])["error"]
        assert "idle" in error["message"] and error["code"] == "upstream_timeout"
        assert len(payloads) == 4  # two relayed chunks, the error event, [DONE]


async def test_mid_stream_break_and_error(tmp_path) -> None:
    async with (
        open_fake_upstream("openai") as up,
        running_omen(config(up), tmp_path=tmp_path) as omen,
        httpx.AsyncClient(base_url=omen.v1) as http,
    ):
        up.fault = Fault(break_after_chunks=2)
        response = await http.post("/chat/completions", json={**CHAT, "stream": True})
        payloads = sse_payloads(response.text)
        assert payloads[-1] == "[DONE]" and "error" in orjson.loads(payloads[-2])
        up.fault = Fault(mid_stream_error="model crashed")
        response = await http.post("/chat/completions", json={**CHAT, "stream": True})
        payloads = sse_payloads(response.text)
        assert payloads[-1] == "[DONE]"
        assert "model crashed" in orjson.loads(payloads[-2])["error"]["message"]
        record = await omen.log_for(response.headers["x-request-id"])
        assert record["status"] == 200 and "model crashed" in record["error"]


async def test_client_disconnect_cancels_upstream(tmp_path) -> None:
    async with (
        open_fake_upstream("openai", chunks=200, chunk_delay=0.02) as up,
        running_omen(config(up), tmp_path=tmp_path) as omen,
    ):
        async with (
            httpx.AsyncClient(base_url=omen.v1) as http,
            http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as response,
        ):
            async for _ in response.aiter_lines():
                break  # read one line, then drop the connection
        await up.wait_disconnect(timeout=5)
        assert up.disconnects >= 1
        with trio.fail_after(5):
            while not any(r.get("error") == "client disconnected" for r in omen.request_log()):
                await trio.sleep(0.02)


async def test_request_id_and_master_key(tmp_path) -> None:
    async with open_fake_upstream("openai") as up:
        cfg = config(up)
        cfg["auth"] = {"master_key": "env:TEST_MASTER"}
        async with (
            running_omen(cfg, tmp_path=tmp_path, env={"TEST_MASTER": "mk-123"}) as omen,
            httpx.AsyncClient(base_url=omen.v1) as http,
        ):
            error = assert_openai_error(await http.post("/chat/completions", json=CHAT), 401)
            assert error["code"] == "missing_api_key"
            wrong = await http.post("/chat/completions", json=CHAT, headers={"authorization": "Bearer nope"})
            assert assert_openai_error(wrong, 401)["code"] == "invalid_api_key"
            assert (await http.get("/models")).status_code == 401
            ok = await http.post(
                "/chat/completions", json=CHAT, headers={"authorization": "Bearer mk-123", "x-request-id": "trace-42"}
            )
            assert ok.status_code == 200 and ok.headers["x-request-id"] == "trace-42"
            assert up.last_request.headers["authorization"] == "Bearer sk-upstream-secret"
            assert (await http.get(omen.url + "/health")).status_code == 200  # liveness needs no key
            log = omen.log.getvalue()
            assert b"mk-123" not in log and b"sk-upstream-secret" not in log and b"hello" not in log
            assert omen.request_log("trace-42")[0]["status"] == 200


async def test_total_timeout_ends_a_long_stream(tmp_path) -> None:
    async with open_fake_upstream("openai", chunks=100, chunk_delay=0.05) as up, running_omen(
        config(up, total=0.6, idle=5), tmp_path=tmp_path
    ) as omen, httpx.AsyncClient(base_url=omen.v1, timeout=10) as http:
        response = await http.post("/chat/completions", json={**CHAT, "stream": True})
        payloads = sse_payloads(response.text)
        assert payloads[-1] == "[DONE]"
        error = orjson.loads(payloads[-2])["error"]
        assert "total" in error["message"] and error["code"] == "upstream_timeout"
        assert 2 < len(payloads) < 100  # some chunks were relayed before the deadline
        await up.wait_disconnect(timeout=5)  # and the upstream call was cancelled
