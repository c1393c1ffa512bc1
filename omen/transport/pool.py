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
import ssl
from dataclasses import dataclass

import httpx

from omen.config.schema import ProviderConfig
from omen.transport import httpcore_patches
from omen.transport.h11_transport import H11Transport, default_ssl_context

TRANSPORT_ENV = "OMEN_UPSTREAM_TRANSPORT"
TRANSPORTS = ("h11", "httpcore")
KEEPALIVE_EXPIRY = 30.0  # seconds an idle upstream connection is kept (below common server idle timeouts)


class UpstreamPool:
    """One httpx transport per upstream base URL. The exchange calls the transport directly
    (``handle_async_request``): httpx's client layer adds nothing a gateway wants (cookie jars shared
    across callers, redirects, default ``Accept-Encoding``) and costs CPU on every request."""

    def __init__(self, transport: str | None = None) -> None:
        """``transport``: ``"h11"`` or ``"httpcore"`` for HTTP/1.1 upstreams (default: $OMEN_UPSTREAM_TRANSPORT,
        else ``"h11"``)."""
        choice = transport or os.environ.get(TRANSPORT_ENV) or "h11"
        if choice not in TRANSPORTS:
            raise ValueError(f"{TRANSPORT_ENV}={choice!r}: expected one of {', '.join(TRANSPORTS)}")
        self.transport = choice
        httpcore_patches.apply()  # cancelled h2 upstream responses send RST_STREAM
        self._upstreams: dict[str, Upstream] = {}

    def upstream(self, base_url: str, cfg: ProviderConfig) -> Upstream:
        key = base_url if cfg.ca_bundle is None else f"{base_url} {cfg.ca_bundle}"
        upstream = self._upstreams.get(key)
        if upstream is None:
            upstream = self._upstreams[key] = Upstream(self._make(base_url, cfg), _timeouts(cfg))
        return upstream

    def _make(self, base_url: str, cfg: ProviderConfig) -> httpx.AsyncBaseTransport:
        context = _ssl_context(cfg.ca_bundle) if cfg.ca_bundle and base_url.startswith("https:") else None
        if not cfg.http2 and self.transport == "h11":
            return H11Transport(
                max_connections=cfg.max_connections, keepalive_expiry=KEEPALIVE_EXPIRY, ssl_context=context
            )
        http2 = bool(cfg.http2)
        tls = base_url.startswith("https:")
        return httpx.AsyncHTTPTransport(
            # http2 on cleartext = prior knowledge (h2c); over TLS, ALPN offers h2 and HTTP/1.1
            http1=tls or not http2,
            http2=http2,
            limits=httpx.Limits(
                max_connections=cfg.max_connections,
                max_keepalive_connections=cfg.max_connections,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
            trust_env=False,  # the gateway's routing is explicit; no proxy env surprises
            verify=context if context is not None else True,
        )

    async def aclose(self) -> None:
        upstreams, self._upstreams = list(self._upstreams.values()), {}
        for upstream in upstreams:
            await upstream.transport.aclose()


@dataclass(slots=True, frozen=True)
class Upstream:
    transport: httpx.AsyncBaseTransport
    timeouts: dict[str, float | None]  # httpx's per-request "timeout" extension


def _ssl_context(ca_bundle: str) -> ssl.SSLContext:
    """The usual trust store plus the provider's own CA certificates (GigaChat's chain ends in the
    Russian Trusted Root CA, which public stores lack)."""
    context = default_ssl_context()
    context.load_verify_locations(cafile=ca_bundle)
    return context


def _timeouts(cfg: ProviderConfig) -> dict[str, float | None]:
    # connect (and waiting for a pooled connection) is the transport's job; read/write deadlines are
    # trio cancel scopes in exchange.py
    return {"connect": cfg.timeouts.connect, "read": None, "write": None, "pool": cfg.timeouts.connect}
