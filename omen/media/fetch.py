"""Fetch an http(s) image on a client's behalf without becoming an SSRF proxy.

Each hop (the URL, then every redirect) is checked the same way: http or https only, no credentials
in the URL, the host resolved once and every address vetted (:mod:`omen.media.ssrf`), then the
connection is opened to one of exactly those addresses. The body is streamed and cut off at
``max_bytes``; the Content-Type must be an image type and the bytes must sniff as one; the whole
fetch, redirects included, runs in one trio cancel scope of ``timeout`` seconds.

Why a subclass of OMEN's own :class:`~omen.transport.h11_transport.H11Transport`: httpx keeps the
request as the client wrote it (the URL's name in the Host header and in TLS SNI, certificates
verified against that name) while the one place that opens sockets, ``_connect``, is replaced by a
version that never resolves a name: it connects to the addresses this module vetted for that
(host, port) and refuses any other origin. Rewriting the URL to the IP instead would need the Host
header and SNI patched back in by hand (httpcore's ``sni_hostname`` extension; the h11 transport has
none), and a custom DNS resolver would still leave the resolve-then-connect gap open. Redirects are
followed here rather than by httpx so every hop is vetted before any connection is made.
"""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass, field

import httpx
import trio

from omen import __version__
from omen.config.schema import ImagesConfig
from omen.media.images import Image, ImageError, checked, media_type, require_accepted, too_large
from omen.media.ssrf import Refused, Resolver, Unresolvable, normalise_allow_hosts, system_resolver, vet
from omen.transport.h11_transport import H11Transport, _Connection, _Origin, default_ssl_context

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEADERS = [
    ("accept", "image/png, image/jpeg, image/gif, image/webp"),
    ("accept-encoding", "identity"),  # a compressed body would defeat the byte limit
    ("user-agent", f"omen/{__version__} (image fetch)"),
]
_NO_TIMEOUTS: dict[str, float | None] = {"connect": None, "read": None, "write": None, "pool": None}

_default_ssl: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _default_ssl
    if _default_ssl is None:
        _default_ssl = default_ssl_context()  # certifi's CAs; made once, on the first https fetch
    return _default_ssl


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    max_bytes: int = 20 * 1024 * 1024
    timeout: float = 10.0
    max_redirects: int = 3
    allow_hosts: frozenset[str] = field(default_factory=frozenset)  # normalised "host:port"

    @classmethod
    def from_config(cls, config: ImagesConfig) -> FetchPolicy:
        return cls(
            max_bytes=config.max_bytes,
            timeout=config.timeout_s,
            max_redirects=config.max_redirects,
            allow_hosts=normalise_allow_hosts(config.allow_hosts),
        )


class Budget:
    """Bytes the remaining downloads of one request may still bring in, shared by its fetches (trio runs
    them on one thread: a check and a decrement between two awaits cannot interleave)."""

    __slots__ = ("limit", "remaining")

    def __init__(self, limit: int) -> None:
        self.limit = self.remaining = limit

    def error(self) -> ImageError:
        return ImageError(
            f"the request's images are too large together (the limit is {self.limit} bytes per request)",
            "image_too_large",
        )


