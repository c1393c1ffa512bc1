"""Prompt-token counting for chat requests, the way OpenAI bills them.

Messages follow the OpenAI cookbook ("How to count tokens with tiktoken", current models): every
message costs 3 tokens plus the tokens of each of its string values (role, content, name,
tool_call_id, ...), a ``name`` costs 1 more, and the reply is primed with 3 tokens
(``<|start|>assistant<|message|>``). OMEN extends the rule to content the cookbook leaves out:

- content given as a list of parts: text and refusal parts count their text;
- image parts: see ``image_tokens`` (85 for detail "low", tile formula otherwise);
- audio and file parts count 0 here (they are billed separately, not as text tokens);
- ``tool_calls`` / ``function_call``: the tokens of the function name plus its arguments string.

Messages may be plain dicts or the msgspec structs of ``omen.api.chat`` (the role is the struct tag).
Text and plain messages are exact; images and tool definitions are estimates.
"""

from __future__ import annotations

import binascii
import math
import struct
from typing import Any

import msgspec

from omen.tokens.encoding import Encoding, encoding_for_model, get_encoding

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

IMAGE_LOW = 85  # fixed cost of a detail="low" image, and the base cost of a high-detail one
IMAGE_TILE = 170  # per 512 px tile at high detail
DEFAULT_IMAGE_SIZE = (1024, 1024)  # assumed when the size cannot be read from a data: URL -> 765


def _plain(obj: Any) -> Any:
    return msgspec.to_builtins(obj) if isinstance(obj, msgspec.Struct) else obj


def image_tokens(url: str, detail: str | None) -> int:
    """Vision cost of one image (GPT-4o/4.1 family rule).

    "low" is 85. Otherwise ("high", "auto", unset — auto is treated as high): fit within 2048x2048,
    scale down so the shortest side is at most 768, then 85 + 170 per 512 px tile. The size is read
    from the header of a base64 ``data:`` URL (PNG, GIF, WebP, JPEG); OMEN does not fetch remote
    images, so for those the size is assumed to be 1024x1024 (765 tokens).
    """
    if detail == "low":
        return IMAGE_LOW
    width, height = _data_url_size(url) or DEFAULT_IMAGE_SIZE
    if width <= 0 or height <= 0:
        width, height = DEFAULT_IMAGE_SIZE
    if max(width, height) > 2048:
        scale = 2048 / max(width, height)
        width, height = width * scale, height * scale
    if min(width, height) > 768:
        scale = 768 / min(width, height)
        width, height = width * scale, height * scale
    return IMAGE_LOW + IMAGE_TILE * math.ceil(width / 512) * math.ceil(height / 512)


