"""omen.tokens against the reference tokenizers (tiktoken built offline from the same rank file, and
bpe_openai), for both BPE twins, plus the chat billing formula."""

from __future__ import annotations

import base64
import importlib
import struct
import warnings
from functools import cache
from types import ModuleType

import msgspec
import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

import omen.tokens
from omen._fast import FORCE_PURE
from omen.api.chat import ChatCompletionRequest
from omen.tokens import count_chat, count_text, encoding_for_model, get_encoding, image_tokens
from omen.tokens.encoding import _SPECS, PIECE_CACHE_SIZE, Encoding

from .conftest import compiled_or_skip

NAMES = ["cl100k_base", "o200k_base"]

# bpe_openai (one of the oracles) uses a deprecated importlib.resources call, also at import time.
pytestmark = pytest.mark.filterwarnings("ignore:open_binary is deprecated:DeprecationWarning")


@cache
def bpe_openai() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("bpe_openai")


def tiktoken_offline(name: str) -> tiktoken.Encoding:
    """tiktoken's own implementation, built from the same (hash-checked) rank file: no download."""
    pat, special, _ = _SPECS[name]
    ranks = get_encoding(name)._ranks
    return tiktoken.Encoding(name, pat_str=pat, mergeable_ranks=ranks, special_tokens=special)


@pytest.fixture(scope="session", params=NAMES)
def oracle(request: pytest.FixtureRequest) -> tiktoken.Encoding:
    return tiktoken_offline(request.param)


@pytest.fixture(scope="session", params=["compiled", "pure"])
def enc_twin(request: pytest.FixtureRequest, oracle: tiktoken.Encoding) -> Encoding:
    """An Encoding using one BPE twin explicitly (independent of OMEN_PURE_PYTHON)."""
    kind = request.param
    module = compiled_or_skip("bpe") if kind == "compiled" else importlib.import_module("omen._fast.bpe_py")
    shared = get_encoding(oracle.name)
    return Encoding(oracle.name, _SPECS[oracle.name][0], shared._ranks, shared.special_tokens, bpe=module)


CORPUS = {
    "python": (
        'def fib(n: int) -> int:\n    """Fibonacci."""\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n'
        "\n\nprint([fib(i) for i in range(10)])  # noqa\n"
    ),
    "json": (
        '{"id":"chatcmpl-9x","object":"chat.completion.chunk","choices":[{"index":0,'
        '"delta":{"content":" Hello"},"finish_reason":null}],"usage":{"prompt_tokens":12}}'
    ),
    "c": "#include <stdio.h>\nint main(void) {\n\tfor (int i = 0; i < 10; ++i)\n"
    '\t\tprintf("%d\\n", i);\r\n\treturn 0;\n}\n',
    "prose": (
        "It's a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. They'll say we've done it; I'd've SAID 'no'."
    ),
    "cjk": "日本語のテキストです。中文文本测试，한국어 텍스트도 있습니다。",  # noqa: RUF001
    "cyrillic": "Съешь же ещё этих мягких французских булок, да выпей чаю. ЁЛКИ-ПАЛКИ",
    "arabic": "مرحبا بالعالم! هذه جملة عربية للاختبار، مع أرقام ١٢٣ و 456.",
    "emoji": "Family 👨‍👩‍👧‍👦, flag 🏳️‍🌈, skin 👍🏽, keycap 1️⃣, astronaut 🧑🏿‍🚀 and 😀😀😀!!",
    "whitespace": "a  b\t\tc\n\n\n   \n\t \r\n\r\n    d     \n      ",
    "numbers": "3.14159 2,718,281 1e-9 0x7fff 12345678901234567890 -42 1/2 ⅔ ١٢٣",
    "specials": "<|endoftext|> <|fim_prefix|>x<|fim_middle|>y<|fim_suffix|> <|endofprompt|> <|im_start|>",
    "mixed_case": "HTTPServer XMLHttpRequest iPhone CamelCaseWord ALLCAPS don'T WE'LL O'Neil",
    "accents": "Ça va? Naïve café, jalapeño, Zürich, ǅemal, e\u0301te\u0301 (combining)",
    "empty": "",
    "long_run": "x" * 5000 + " " * 3000 + "9" * 100,
    "lone_surrogate": "bad \ud800 surrogate \udfff end",
}


