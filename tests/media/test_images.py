"""Magic-byte sniffing and data: URI decoding."""

from __future__ import annotations

import base64

import pytest

from omen.media.images import ImageError, checked, decode_data_uri, sniff
from tests.media.image_server import JPEG, PNG

GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("data", "kind"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp"), (b"<html>", None)],
)
def test_sniff(data, kind):
    assert sniff(data) == kind


def test_riff_that_is_not_webp_is_refused():
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    with pytest.raises(ImageError, match="not an image: the bytes are not PNG, JPEG, GIF or WebP"):
        checked(b"RIFF\x00\x00\x00\x00WAVEfmt ", 100)


def test_data_uri_ok_and_relabelled():
    ok = decode_data_uri(f"data:image/png;base64,{b64(PNG)}", 1000)
    assert (ok.image.media_type, ok.image.data, ok.relabelled) == ("image/png", PNG, False)
    # JPEG bytes declared as PNG: passed on as what they are
    wrong = decode_data_uri(f"data:image/png;base64,{b64(JPEG)}", 1000)
    assert wrong.relabelled and wrong.image.data_uri() == f"data:image/jpeg;base64,{b64(JPEG)}"
    # image/jpg is read as image/jpeg, parameters and case are tolerated
    assert not decode_data_uri(f"DATA:image/jpg;name=x.jpg;base64,{b64(JPEG)}", 1000).relabelled


@pytest.mark.parametrize(
    ("url", "fragment", "code"),
    [
        ("data:image/png;base64", "no ','", "invalid_image"),
        (f"data:image/png,{b64(PNG)}", "must be base64-encoded", "invalid_image"),
        (f"data:image/tiff;base64,{b64(PNG)}", "its media type is 'image/tiff'", "invalid_image"),
        (f"data:;base64,{b64(PNG)}", "its media type is 'none'", "invalid_image"),
        ("data:image/png;base64,@@@not-base64", "not contain valid base64", "invalid_image"),
        ("data:image/png;base64,", "is empty", "invalid_image"),
        (f"data:image/png;base64,{b64(b'<html>no</html>')}", "not an image", "invalid_image"),
        (f"data:image/png;base64,{b64(PNG + bytes(200))}", "too large (the limit is 100 bytes)", "image_too_large"),
        (f"data:image/png;base64,{b64(PNG + bytes(10_000))}", "too large", "image_too_large"),  # before decoding
    ],
)
def test_data_uri_errors(url, fragment, code):
    with pytest.raises(ImageError) as exc:
        decode_data_uri(url, 100)
    assert fragment in exc.value.reason and exc.value.code == code