def _data_url_size(url: str) -> tuple[int, int] | None:
    if not url.startswith("data:") or ";base64," not in url[:100]:
        return None
    b64 = url[url.index(";base64,") + 8 :][:87380]  # decode at most ~64 KiB of header
    try:
        head = binascii.a2b_base64(b64[: len(b64) // 4 * 4])
    except binascii.Error:
        return None
    return _image_size(head)


def _image_size(h: bytes) -> tuple[int, int] | None:
    # Only the header fields that carry the pixel size; anything unexpected -> None (use the default).
    if h[:8] == b"\x89PNG\r\n\x1a\n" and len(h) >= 24:
        return struct.unpack(">II", h[16:24])
    if h[:6] in (b"GIF87a", b"GIF89a") and len(h) >= 10:
        return struct.unpack("<HH", h[6:10])
    if h[:4] == b"RIFF" and h[8:12] == b"WEBP" and len(h) >= 30:
        kind = h[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(h[24:27], "little"), 1 + int.from_bytes(h[27:30], "little")
        if kind == b"VP8 ":
            w, hh = struct.unpack("<HH", h[26:30])
            return w & 0x3FFF, hh & 0x3FFF
        if kind == b"VP8L":
            bits = int.from_bytes(h[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return None
    if h[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(h):
            if h[i] != 0xFF:
                return None
            marker = h[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # stand-alone markers
                i += 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
                height, width = struct.unpack(">HH", h[i + 5 : i + 9])
                return width, height
            i += 2 + int.from_bytes(h[i + 2 : i + 4], "big")
    return None


def _content_tokens(enc: Encoding, content: list[Any]) -> int:
    n = 0
    for part in content:
        part = _plain(part)
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "image_url":
            image = part.get("image_url") or {}
            if isinstance(image, str):
                image = {"url": image}
            n += image_tokens(image.get("url") or "", image.get("detail"))
        elif isinstance(part.get("text"), str):
            n += enc.count(part["text"])
        elif isinstance(part.get("refusal"), str):
            n += enc.count(part["refusal"])
    return n


def _call_tokens(enc: Encoding, call: Any) -> int:
    call = _plain(call)
    if not isinstance(call, dict):
        return 0
    fn = call.get("function", call)  # tool_calls wrap the function; function_call is the function
    if not isinstance(fn, dict):
        return 0
    return sum(enc.count(v) for v in (fn.get("name"), fn.get("arguments")) if isinstance(v, str))


def count_messages(messages: list[Any], enc: Encoding) -> int:
    """Prompt tokens of ``messages`` (with the reply priming), without tool definitions."""
    n = REPLY_PRIMING
    for message in messages:
        message = _plain(message)
        n += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                n += enc.count(value)
                if key == "name":
                    n += TOKENS_PER_NAME
            elif key == "content" and isinstance(value, list):
                n += _content_tokens(enc, value)
            elif key == "tool_calls" and isinstance(value, list):
                n += sum(_call_tokens(enc, call) for call in value)
            elif key == "function_call":
                n += _call_tokens(enc, value)
    return n


def count_tools(tools: list[Any], enc: Encoding) -> int:
    """Estimated prompt tokens added by tool (function) definitions.

    This is the cookbook's approximation ("Counting tokens for chat completions with tool calls"),
    reverse-engineered from API usage and not documented by OpenAI, so it is an estimate: per function
    7 tokens (o200k models; 10 for cl100k) + tokens of "name:description" (a final "." dropped);
    if it has properties, 3 + per property 3 + tokens of "key:type:description" (+ per enum value
    3 + its tokens, -3 once per enum); 12 once at the end. Accepts OpenAI ``tools`` entries
    (``{"type": "function", "function": {...}}``), legacy ``functions`` entries, or their structs.
    """
    func_init = 7 if enc.name == "o200k_base" else 10
    prop_init, prop_key, enum_init, enum_item, func_end = 3, 3, -3, 3, 12
    n = 0
    for tool in tools:
        tool = _plain(tool)
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict):
            continue
        n += func_init
        desc = str(fn.get("description") or "").removesuffix(".")
        n += enc.count(f"{fn.get('name') or ''}:{desc}")
        params = fn.get("parameters") or {}
        props = params.get("properties") if isinstance(params, dict) else None
        if isinstance(props, dict) and props:
            n += prop_init
            for key, prop in props.items():
                prop = prop if isinstance(prop, dict) else {}
                n += prop_key
                enum = prop.get("enum")
                if isinstance(enum, list):
                    n += enum_init
                    for item in enum:
                        n += enum_item + enc.count(str(item))
                p_type = prop.get("type", "")
                if isinstance(p_type, list):
                    p_type = "|".join(map(str, p_type))
                p_desc = str(prop.get("description") or "").removesuffix(".")
                n += enc.count(f"{key}:{p_type}:{p_desc}")
    if n:
        n += func_end
    return n


def count_chat(messages: list[Any], model: str, tools: list[Any] | None = None) -> int:
    """Prompt tokens of a chat request for ``model``: exact for text messages, estimated for tools."""
    enc = get_encoding(encoding_for_model(model))
    n = count_messages(messages, enc)
    if tools:
        n += count_tools(tools, enc)
    return n
