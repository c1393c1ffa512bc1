"""Images for providers that need them inline: SSRF-safe fetching of http(s) image URLs and checked
``data:`` URIs (see :mod:`omen.media.inline`, used by the pipeline for ``inline_images`` providers)."""

from omen.media.fetch import FetchPolicy, ImageFetcher
from omen.media.images import Image, ImageError, decode_data_uri, sniff
from omen.media.inline import inline_images
from omen.media.ssrf import classify

__all__ = [
    "FetchPolicy",
    "Image",
    "ImageError",
    "ImageFetcher",
    "classify",
    "decode_data_uri",
    "inline_images",
    "sniff",
]
