"""All the images one request fetches share one byte budget (omen.media.inline.MAX_FETCHED_BYTES, or
images.max_bytes if larger). Per image only max_bytes applied, so 32 URLs of 20 MiB images each held
~1.5 GB per request until the upstream call."""

from __future__ import annotations

import pytest

from omen.api.chat import ChatCompletionRequest
from omen.api.decode import decode_body
from omen.config.schema import ImagesConfig
from omen.errors import OmenError
from omen.media import inline
from omen.media.fetch import Budget, FetchPolicy, ImageFetcher
from omen.media.images import ImageError
from omen.media.ssrf import normalise_allow_hosts
from tests.media.image_server import open_image_server

PER_IMAGE = 4096


def request(*urls: str) -> ChatCompletionRequest:
    parts = ",".join(f'{{"type":"image_url","image_url":{{"url":"{u}"}}}}' for u in urls)
    body = f'{{"model":"m","messages":[{{"role":"user","content":[{parts}]}}]}}'
    return decode_body(body.encode(), ChatCompletionRequest)


async def test_the_images_of_one_request_share_a_budget(monkeypatch):
    monkeypatch.setattr(inline, "MAX_FETCHED_BYTES", 3 * PER_IMAGE)
    async with open_image_server() as server:
        config = ImagesConfig(max_bytes=PER_IMAGE, allow_hosts=[server.origin])
        within = request(*[server.url(f"/big?size={PER_IMAGE}&n={i}") for i in range(3)])
        await inline.inline_images(within, config)  # exactly the budget: fine
        assert all(part.image_url.url.startswith("data:image/png;base64,") for _, part in inline.image_parts(within))
        over = request(*[server.url(f"/big?size={PER_IMAGE}&n={i}") for i in range(4)])
        with pytest.raises(OmenError) as exc:
            await inline.inline_images(over, config)
        assert (exc.value.status, exc.value.code) == (400, "image_too_large")
        assert "too large together" in exc.value.message


async def test_a_declared_length_over_the_rest_of_the_budget_is_refused_before_reading():
    async with open_image_server() as server:
        policy = FetchPolicy(max_bytes=1 << 20, allow_hosts=normalise_allow_hosts([server.origin]))
        budget = Budget(10_000)
        budget.remaining = 500
        with pytest.raises(ImageError) as exc:  # /declared announces the length, then stalls
            await ImageFetcher(policy).fetch(server.url("/declared?size=600"), budget)
        assert exc.value.code == "image_too_large" and "together" in exc.value.reason
