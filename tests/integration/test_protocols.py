"""A normal and a streamed chat completion through OMEN over every protocol it serves:
HTTP/1.1, h2c (prior knowledge), h2 over TLS (ALPN) and HTTP/3 (QUIC), plus curl."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import orjson
import pytest
import trio

from tests.clients.h3 import h3_request
from tests.conftest import openai_provider, running_omen
from tests.fakes import open_fake_upstream

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "over the wire"}]}
STREAM_BODY = {**BODY, "stream": True}


def config(up) -> dict:
    return {"providers": {"openai": openai_provider(up)}, "models": {"gpt-4o-mini": {"provider": "openai"}}}


def streamed_text(raw: bytes) -> str:
    text = ""
    lines = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    for payload in lines[:-1]:
        for choice in orjson.loads(payload)["choices"]:
            text += choice["delta"].get("content") or ""
    return text


async def check_httpx(client: httpx.AsyncClient, url: str, version: str) -> None:
    response = await client.post(url, json=BODY)
    assert response.http_version == version
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Echo: over the wire"
    async with client.stream("POST", url, json=STREAM_BODY) as streamed:
        assert streamed.http_version == version
        assert streamed.headers["content-type"].startswith("text/event-stream")
        raw = b"".join([chunk async for chunk in streamed.aiter_raw()])
    assert streamed_text(raw) == "Echo: over the wire"


async def test_http1_and_h2c(tmp_path) -> None:
    async with open_fake_upstream("openai") as up, running_omen(config(up), tmp_path=tmp_path) as omen:
        url = omen.v1 + "/chat/completions"
        async with httpx.AsyncClient() as h1:
            await check_httpx(h1, url, "HTTP/1.1")
        async with httpx.AsyncClient(http1=False, http2=True) as h2c:
            await check_httpx(h2c, url, "HTTP/2")


async def test_h2_over_tls_and_alt_svc(tmp_path, certs) -> None:
    async with open_fake_upstream("openai") as up, running_omen(config(up), tmp_path=tmp_path, tls=certs) as omen:
        url = omen.v1 + "/chat/completions"
        async with httpx.AsyncClient(http2=True, verify=False) as h2:
            await check_httpx(h2, url, "HTTP/2")
            health = await h2.get(omen.url + "/health")
            assert f'h3=":{omen.port}"' in health.headers.get("alt-svc", "")
        async with httpx.AsyncClient(verify=False) as h1tls:
            await check_httpx(h1tls, url, "HTTP/1.1")


async def test_http3(tmp_path, certs) -> None:
    async with open_fake_upstream("openai") as up, running_omen(config(up), tmp_path=tmp_path, tls=certs) as omen:
        assert omen.listening.quic_port == omen.port  # same port number, over UDP
        url = f"https://127.0.0.1:{omen.port}/v1/chat/completions"
        headers = [("content-type", "application/json")]
        response = await h3_request(url, method="POST", headers=headers, body=orjson.dumps(BODY))
        assert response.status == 200
        assert orjson.loads(response.body)["choices"][0]["message"]["content"] == "Echo: over the wire"
        assert response.header("x-omen-provider") == "openai"
        streamed = await h3_request(url, method="POST", headers=headers, body=orjson.dumps(STREAM_BODY))
        assert streamed.status == 200 and streamed.header("content-type").startswith("text/event-stream")
        assert streamed_text(streamed.body) == "Echo: over the wire"
        assert len(streamed.chunks) > 1  # delivered incrementally, not as one buffered body


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (apt-get install curl)")
async def test_curl(tmp_path) -> None:
    async with open_fake_upstream("openai") as up, running_omen(config(up), tmp_path=tmp_path) as omen:
        url = omen.v1 + "/chat/completions"

        def curl(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(["curl", "-sS", "--fail-with-body", *args], capture_output=True, timeout=30)

        for flags in ([], ["--http2-prior-knowledge"]):
            plain = await trio.to_thread.run_sync(
                lambda f=flags: curl(*f, url, "-H", "content-type: application/json", "-d", orjson.dumps(BODY))
            )
            assert plain.returncode == 0, plain.stderr
            assert orjson.loads(plain.stdout)["choices"][0]["message"]["content"] == "Echo: over the wire"
            streamed = await trio.to_thread.run_sync(
                lambda f=flags: curl(
                    *f, "-N", url, "-H", "content-type: application/json", "-d", orjson.dumps(STREAM_BODY)
                )
            )
            assert streamed.returncode == 0, streamed.stderr
            assert streamed_text(streamed.stdout) == "Echo: over the wire"
        missing = await trio.to_thread.run_sync(
            lambda: subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", omen.v1 + "/models/nope"],
                capture_output=True,
                timeout=30,
            )
        )
        assert missing.stdout == b"404"
