"""One pooled httpx client per upstream base URL, shared by every request to it.

Keep-alive and (over TLS) HTTP/2 via ALPN come from the pool; cleartext HTTP/2 (h2c prior knowledge)
only when the provider config says ``http2 = true``. Timeouts other than connect are enforced by the
caller as trio cancel scopes (see exchange.py), so httpx's own read/write timeouts stay off.
"""

from __future__ import annotations

import httpx

from omen.config.schema import ProviderConfig
from omen.transport import httpcore_patches


class UpstreamPool:
    def __init__(self) -> None:
        httpcore_patches.apply()  # cancelled h2 upstream responses send RST_STREAM
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, base_url: str, cfg: ProviderConfig) -> httpx.AsyncClient:
        client = self._clients.get(base_url)
        if client is None:
            client = self._clients[base_url] = self._make(base_url, cfg)
        return client

    @staticmethod
    def _make(base_url: str, cfg: ProviderConfig) -> httpx.AsyncClient:
        tls = base_url.startswith("https:")
        if cfg.http2 is None:
            http1, http2 = True, tls  # offer h2 over ALPN; never guess h2c on cleartext
        elif cfg.http2:
            http1, http2 = tls, True  # cleartext + http2 = prior knowledge (h2c)
        else:
            http1, http2 = True, False
        return httpx.AsyncClient(
            http1=http1,
            http2=http2,
            timeout=httpx.Timeout(None, connect=cfg.timeouts.connect, pool=cfg.timeouts.connect),
            limits=httpx.Limits(
                max_connections=cfg.max_connections,
                max_keepalive_connections=cfg.max_connections,
                keepalive_expiry=30.0,
            ),
            follow_redirects=False,
            trust_env=False,  # the gateway's routing is explicit; no proxy env surprises
        )

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
