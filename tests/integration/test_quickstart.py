"""What a newcomer sees: `omen serve` with no configuration serves the labelled demo model;
/health and /ready; `omen version` names the active hot-path backend."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import openai
import trio

from tests.conftest import running_omen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "CI", "OMEN_PURE_PYTHON")}
    return {**keep, **extra}


async def test_demo_model_without_config(tmp_path) -> None:
    async with running_omen({}, tmp_path=tmp_path) as omen:
        async with httpx.AsyncClient(base_url=omen.url) as http:
            models = (await http.get("/v1/models")).json()["data"]
            assert [m["id"] for m in models] == ["omen-demo"]
            assert models[0]["demo"] is True and models[0]["owned_by"] == "omen-demo"
            ready = await http.get("/ready")
            assert ready.status_code == 200 and ready.json()["providers"] == ["demo"]
        client = openai.AsyncOpenAI(base_url=omen.v1, api_key="none", max_retries=0)
        stream = await client.chat.completions.create(
            model="omen-demo",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "What are you?"}],
        )
        pieces, usage = [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        assert len(pieces) > 10 and "demo model" in "".join(pieces)
        assert usage.completion_tokens > 0 and usage.prompt_tokens > 0
        completion = await client.completions.create(model="omen-demo", prompt="x = ", suffix="\n")
        assert completion.choices[0].text
        embedding = await client.embeddings.create(model="omen-demo", input="hello")
        assert len(embedding.data[0].embedding) == 16
        await client.close()


async def test_ready_without_providers(tmp_path) -> None:
    async with running_omen({"demo": False}, tmp_path=tmp_path) as omen, httpx.AsyncClient() as http:
        ready = await http.get(omen.url + "/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
        assert (await http.get(omen.url + "/health")).status_code == 200


async def test_omen_serve_command_and_sigterm(tmp_path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "omen", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient() as http:
            with trio.fail_after(30):
                while True:
                    try:
                        if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await trio.sleep(0.1)
            reply = await http.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"model": "omen-demo", "messages": [{"role": "user", "content": "zebra-secret-prompt"}]},
            )
            assert reply.status_code == 200
        process.send_signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(lambda: process.wait(timeout=30))
        assert code == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = process.stderr.read().decode()
    assert '"event":"request"' in log and '"status":200' in log
    assert "zebra-secret-prompt" not in log  # prompts never reach the log


def test_omen_version_names_backend() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "omen", "version"], capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert out.returncode == 0 and out.stdout.startswith("omen ")
    pure = subprocess.run(
        [sys.executable, "-m", "omen", "version"],
        capture_output=True,
        text=True,
        env=clean_env(OMEN_PURE_PYTHON="1"),
        timeout=60,
    )
    assert "pure-python" in pure.stdout
    assert "compiled" not in pure.stdout
