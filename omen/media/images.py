"""What counts as an image: the accepted media types, magic-byte sniffing and ``data:`` URIs.

A declared type (a Content-Type header, a data: URI's media type) is only a claim; the bytes decide.
An image whose bytes are another accepted type than declared is passed on with the type its bytes
have, so the upstream decodes it correctly; bytes that are no accepted image are refused.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

# image/jpg is not registered but common; it is read as image/jpeg.
ACCEPTED_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp"})
ACCEPTED_LIST = "image/png, image/jpeg, image/gif or image/webp"


class ImageError(Exception):
    """An image that cannot be used. ``reason`` is shown to the client; ``code`` is the OpenAI error code."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def too_large(limit: int) -> ImageError:
    return ImageError(f"too large (the limit is {limit} bytes)", "image_too_large")


@dataclass(frozen=True, slots=True)
class Image:
    media_type: str  # what the bytes are (sniffed), one of the accepted types
    data: bytes

    def data_uri(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"


def sniff(data: bytes) -> str | None:
    """The accepted image type ``data`` starts like, or ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def media_type(declared: str) -> str:
    """``"image/PNG; charset=x"`` -> ``"image/png"``."""
    return declared.split(";", 1)[0].strip().lower()


def require_accepted(declared: str, what: str) -> None:
    if declared not in ACCEPTED_TYPES:
        raise ImageError(f"not an image: {what} is '{declared or 'none'}'; accepted: {ACCEPTED_LIST}", "invalid_image")


def checked(data: bytes, max_bytes: int) -> Image:
    """Bytes that must be an accepted image within ``max_bytes``."""
    if len(data) > max_bytes:
        raise too_large(max_bytes)
    kind = sniff(data)
    if kind is None:
        raise ImageError("not an image: the bytes are not PNG, JPEG, GIF or WebP", "invalid_image")
    return Image(kind, data)


@dataclass(frozen=True, slots=True)
class DataURI:
    image: Image
    declared: str  # the media type the URI claimed

    @property
    def relabelled(self) -> bool:
        """The claim was wrong (a JPEG sent as image/png): the URI must be rebuilt with the real type."""
        return self.declared != self.image.media_type


def decode_data_uri(url: str, max_bytes: int) -> DataURI:
    """Decode and check ``data:<image type>;base64,<data>``."""
    if url[:5].lower() != "data:":
        raise ImageError("not a data: URI", "invalid_image")
    header, comma, payload = url[5:].partition(",")
    declared, *params = header.split(";")
    declared = media_type(declared)
    if not comma:
        raise ImageError("not a valid data: URI (no ',' before the data)", "invalid_image")
    if "base64" not in (p.strip().lower() for p in params):
        raise ImageError("the data: URI must be base64-encoded (data:image/png;base64,...)", "invalid_image")
    require_accepted(declared, "its media type")
    # Refuse an oversized payload before decoding it: 4 base64 characters carry 3 bytes.
    if len(payload) // 4 * 3 > max_bytes + 3:
        raise too_large(max_bytes)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("the data: URI does not contain valid base64 data", "invalid_image") from None
    if not data:
        raise ImageError("the data: URI is empty", "invalid_image")
    image = checked(data, max_bytes)
    return DataURI(image, "image/jpeg" if declared == "image/jpg" else declared)