@pytest.mark.parametrize("key", list(CORPUS))
def test_corpus_matches_tiktoken(enc_twin, oracle, key):
    text = CORPUS[key]
    expected = oracle.encode_ordinary(text)
    assert enc_twin.encode(text) == expected
    assert enc_twin.count(text) == len(expected)


@pytest.mark.parametrize("key", [k for k in CORPUS if k != "lone_surrogate"])
@pytest.mark.parametrize("name", NAMES)
def test_corpus_matches_bpe_openai(name, key):
    text = CORPUS[key]
    assert get_encoding(name).encode(text) == bpe_openai().get_encoding(name).encode_ordinary(text)


def test_whole_corpus_and_decode(enc_twin, oracle):
    text = "\n".join(CORPUS.values())
    assert enc_twin.encode(text) == oracle.encode_ordinary(text)
    clean = text.replace("\ud800", "").replace("\udfff", "")
    assert enc_twin.decode(enc_twin.encode(clean)) == clean


_ALPHABET = st.sampled_from(
    [*" \t\n\r'sdtlvrem0123456789aZé中ё\u0661😀\u200d\ufe0f.,!?-_/<|>{}\"", "'ll", "'S", "\r\n", "  ", "👨\u200d👩"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_property_tricky_alphabet_matches_tiktoken(enc_twin, oracle, text):
    assert enc_twin.encode(text) == oracle.encode_ordinary(text)


# Characters unassigned in Python's Unicode database (Cn) are excluded: the `regex` module may know
# newer Unicode letters than tiktoken's Rust regex, and the two then pre-tokenise them differently.
@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs", "Cn")), max_size=80))
def test_property_random_text_matches_tiktoken(enc_twin, oracle, text):
    expected = oracle.encode_ordinary(text)
    assert enc_twin.encode(text) == expected
    assert enc_twin.count(text) == len(expected)


def test_piece_cache_is_bounded():
    enc = get_encoding("o200k_base")
    enc.count("warm the cache")
    assert enc._piece_count.cache_info().maxsize == PIECE_CACHE_SIZE
    assert enc._piece_ids.cache_info().maxsize == PIECE_CACHE_SIZE


def test_get_encoding_is_cached_and_validates():
    assert get_encoding("cl100k_base") is get_encoding("cl100k_base")
    assert get_encoding("o200k_base").name == "o200k_base"
    with pytest.raises(ValueError):
        get_encoding("p50k_base")


def test_backend_reports_the_twin_in_use():
    assert omen.tokens.BACKEND in ("compiled", "pure")
    if FORCE_PURE:
        assert omen.tokens.BACKEND == "pure"


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("GPT-3.5-Turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("azure/gpt-35-turbo-16k", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("llama3.1:8b", "o200k_base"),
        ("unknown", "o200k_base"),
    ],
)
def test_encoding_for_model(model, name):
    assert encoding_for_model(model) == name


def test_count_text():
    assert count_text("hello world", "gpt-4") == 2
    assert count_text(CORPUS["cjk"], "gpt-4o") == get_encoding("o200k_base").count(CORPUS["cjk"])


# ---- chat -----------------------------------------------------------------------------------------

# The message list of OpenAI's cookbook "How to count tokens with tiktoken".
_JARGON = "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."
_CIRCLE = "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."
COOKBOOK_MESSAGES = [
    {"role": "system", "content": _JARGON},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": _CIRCLE},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


def cookbook_formula(messages: list[dict], enc: tiktoken.Encoding) -> int:
    """The cookbook's num_tokens_from_messages, computed with the reference tokenizer."""
    n = 3
    for message in messages:
        n += 3
        for key, value in message.items():
            n += len(enc.encode_ordinary(value))
            if key == "name":
                n += 1
    return n


@pytest.mark.parametrize(("model", "published"), [("gpt-4", 129), ("gpt-3.5-turbo", 129), ("gpt-4o", 124)])
def test_count_chat_cookbook_example(model, published):
    expected = cookbook_formula(COOKBOOK_MESSAGES, tiktoken_offline(encoding_for_model(model)))
    assert count_chat(COOKBOOK_MESSAGES, model) == expected
    assert expected == published  # the API usage the cookbook reports for these models


def test_count_chat_structs_equal_dicts():
    body = {"model": "gpt-4o", "messages": COOKBOOK_MESSAGES}
    request = msgspec.convert(body, ChatCompletionRequest)
    assert count_chat(request.messages, "gpt-4o") == count_chat(COOKBOOK_MESSAGES, "gpt-4o")


def test_count_chat_content_parts_tool_calls_and_images():
    enc = get_encoding("o200k_base")
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "cats"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "cats are great"},
    ]
    expected = (
        3
        + (3 + enc.count("user") + enc.count("What is in this image?") + 85 + 765)
        + (3 + enc.count("assistant") + enc.count("lookup") + enc.count('{"q": "cats"}'))
        + (3 + enc.count("tool") + enc.count("call_1") + enc.count("cats are great"))
    )
    assert count_chat(messages, "gpt-4o") == expected
    request = msgspec.convert({"model": "gpt-4o", "messages": messages}, ChatCompletionRequest)
    assert count_chat(request.messages, "gpt-4o") == expected


