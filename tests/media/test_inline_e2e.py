"""Images through the real server to a provider that needs them inline (Ollama, ``inline_images``):
OMEN fetches http(s) image URLs with the SSRF checks, checks data: URIs, and the fake Ollama receives
raw base64 only. Errors are OpenAI-format 400s naming the part."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai

from tests.conftest import running_omen
from tests.fakes import open_fake_upstream
from tests.media.image_server import JPEG, PNG, open_image_server


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_message(*urls: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "What is this?"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return [{"role": "user", "content": parts}]


@asynccontextmanager
async def gateway(tmp_path: Any, models: list[str], **images_cfg: Any) -> AsyncIterator[tuple[Any, Any, Any]]:
    """An image server, a fake Ollama serving ``models`` and OMEN in front of it; the image server's
    origin is an ``allow_hosts`` exception (it is on 127.0.0.1)."""
    async with open_image_server() as images, open_fake_upstream("ollama", models=models) as up:
        cfg = {
            "providers": {"ollama": {"endpoints": [up.base_url]}},
            "images": {"allow_hosts": [images.origin], **images_cfg},
        }
        async with running_omen(cfg, tmp_path=tmp_path) as omen:
            yield images, up, omen


async def post(omen: Any, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=omen.v1, timeout=30) as http:
        return await http.post("/chat/completions", json=body)


async def test_http_image_is_fetched_and_sent_inline(tmp_path) -> None:
    async with gateway(tmp_path, ["llava"]) as (images, up, omen):
        client = openai.AsyncOpenAI(base_url=omen.v1, api_key="unused", max_retries=0)
        messages = image_message(images.url("/cat.png"), images.url("/photo.jpg"))
        reply = await client.chat.completions.create(model="ollama/llava", messages=messages)
        assert reply.choices[0].message.content
        sent = up.requests_to("/api/chat")[-1].json
        assert sent["messages"] == [{"role": "user", "content": "What is this?", "images": [b64(PNG), b64(JPEG)]}]
        assert {s.path for s in images.seen} == {"/cat.png", "/photo.jpg"}
        # streamed the same way
        stream = await client.chat.completions.create(model="ollama/llava", messages=messages, stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert up.requests_to("/api/chat")[-1].json["messages"][0]["images"] == [b64(PNG), b64(JPEG)]
        await client.close()


async def test_data_uri_is_checked_and_relabelled(tmp_path) -> None:
    async with gateway(tmp_path, ["llava"], max_bytes=4096) as (_, up, omen):
        # JPEG bytes declared as PNG: Ollama gets the bytes unchanged
        jpeg_as_png = f"data:image/png;base64,{b64(JPEG)}"
        ok = await post(omen, {"model": "ollama/llava", "messages": image_message(jpeg_as_png)})
        assert ok.status_code == 200
        assert up.requests_to("/api/chat")[-1].json["messages"][0]["images"] == [b64(JPEG)]
        html = f"data:image/png;base64,{b64(b'<html>x</html>')}"
        bad = await post(omen, {"model": "ollama/llava", "messages": image_message(html)})
        assert bad.status_code == 400
        assert bad.json()["error"] == {
            "message": "Cannot use the image at messages[0].content[1].image_url.url: "
            "not an image: the bytes are not PNG, JPEG, GIF or WebP.",
            "type": "invalid_request_error",
            "param": "messages[0].content[1].image_url.url",
            "code": "invalid_image",
        }
        big = f"data:image/png;base64,{b64(PNG + bytes(5000))}"
        too_big = await post(omen, {"model": "ollama/llava", "messages": image_message(big)})
        assert too_big.status_code == 400
        assert too_big.json()["error"]["code"] == "image_too_large"
        assert "too large (the limit is 4096 bytes)" in too_big.json()["error"]["message"]
        assert len(up.requests_to("/api/chat")) == 1


async def test_ssrf_refusals_name_the_part_and_never_reach_ollama(tmp_path) -> None:
    async with gateway(tmp_path, ["llava"], max_bytes=2048, timeout_s=0.5) as (images, up, omen):
        refused = "image_url_refused"
        cases = [
            (images.url("/cat.png", host="localhost"), "refused: localhost resolves to a loopback address", refused),
            ("http://10.0.0.5/cat.png", "refused: a private address 10.0.0.5.", refused),
            ("http://169.254.169.254/latest/", "refused: the cloud metadata address 169.254.169.254", refused),
            (images.url("/redirect?to=http%3A%2F%2F10.0.0.5%2Fx.png"), "10.0.0.5 (after 1 redirect)", refused),
            (images.url("/big?size=100000"), "too large (the limit is 2048 bytes)", "image_too_large"),
            (images.url("/page.html"), "not an image: the server's content-type is 'text/html'", "invalid_image"),
            (images.url("/stall"), "timed out after 0.5s", "image_fetch_timeout"),
            ("ftp://127.0.0.1/cat.png", "an image URL must be http(s) or a data: URI", "invalid_image_url"),
        ]
        for url, fragment, code in cases:
            # the bad image is the second one: the error names it, not the good one
            body = {"model": "ollama/llava", "messages": image_message(images.url("/cat.png"), url)}
            response = await post(omen, body)
            assert response.status_code == 400, url
            error = response.json()["error"]
            assert fragment in error["message"] and error["code"] == code, error
            assert error["param"] == "messages[0].content[2].image_url.url"
            assert error["message"].startswith("Cannot use the image at messages[0].content[2].image_url.url: ")
        assert up.requests_to("/api/chat") == []


async def test_fetch_disabled_and_text_only_model(tmp_path) -> None:
    async with gateway(tmp_path, ["llava", "llama3.2"], fetch=False) as (images, up, omen):
        off = await post(omen, {"model": "ollama/llava", "messages": image_message(images.url("/cat.png"))})
        assert off.status_code == 400
        assert off.json()["error"]["code"] == "image_url_not_supported"
        assert "images.fetch = false" in off.json()["error"]["message"]
        # llama3.2 is text-only in the catalog: refused before any fetch
        body = {"model": "ollama/llama3.2", "messages": image_message(images.url("/cat.png"))}
        text_only = await post(omen, body)
        assert text_only.status_code == 400
        assert text_only.json()["error"] == {
            "message": "The model 'ollama/llama3.2' does not support images (capability 'vision').",
            "type": "invalid_request_error",
            "param": "messages[0].content[1]",
            "code": "unsupported_capability",
        }
        assert images.seen == [] and up.requests_to("/api/chat") == []
