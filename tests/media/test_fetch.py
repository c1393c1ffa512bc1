"""The image fetcher against a real local HTTP(S) server: limits, types, redirects, timeouts and the
SSRF checks on every hop. Refused targets are refused before any connection, so no test ever sends
a packet anywhere but 127.0.0.1."""

from __future__ import annotations

import ssl
from urllib.parse import quote

import pytest
import trio

from omen.media.fetch import FetchPolicy, ImageFetcher
from omen.media.images import ImageError
from omen.media.ssrf import normalise_allow_hosts, system_resolver
from tests.media.image_server import JPEG, PNG, ImageServer, open_image_server


def fetcher(server: ImageServer | None = None, *extra_allowed: str, **policy: object) -> ImageFetcher:
    allowed = [server.origin] if server is not None else []
    return ImageFetcher(FetchPolicy(allow_hosts=normalise_allow_hosts([*allowed, *extra_allowed]), **policy))


async def fails(f: ImageFetcher, url: str) -> ImageError:
    with pytest.raises(ImageError) as exc:
        await f.fetch(url)
    return exc.value


async def test_fetches_an_allowed_host_as_png():
    async with open_image_server() as server:
        image = await fetcher(server).fetch(server.url("/cat.png"))
        assert (image.media_type, image.data) == ("image/png", PNG)
        seen = server.seen[-1]
        assert seen.host == server.origin and seen.headers["accept-encoding"] == "identity"
        assert "image/png" in seen.headers["accept"] and "authorization" not in seen.headers


async def test_loopback_refused_without_allow_hosts():
    async with open_image_server() as server:
        err = await fails(fetcher(), server.url("/cat.png"))
        assert (err.reason, err.code) == ("refused: a loopback address 127.0.0.1", "image_url_refused")
        # allow_hosts is per host:port: another port of the same address stays refused
        err = await fails(fetcher(None, "127.0.0.1:1"), server.url("/cat.png"))
        assert err.reason == "refused: a loopback address 127.0.0.1"
        assert server.seen == []  # refused before connecting


async def test_a_name_resolving_to_loopback_is_refused_after_dns():
    """'localhost' is not 127.0.0.1 for allow_hosts: the check runs on what the name resolves to."""
    async with open_image_server() as server:
        err = await fails(fetcher(server), server.url("/cat.png", host="localhost"))
        assert err.reason.startswith("refused: localhost resolves to a loopback address")
        assert server.seen == []