class _PinnedTransport(H11Transport):
    """The h11 transport with DNS taken out: an origin connects only to the addresses in ``pins``."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        super().__init__(max_connections=1, keepalive_expiry=0.0, ssl_context=ssl_context)
        self.pins: dict[tuple[str, int], list[str]] = {}

    async def _connect(self, origin: _Origin, timeout: float | None, request: httpx.Request) -> _Connection:
        addresses = self.pins.get((origin.host.lower(), origin.port))
        if not addresses:  # cannot happen: every hop is vetted before it is sent; never fall back to DNS
            raise httpx.ConnectError(f"{origin.host}:{origin.port} was not vetted", request=request)
        where = f"{origin.host}:{origin.port}"
        tcp: trio.SocketStream | None = None
        error: OSError | None = None
        with trio.move_on_after(math.inf if timeout is None else timeout):
            for address in addresses:  # in the resolver's order, as a browser would
                try:
                    tcp = await trio.open_tcp_stream(address, origin.port)  # a literal: no DNS query
                    break
                except OSError as exc:
                    error = exc
        if tcp is None:
            raise httpx.ConnectError(f"cannot connect to {where}: {error or 'timed out'}", request=request)
        try:
            if not origin.tls:
                return _Connection(tcp, tcp.socket)
            # SNI and certificate verification use the URL's name, not the address connected to.
            tls = trio.SSLStream(tcp, self._ssl_context, server_hostname=origin.host, https_compatible=True)
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as exc:
                cause = exc.__cause__ or exc
                raise httpx.ConnectError(f"TLS handshake with {where} failed: {cause}", request=request) from exc
            return _Connection(tls, tcp.socket)
        except BaseException:
            tcp.socket.close()
            raise


class ImageFetcher:
    """Fetches images under one :class:`FetchPolicy`. ``resolver`` and ``ssl_context`` are seams for
    tests (a name that resolves to a test server, a self-signed CA)."""

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self._resolver = resolver
        self._ssl_context = ssl_context

    async def fetch(self, url: str, budget: Budget | None = None) -> Image:
        """The image at ``url``; raises :class:`ImageError` with the reason otherwise. ``budget``: the
        bytes this download may take from a per-request total (see :func:`omen.media.inline_images`)."""
        policy = self.policy
        transport = _PinnedTransport(self._ssl_context or _ssl_context())
        try:
            with trio.move_on_after(policy.timeout):
                return await self._follow(transport, url, budget)
            raise ImageError(f"timed out after {policy.timeout:g}s", "image_fetch_timeout")
        finally:
            await transport.aclose()

    async def _follow(self, transport: _PinnedTransport, raw_url: str, budget: Budget | None) -> Image:
        try:
            url = httpx.URL(raw_url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise ImageError("not a valid URL", "invalid_image_url") from None
        for hop in range(self.policy.max_redirects + 1):
            note = "" if hop == 0 else f" (after {hop} redirect{'s' if hop > 1 else ''})"
            try:
                await self._pin(transport, url)
                result = await self._get(transport, url, budget)
            except Refused as refused:
                code = "image_fetch_failed" if isinstance(refused, Unresolvable) else "image_url_refused"
                raise ImageError(f"{refused}{note}", code) from None
            except ImageError as exc:
                raise ImageError(f"{exc.reason}{note}", exc.code) from None
            if isinstance(result, Image):
                return result
            try:
                url = url.join(result)
            except (httpx.InvalidURL, ValueError):
                raise ImageError(f"the image server redirected to an invalid URL{note}", "image_fetch_failed") from None
        raise ImageError(f"too many redirects (more than {self.policy.max_redirects})", "image_fetch_failed")

    async def _pin(self, transport: _PinnedTransport, url: httpx.URL) -> None:
        if url.scheme not in ("http", "https"):
            raise Refused(f"refused: only http and https URLs are fetched, not '{url.scheme}'")
        if url.userinfo:
            raise Refused("refused: credentials in the URL are not allowed")
        host = url.raw_host.decode("ascii").lower()  # IDNA already applied; IPv6 without brackets
        if not host:
            raise ImageError("not a valid URL (no host)", "invalid_image_url")
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await vet(host, port, self.policy.allow_hosts, self._resolver)
        transport.pins[(host, port)] = addresses

    async def _get(self, transport: _PinnedTransport, url: httpx.URL, budget: Budget | None) -> Image | str:
        """One hop: the image, or the Location a redirect points to."""
        request = httpx.Request("GET", url, headers=_HEADERS, extensions={"timeout": _NO_TIMEOUTS})
        try:
            response = await transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            raise ImageError(f"cannot fetch the image: {exc}", "image_fetch_failed") from None
        try:
            status = response.status_code
            if status in _REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise ImageError(f"the image server answered {status} without a Location", "image_fetch_failed")
                return location
            if status != 200:
                raise ImageError(f"the image server answered HTTP {status}", "image_fetch_failed")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise ImageError(f"compressed responses ({encoding[:40]}) are not accepted", "image_fetch_failed")
            require_accepted(media_type(response.headers.get("content-type", "")), "the server's content-type")
            return checked(await self._read(response, budget), self.policy.max_bytes)
        finally:
            with trio.CancelScope(shield=True):
                await response.aclose()  # an unread body closes the connection, which is what we want

    async def _read(self, response: httpx.Response, budget: Budget | None) -> bytes:
        limit = self.policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large(limit)  # before reading a byte of it
        if budget is not None and declared.isdigit() and int(declared) > budget.remaining:
            raise budget.error()
        body = bytearray()
        try:
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > limit:
                    raise too_large(limit)
                if budget is not None:
                    budget.remaining -= len(chunk)
                    if budget.remaining < 0:
                        raise budget.error()
        except httpx.HTTPError as exc:
            raise ImageError(f"the image download broke off: {exc}", "image_fetch_failed") from None
        return bytes(body)
