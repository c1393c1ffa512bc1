"""A real HTTP/1.1 image server on 127.0.0.1 (trio + h11, optional TLS) for the fetcher tests.

Routes:
  /cat.png               a real 1x1 PNG (image/png, Content-Length)
  /photo.jpg             JPEG bytes labelled image/png (the sniffed type wins)
  /big?size=N            N bytes of a PNG, chunked (no Content-Length), sent in 1 KiB pieces
  /declared?size=N       a Content-Length of N announced, then a short PNG
  /page.html             text/html
  /fake.png              image/png label, HTML bytes
  /gzip.png              image/png with Content-Encoding: gzip
  /redirect?to=URL       302 to URL (/redirect?to=/cat.png works too)
  /stall                 the head is sent, then nothing
  /status?code=N         an empty answer with status N
"""

from __future__ import annotations

import gzip
import ssl
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import parse_qs, urlsplit

import h11
import trio


def png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 1x1, 8-bit RGBA
    pixels = zlib.compress(b"\x00\xff\x00\x00\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PNG = png_1x1()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32 + b"\xff\xd9"


@dataclass
class Seen:
    path: str
    host: str
    headers: dict[str, str]


@dataclass
class ImageServer:
    port: int
    scheme: str
    seen: list[Seen] = field(default_factory=list)
    disconnects: int = 0  # connections the client closed before the body was complete

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    @property
    def origin(self) -> str:
        return f"127.0.0.1:{self.port}"


async def _send(stream: trio.abc.Stream, conn: h11.Connection, event: h11.Event) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


async def _respond(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes | list[bytes] = b"",
) -> None:
    await _send(stream, conn, h11.Response(status_code=status, headers=headers))
    for piece in body if isinstance(body, list) else [body]:
        if piece:
            await _send(stream, conn, h11.Data(data=piece))
    await _send(stream, conn, h11.EndOfMessage())


async def _handle(server: ImageServer, stream: trio.abc.Stream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                break
            if isinstance(event, h11.ConnectionClosed):
                return
        headers = {k.decode().lower(): v.decode() for k, v in event.headers}
        target = event.target.decode()
        server.seen.append(Seen(target, headers.get("host", ""), headers))
        await _route(server, stream, conn, target)
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        server.disconnects += 1
    finally:
        await trio.aclose_forcefully(stream)


async def _route(server: ImageServer, stream: trio.abc.Stream, conn: h11.Connection, target: str) -> None:
    parts = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    path = parts.path
    if path in ("/cat.png", "/photo.jpg"):
        body = PNG if path == "/cat.png" else JPEG  # both labelled image/png
        headers = [("content-type", "image/png"), ("content-length", str(len(body))), ("connection", "close")]
        await _respond(stream, conn, 200, headers, body)
    elif path == "/big":
        size = int(query.get("size", "100000"))
        body = (PNG + b"\x00" * size)[:size]
        pieces = [body[i : i + 1024] for i in range(0, len(body), 1024)]
        await _respond(stream, conn, 200, [("content-type", "image/png"), ("transfer-encoding", "chunked")], pieces)
    elif path == "/declared":
        head = [("content-type", "image/png"), ("content-length", query.get("size", "100000"))]
        await _send(stream, conn, h11.Response(status_code=200, headers=head))
        await _send(stream, conn, h11.Data(data=PNG))
        await trio.sleep_forever()  # the client must give up on the header alone
    elif path == "/page.html":
        html = b"<html>hello</html>"
        await _respond(stream, conn, 200, [("content-type", "text/html"), ("content-length", str(len(html)))], html)
    elif path == "/fake.png":
        html = b"<html>not a png</html>"
        await _respond(stream, conn, 200, [("content-type", "image/png"), ("content-length", str(len(html)))], html)
    elif path == "/gzip.png":
        packed = gzip.compress(PNG)
        headers = [("content-type", "image/png"), ("content-encoding", "gzip"), ("content-length", str(len(packed)))]
        await _respond(stream, conn, 200, headers, packed)
    elif path == "/redirect":
        await _respond(stream, conn, 302, [("location", query.get("to", "/cat.png")), ("content-length", "0")])
    elif path == "/stall":
        await _send(stream, conn, h11.Response(status_code=200, headers=[("content-type", "image/png")]))
        await trio.sleep_forever()
    elif path == "/status":
        await _respond(stream, conn, int(query.get("code", "404")), [("content-length", "0")])
    else:
        await _respond(stream, conn, 404, [("content-length", "0")])


@asynccontextmanager
async def open_image_server(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[ImageServer]:
    """Serve until the block ends; ``ssl_context`` (server side) turns on TLS."""
    box: list[ImageServer] = []  # the handler needs the server, the server needs the port

    async def handler(stream: trio.SocketStream) -> None:
        wrapped: trio.abc.Stream = stream
        if ssl_context is not None:
            tls = trio.SSLStream(stream, ssl_context, server_side=True)
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError:
                await trio.aclose_forcefully(stream)
                return
            wrapped = tls
        await _handle(box[0], wrapped)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        box.append(ImageServer(listeners[0].socket.getsockname()[1], "https" if ssl_context else "http"))
        try:
            yield box[0]
        finally:
            nursery.cancel_scope.cancel()
