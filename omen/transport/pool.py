"""One pooled httpx client per upstream base URL, shared by every request to it.

Protocol per provider (``ProviderConfig.http2``):

* unset or ``false`` (the default): **HTTP/1.1** with keep-alive, on OMEN's own transport
  (:mod:`omen.transport.h11_transport`: trio streams + h11 under httpx's client API);
* ``true``: **HTTP/2** on httpx's default transport (httpcore + h2): over TLS offered by ALPN next to
  HTTP/1.1, on cleartext as h2c with prior knowledge. :mod:`omen.transport.httpcore_patches` makes an
  abandoned h2 response send RST_STREAM so the upstream stops generating.

Why HTTP/1.1 by default (until now it was h2 whenever ALPN offered it over TLS):

* **Cancellation is visible.** OMEN stops a billed upstream generation by closing the upstream
  response when its client goes away or a timeout fires. On HTTP/1.1 that closes the TCP connection,
  which every server notices. On HTTP/2 it is an RST_STREAM, which only helps if the upstream's
  server maps stream resets to request cancellation, and httpcore needs a patch to send it at all.
* **CPU.** httpx's default transport costs about 0.7-1 ms of CPU per request on trio and grows with
  the pool (httpcore scans every pooled connection per request); the h11 transport has O(1) checkout
  and a thin streaming path, which halved OMEN's CPU per proxied request in bench/transport.py.
  Between a gateway and an LLM API a few kept-alive connections per upstream carry long responses,
  so h2 multiplexing buys little there.

``OMEN_UPSTREAM_TRANSPORT=httpcore`` switches HTTP/1.1 upstreams back to httpx's default transport (a
fallback, and the baseline for benchmarks); the default is ``h11``. Timeouts other than connect (and
waiting for a free connection) are enforced by the caller as trio cancel scopes (see exchange.py), so
httpx's own read/write timeouts stay off.
"""

from __future__ import annotations

import os

import httpx

from omen.config.schema import ProviderConfig
from omen.transport import httpcore_patches
from omen.transport.h11_transport import H11Transport

TRANSPORT_ENV = "OMEN_UPSTREAM_TRANSPORT"
TRANSPORTS = ("h11", "httpcore")
KEEPALIVE_EXPIRY = 30.0  # seconds an idle upstream connection is kept (below common server idle timeouts)


class UpstreamPool:
    def __init__(self, transport: str | None = None) -> None:
        """``transport``: ``"h11"`` or ``"httpcore"`` for HTTP/1.1 upstreams (default: $OMEN_UPSTREAM_TRANSPORT,
        else ``"h11"``)."""
        choice = transport or os.environ.get(TRANSPORT_ENV) or "h11"
        if choice not in TRANSPORTS:
            raise ValueError(f"{TRANSPORT_ENV}={choice!r}: expected one of {', '.join(TRANSPORTS)}")
        self.transport = choice
        httpcore_patches.apply()  # cancelled h2 upstream responses send RST_STREAM
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, base_url: str, cfg: ProviderConfig) -> httpx.AsyncClient:
        client = self._clients.get(base_url)
        if client is None:
            client = self._clients[base_url] = self._make(base_url, cfg)
        return client

    def _make(self, base_url: str, cfg: ProviderConfig) -> httpx.AsyncClient:
        timeout = httpx.Timeout(None, connect=cfg.timeouts.connect, pool=cfg.timeouts.connect)
        if not cfg.http2 and self.transport == "h11":
            return httpx.AsyncClient(
                transport=H11Transport(max_connections=cfg.max_connections, keepalive_expiry=KEEPALIVE_EXPIRY),
                timeout=timeout,
                follow_redirects=False,
                trust_env=False,  # the gateway's routing is explicit; no proxy env surprises
            )
        http2 = bool(cfg.http2)
        tls = base_url.startswith("https:")
        return httpx.AsyncClient(
            # http2 on cleartext = prior knowledge (h2c); over TLS, ALPN offers h2 and HTTP/1.1
            http1=tls or not http2,
            http2=http2,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=cfg.max_connections,
                max_keepalive_connections=cfg.max_connections,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