def _png(width: int, height: int) -> str:
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", width, height) + b"\x08\x06"
    return "data:image/png;base64," + base64.b64encode(header + b"\x00" * 20).decode()


def _jpeg(width: int, height: int) -> str:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, height, width) + b"\x03" + b"\x00" * 9
    return "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8" + app0 + sof).decode()


def _gif(width: int, height: int) -> str:
    return (
        "data:image/gif;base64,"
        + base64.b64encode(b"GIF89a" + struct.pack("<HH", width, height) + b"\x00" * 8).decode()
    )


@pytest.mark.parametrize(
    ("url", "detail", "tokens"),
    [
        ("https://x/y.png", "low", 85),
        ("https://x/y.png", "high", 765),  # unknown size: assumed 1024x1024
        (_png(1024, 1024), "high", 765),  # OpenAI's documented example
        (_png(2048, 4096), "auto", 1105),  # -> 1024x2048 -> 768x1536: 6 tiles
        (_png(512, 512), None, 255),
        (_png(4000, 100), "high", 85 + 170 * 4),  # -> 2048x51: 4x1 tiles
        (_jpeg(800, 600), "high", 85 + 170 * 4),  # no resize: 2x2 tiles
        (_gif(100, 100), "high", 255),
        (_png(5000, 5000), "low", 85),
        ("data:image/png;base64,not-base64!!", "high", 765),
    ],
)
def test_image_tokens(url, detail, tokens):
    assert image_tokens(url, detail) == tokens


def test_count_chat_tools_cookbook_example():
    """The cookbook's tool-count estimate for its weather tool (published: 105 gpt-4/3.5, 101 gpt-4o)."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "description": "Get the current weather in a given location",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                        "unit": {
                            "type": "string",
                            "description": "The unit of temperature to return",
                            "enum": ["celsius", "fahrenheit"],
                        },
                    },
                    "required": ["location"],
                },
            },
        }
    ]
    messages = [
        {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
        {"role": "user", "content": "What's the weather like in San Francisco?"},
    ]
    assert count_chat(messages, "gpt-4", tools) == 105
    assert count_chat(messages, "gpt-3.5-turbo", tools) == 105
    assert count_chat(messages, "gpt-4o", tools) == 101
    request = msgspec.convert({"model": "gpt-4o", "messages": messages, "tools": tools}, ChatCompletionRequest)
    assert count_chat(request.messages, "gpt-4o", request.tools) == 101
    legacy = [tools[0]["function"]]  # the deprecated `functions` parameter
    assert count_chat(messages, "gpt-4o", legacy) == 101
