"""Make every image of a chat request inline before a provider that cannot fetch URLs sees it.

For a provider with ``inline_images = True`` the pipeline calls :func:`inline_images`: http(s) image
URLs are fetched (concurrently, a few at a time) and replaced by ``data:`` URIs; ``data:`` URIs are
decoded and checked the same way (accepted type, real image bytes, size). The translator then only
ever sees checked ``data:`` URIs. Any failure is a 400 naming the part (``messages[i].content[j]
.image_url.url``) and the reason.
"""

from __future__ import annotations

import trio

from omen.api.chat import ChatCompletionRequest, ImagePart
from omen.config.schema import ImagesConfig
from omen.errors import OmenError, bad_request
from omen.media.fetch import Budget, FetchPolicy, ImageFetcher
from omen.media.images import ImageError, decode_data_uri

MAX_CONCURRENT_FETCHES = 4  # per request: enough to overlap latency without fanning out unboundedly
MAX_REMOTE_IMAGES = 32  # per request: each may hold max_bytes in memory until the upstream call
# All the images one request fetches, together (or max_bytes, if larger): as much as the client could have
# sent inline in a whole request body. Without it, 32 URLs of max_bytes (20 MiB) images each held ~1.5 GB
# of bytes and base64 text per request until the upstream call: a few such requests exhaust the memory.
MAX_FETCHED_BYTES = 32 * 1024 * 1024


def image_parts(request: ChatCompletionRequest) -> list[tuple[str, ImagePart]]:
    """Every image part with its param path, in message order."""
    out = []
    for i, msg in enumerate(request.messages):
        content = getattr(msg, "content", None)
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, ImagePart):
                    out.append((f"messages[{i}].content[{j}].image_url.url", part))
    return out


def _error(param: str, exc: ImageError) -> OmenError:
    return bad_request(f"Cannot use the image at {param}: {exc.reason}.", param=param, code=exc.code)


async def inline_images(
    request: ChatCompletionRequest, config: ImagesConfig, *, fetcher: ImageFetcher | None = None
) -> None:
    """Rewrite the request's image URLs to checked data: URIs, in place."""
    parts = image_parts(request)
    if not parts:
        return
    remote: list[tuple[str, ImagePart]] = []
    for param, part in parts:
        url = part.image_url.url
        scheme = url.partition(":")[0].lower() if ":" in url else ""
        if scheme == "data":
            try:
                decoded = decode_data_uri(url, config.max_bytes)
            except ImageError as exc:
                raise _error(param, exc) from None
            if decoded.relabelled:
                part.image_url.url = decoded.image.data_uri()
        elif scheme in ("http", "https"):
            if not config.fetch:
                raise bad_request(
                    f"Cannot use the image at {param}: this gateway does not fetch image URLs for this provider "
                    "(images.fetch = false); send the image inline as a data: URI (data:image/png;base64,...).",
                    param=param,
                    code="image_url_not_supported",
                )
            remote.append((param, part))
        else:
            raise bad_request(
                f"Cannot use the image at {param}: an image URL must be http(s) or a data: URI.",
                param=param,
                code="invalid_image_url",
            )
    if not remote:
        return
    if len(remote) > MAX_REMOTE_IMAGES:
        param = remote[MAX_REMOTE_IMAGES][0]
        raise bad_request(
            f"Too many image URLs to fetch ({len(remote)}); at most {MAX_REMOTE_IMAGES} per request.",
            param=param,
            code="too_many_images",
        )
    budget = Budget(max(config.max_bytes, MAX_FETCHED_BYTES))
    await _fetch_all(remote, fetcher or ImageFetcher(FetchPolicy.from_config(config)), budget)


async def _fetch_all(remote: list[tuple[str, ImagePart]], fetcher: ImageFetcher, budget: Budget) -> None:
    limiter = trio.CapacityLimiter(MAX_CONCURRENT_FETCHES)
    failures: dict[int, ImageError] = {}

    async def one(index: int, part: ImagePart, cancel: trio.CancelScope) -> None:
        async with limiter:
            try:
                image = await fetcher.fetch(part.image_url.url, budget)
            except ImageError as exc:
                failures[index] = exc
                cancel.cancel()  # one bad image fails the request: stop the other downloads
                return
        part.image_url.url = image.data_uri()

    async with trio.open_nursery() as nursery:
        for index, (_, part) in enumerate(remote):
            nursery.start_soon(one, index, part, nursery.cancel_scope)
    if failures:
        first = min(failures)  # of those that failed before the rest were cancelled, the earliest part
        raise _error(remote[first][0], failures[first])
