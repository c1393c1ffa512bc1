"""Decode a request body into a wire struct in one pass; map msgspec errors to OpenAI 400s.

Nesting is limited to :data:`MAX_NESTING` levels of arrays and objects before msgspec sees the body:
msgspec recurses once per level with no limit of its own (a ``[[[[...`` body ends in a RecursionError,
or, on a small thread stack, a crash), and what it decodes is serialised again by orjson, which refuses
more than 255 levels, and walked by recursive Python code (tool schema translation, token counting).
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import TypeVar

import msgspec

from omen.errors import OmenError, bad_request

T = TypeVar("T")

MAX_NESTING = 128  # levels of JSON arrays/objects in a request body (serde_json's default limit too)

_decoders: dict[type, msgspec.json.Decoder] = {}
_PATH = re.compile(r" - at `\$\.?(.*)`$")

# The nesting scan keeps only quotes and brackets ({} read as []), drops what is inside strings, then
# walks the running depth. Byte-level operations all the way, so even a 32 MiB body takes well under a
# second; a body with fewer opening brackets than the limit stops after a count or the first translate.
_NOT_MARKS = bytes(b for b in range(256) if b not in b'"[]{}')
_SQUARE = bytes.maketrans(b"{}", b"[]")
_STEPS = bytes.maketrans(b"[]", b"\x01\xff")  # +1 / -1 as signed bytes
_BLOCK = 1 << 16
_SMALL = 1 << 14  # below this, two counts first (larger bodies usually have more brackets than the limit)


def nesting_exceeds(body: bytes, limit: int = MAX_NESTING) -> bool:
    """Whether arrays and objects in ``body`` (JSON) nest more than ``limit`` levels deep.

    Exact for valid JSON; for invalid JSON (the decoder refuses it anyway) it never under-reports the
    depth of an unclosed run of brackets, which is what would overflow the decoder's stack.
    """
    if len(body) <= _SMALL and body.count(b"[") + body.count(b"{") <= limit:
        return False  # the common case: two counts, cheaper than the translate below
    if b'\\"' in body:
        # Escaped quotes do not end a string. A quote after a run of backslashes is escaped when the run
        # is odd; with no backslash pair right before a quote, every \" is escaped.
        if b'\\\\"' in body:
            body = body.replace(b"\\\\", b"")
        body = body.replace(b'\\"', b"")
    marks = body.translate(_SQUARE, _NOT_MARKS)
    if marks.count(b"[") <= limit:  # fewer opening brackets than the limit, in strings or not
        return False
    if b'"' in marks:
        marks = b"".join(marks.split(b'"')[::2])  # what is between quote 2k and 2k+1 is a string
    # Every deepest point is inside an innermost pair, so removing those lowers the depth by exactly one
    # (and shrinks wide, shallow bodies to almost nothing before the walk below).
    marks = marks.replace(b"[]", b"")
    limit -= 1
    if len(marks) <= limit:
        return False
    steps = array("b", marks.translate(_STEPS))
    depth = 0
    for start in range(0, len(steps), _BLOCK):
        block = steps[start : start + _BLOCK]
        if max(accumulate(block, initial=depth)) > limit:
            return True
        depth += sum(block)
    return False


def _too_deep() -> OmenError:
    return bad_request(
        f"The request body nests JSON arrays and objects more than {MAX_NESTING} levels deep.",
        code="json_too_deep",
    )


def decode_body(body: bytes, type_: type[T]) -> T:
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    if nesting_exceeds(body):
        raise _too_deep()
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        if not body.strip():
            raise bad_request("The request body is empty; expected a JSON object.") from None
        detail = str(exc)
        if "truncated" in detail:
            detail = f"the JSON ends unexpectedly at byte {len(body)} (truncated)"
        raise bad_request(f"The request body is not valid JSON: {detail}", code="invalid_json") from None
    except RecursionError:  # cannot happen within MAX_NESTING on a normal stack; never a 500 if it does
        raise _too_deep() from None


def _validation_error(text: str) -> OmenError:
    match = _PATH.search(text)
    param = match.group(1) if match else None
    if text.startswith("Object missing required field"):
        field = text.split("`")[1]
        param = f"{param}.{field}" if param else field
        return bad_request(f"Missing required field '{param}'.", param=param)
    if param is None and text.startswith("Expected `object`"):
        return bad_request(f"The request body must be a JSON object: {text}")
    where = f" at '{param}'" if param else ""
    return bad_request(f"Invalid value{where}: {text}", param=param)
