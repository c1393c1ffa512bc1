"""Server-Sent-Events decoding/encoding facade.

The hot path lives in ``omen._fast.sse`` (Cython) with a pure-Python twin; ``omen._fast.load`` picks
one. Everything else imports from here so it never cares which twin is active.
"""

from __future__ import annotations

from omen import _fast

_m = _fast.load("sse")

SSEDecoder = _m.SSEDecoder
SSEEvent = _m.SSEEvent
LineSplitter = _m.LineSplitter
encode_event = _m.encode_event
encode_data = _m.encode_data
BACKEND = "pure" if _m.__name__.endswith("_py") else "compiled"

__all__ = ["BACKEND", "LineSplitter", "SSEDecoder", "SSEEvent", "encode_data", "encode_event"]