async def test_connects_to_the_vetted_address_and_keeps_the_name():
    """A name that no DNS server knows, resolved once through the resolver seam: the connection goes
    to that vetted address (no second lookup) and the request still names the host."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"] if host == "images.test" else await system_resolver(host, port)

    async with open_image_server() as server:
        policy = FetchPolicy(allow_hosts=normalise_allow_hosts([f"images.test:{server.port}"]))
        f = ImageFetcher(policy, resolver=resolve)
        image = await f.fetch(server.url(f"/redirect?to={quote('/cat.png')}", host="images.test"))
        assert image.data == PNG
        assert [s.host for s in server.seen] == [f"images.test:{server.port}"] * 2
        assert calls == ["images.test", "images.test"]  # once per hop, never between vetting and connecting


async def test_sniffed_type_wins_over_the_label():
    async with open_image_server() as server:
        image = await fetcher(server).fetch(server.url("/photo.jpg"))
        assert (image.media_type, image.data) == ("image/jpeg", JPEG)
        assert image.data_uri().startswith("data:image/jpeg;base64,/9j/")


async def test_size_cut_off_while_streaming_and_by_content_length():
    async with open_image_server() as server:
        f = fetcher(server, max_bytes=4096)
        assert len((await f.fetch(server.url("/big?size=4096"))).data) == 4096
        err = await fails(f, server.url("/big?size=100000"))  # chunked: no length to look at
        assert (err.reason, err.code) == ("too large (the limit is 4096 bytes)", "image_too_large")
        with trio.fail_after(3):  # /declared stalls after its head: only the header can end this early
            err = await fails(fetcher(server, max_bytes=4096, timeout=30), server.url("/declared?size=999999"))
        assert err.code == "image_too_large"


@pytest.mark.parametrize(
    ("path", "reason", "code"),
    [
        (
            "/page.html",
            "not an image: the server's content-type is 'text/html'; accepted: image/png, image/jpeg, image/gif "
            "or image/webp",
            "invalid_image",
        ),
        ("/fake.png", "not an image: the bytes are not PNG, JPEG, GIF or WebP", "invalid_image"),
        ("/gzip.png", "compressed responses (gzip) are not accepted", "image_fetch_failed"),
        ("/status?code=404", "the image server answered HTTP 404", "image_fetch_failed"),
        ("/status?code=302", "the image server answered 302 without a Location", "image_fetch_failed"),
    ],
)
async def test_wrong_answers(path, reason, code):
    async with open_image_server() as server:
        err = await fails(fetcher(server), server.url(path))
        assert (err.reason, err.code) == (reason, code)


async def test_redirects_are_vetted_on_every_hop():
    async with open_image_server() as server:
        f = fetcher(server)

        def redirect(to: str) -> str:
            return server.url(f"/redirect?to={quote(to, safe='')}")

        assert (await f.fetch(redirect("/cat.png"))).data == PNG
        cases = {
            "http://10.0.0.5/cat.png": "refused: a private address 10.0.0.5 (after 1 redirect)",
            "http://169.254.169.254/latest/": "refused: the cloud metadata address 169.254.169.254 (after 1 redirect)",
            "http://metadata.google.internal/x": "refused: metadata.google.internal is a cloud metadata host",
            server.url("/cat.png", host="localhost"): "refused: localhost resolves to a loopback address",
            "ftp://127.0.0.1/cat.png": "refused: only http and https URLs are fetched, not 'ftp'",
            f"http://user:secret@127.0.0.1:{server.port}/cat.png": "refused: credentials in the URL are not allowed",
        }
        for target, reason in cases.items():
            before = len(server.seen)
            err = await fails(f, redirect(target))
            assert err.reason.startswith(reason) and err.code == "image_url_refused", err.reason
            assert len(server.seen) == before + 1  # only the redirect itself reached a server
        # a redirect to a private address is refused even when the first host was an exception
        err = await fails(f, redirect("http://192.168.0.10:8080/x.png"))
        assert "a private address 192.168.0.10" in err.reason


async def test_redirect_limit():
    async with open_image_server() as server:
        target = "/cat.png"
        for _ in range(3):
            target = f"/redirect?to={quote(target, safe='')}"
        assert (await fetcher(server, max_redirects=3).fetch(server.url(target))).data == PNG
        err = await fails(fetcher(server, max_redirects=2), server.url(target))
        assert err.reason == "too many redirects (more than 2)"


async def test_timeout_is_one_cancel_scope():
    async with open_image_server() as server:
        with trio.fail_after(5):
            err = await fails(fetcher(server, timeout=0.3), server.url("/stall"))
        assert (err.reason, err.code) == ("timed out after 0.3s", "image_fetch_timeout")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1/cat.png", "refused: only http and https URLs are fetched, not 'ftp'"),
        ("file:///etc/passwd", "refused: only http and https URLs are fetched, not 'file'"),
        ("http://user:pw@127.0.0.1/cat.png", "refused: credentials in the URL are not allowed"),
        ("http://[::1]:9/cat.png", "refused: a loopback address ::1"),
        # a numeric spelling is a name to httpx; the resolver turns it into the address that is checked
        ("http://0x7f000001/cat.png", "refused: 0x7f000001 resolves to a loopback address"),
        ("http://127.1/cat.png", "refused: 127.1 resolves to a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "refused: a loopback address (IPv4-mapped 127.0.0.1) ::ffff:7f00:1"),
        ("http:///cat.png", "not a valid URL (no host)"),
        ("http://a..b/cat.png", "cannot resolve a..b"),  # an empty label: refused by the IDNA codec
    ],
)
async def test_refused_urls(url, reason):
    err = await fails(fetcher(), url)
    assert err.reason == reason


async def test_https_uses_the_name_for_sni_and_verification(certs):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(certs.certfile, certs.keyfile)
    trusted = ssl.create_default_context(cafile=certs.certfile)
    async with open_image_server(server_ctx) as server:
        allow = normalise_allow_hosts([f"localhost:{server.port}"])
        f = ImageFetcher(FetchPolicy(allow_hosts=allow), ssl_context=trusted)
        image = await f.fetch(server.url("/cat.png", host="localhost"))  # ::1 may come first: falls back
        assert image.data == PNG and server.seen[-1].host == f"localhost:{server.port}"
        # the default context (certifi's CAs) does not trust the test CA: verification is on
        err = await fails(ImageFetcher(FetchPolicy(allow_hosts=allow)), server.url("/cat.png", host="localhost"))
        assert err.code == "image_fetch_failed" and "TLS handshake" in err.reason
