"""Token counting for prompts and completions (tiktoken-compatible, offline).

``count_text`` / ``Encoding.count`` are exact for cl100k_base and o200k_base; ``count_chat`` follows
OpenAI's billing rule for chat messages (tool definitions and images are estimates, see
``omen.tokens.chat``). ``BACKEND`` says whether the byte-pair merge runs compiled or in pure Python.
"""

from omen._fast import backend as _backend
from omen.tokens.chat import count_chat, count_messages, count_tools, image_tokens
from omen.tokens.encoding import (
    ENCODING_NAMES,
    Encoding,
    count_text,
    encoding_for_model,
    get_encoding,
)

BACKEND: str = _backend("bpe")

__all__ = [
    "BACKEND",
    "ENCODING_NAMES",
    "Encoding",
    "count_chat",
    "count_messages",
    "count_text",
    "count_tools",
    "encoding_for_model",
    "get_encoding",
    "image_tokens",
]
