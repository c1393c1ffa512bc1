"""A client that disconnects cancels the upstream call over HTTP/2 too: OMEN sends RST_STREAM for the
abandoned upstream stream (httpcore alone does not), while other streams on that connection go on."""

from __future__ import annotations

from functools import partial

import httpx
import trio

from omen.config.schema import ServerConfig
from omen.server.serve import serve
from tests.conftest import running_omen


class SlowOpenAIStream:
    """An h2c OpenAI-style upstream that streams forever and records when a stream is cancelled."""

    def __init__(self) -> None:
        self.cancelled = trio.Event()
        self.http_versions: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.http_versions.append(scope["http_version"])
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})

        async def stream() -> None:
            i = 0
            while True:
                chunk = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
                         b'"choices":[{"index":0,"delta":{"content":"t%d "},"finish_reason":null}]}\n\n' % i)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                i += 1
                await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream)
            while (await receive())["type"] != "http.disconnect":
                pass
            self.cancelled.set()
            nursery.cancel_scope.cancel()


async def test_client_disconnect_resets_h2_upstream_stream(tmp_path) -> None:
    upstream = SlowOpenAIStream()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(partial(serve, upstream, ServerConfig(bind="127.0.0.1:0"),
                                                shutdown_trigger=stop.wait))
        cfg = {"providers": {"h2up": {"type": "openai-compatible", "http2": True,
                                      "base_url": f"http://127.0.0.1:{listening.port}/v1"}}}
        async with running_omen(cfg, tmp_path=tmp_path) as omen, httpx.AsyncClient() as client:
            body = {"model": "h2up/m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
            async with client.stream("POST", omen.v1 + "/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        break
            with trio.fail_after(10):
                await upstream.cancelled.wait()
        assert upstream.http_versions == ["2"]
        stop.set()
