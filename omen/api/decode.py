"""Decode a request body into a wire struct in one pass; map msgspec errors to OpenAI 400s."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from omen.errors import OmenError, bad_request

T = TypeVar("T")

_decoders: dict[type, msgspec.json.Decoder] = {}
_PATH = re.compile(r" - at `\$\.?(.*)`$")


def decode_body(body: bytes, type_: type[T]) -> T:
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
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
