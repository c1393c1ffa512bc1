"""Background model discovery: providers with ``discover_models = true`` are asked for their model
list at startup and every few minutes; what they serve becomes routable as ``<provider>/<model>``.
Runs in the server's nursery, so it starts and stops with the server."""

from __future__ import annotations

import trio

from omen.errors import OmenError
from omen.pipeline.gateway import Gateway
from omen.server.access_log import log_event

REFRESH_SECONDS = 300.0


async def discover_once(gw: Gateway, provider_id: str) -> None:
    provider = gw.providers[provider_id]
    request = provider.models_request()
    if request is None:
        return
    try:
        with trio.fail_after(provider.config.timeouts.connect + 10):
            response = await gw.exchange.open(provider, request)
            try:
                body = await response.read()
            finally:
                await response.aclose()
        if response.status >= 400:
            raise provider.error(response.status, response.headers, body)
        models = provider.models_result(body)
    except (OmenError, trio.TooSlowError) as exc:
        message = exc.message if isinstance(exc, OmenError) else "timed out"
        gw.discovery_errors[provider_id] = message
        log_event("model_discovery_failed", level="warning", provider=provider_id, error=message)
        return
    gw.discovery_errors.pop(provider_id, None)
    gw.table.set_discovered(provider_id, [m.id for m in models])


def publish_static_models(gw: Gateway) -> None:
    """Providers with no listing endpoint but a fixed, documented model set (``static_models = True``,
    e.g. Yandex) return it from ``models_result`` without a request; it costs nothing, so it is listed
    whatever ``discover_models`` says."""
    for pid, provider in gw.providers.items():
        if getattr(provider, "static_models", False):
            gw.table.set_discovered(pid, [m.id for m in provider.models_result(b"")])


async def run_discovery(gw: Gateway) -> None:
    publish_static_models(gw)
    targets = [pid for pid, cfg in gw.config.providers.items() if cfg.discover_models]
    if not targets:
        return
    while True:
        async with trio.open_nursery() as nursery:
            for pid in targets:
                nursery.start_soon(discover_once, gw, pid)
        await trio.sleep(REFRESH_SECONDS)
