"""The capability catalog: lookup by exact id then prefix, provider decorations, config overrides,
the request checks, and the config sections that feed them."""

from __future__ import annotations

import orjson
import pytest

from omen.api.chat import ChatCompletionRequest
from omen.api.decode import decode_body
from omen.catalog import UNKNOWN, Capabilities, Pricing, capabilities_for, check_chat, lookup
from omen.catalog.known import CATALOG
from omen.config.loader import ConfigError, load_config
from omen.config.schema import CapabilitiesConfig, PricingConfig
from omen.errors import OmenError
from omen.routing.table import ModelTable, Route


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),  # Vertex spelling
        ("anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku"),  # Bedrock
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),  # Bedrock inference profile
        ("eu.amazon.nova-pro-v1:0", "amazon.nova-pro"),
        ("meta.llama3-1-70b-instruct-v1:0", "meta.llama3-1-70b-instruct"),
        ("models/gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
        ("grok-4-0709", "grok-4"),
        ("grok-3-mini-fast", "grok-3-mini"),
        ("GigaChat-2-Max", "gigachat-2-max"),
        ("GigaChat:latest", "gigachat"),
        ("gpt://b1gfolder/yandexgpt/latest", "yandexgpt"),
        ("yandexgpt-lite/rc", "yandexgpt-lite"),
        ("llama3.2:latest", "llama3.2"),
        ("llama3.2-vision:11b", "llama3.2-vision"),
        ("qwen2.5-coder:7b", "qwen2.5-coder"),
        ("llava:13b", "llava"),
        ("llava-llama3", "llava"),
    ],
)
def test_lookup_exact_then_prefix(model, key):
    assert lookup(model) is CATALOG[key]


@pytest.mark.parametrize(
    "model",
    [
        "claude-sonnet-4-6",  # a newer minor version does not inherit claude-sonnet-4's limits
        "grok-4.3",  # nor a dotted one grok-4's
        "gpt-4.5-preview",
        "gpt-4omni",  # a prefix must end at a component boundary
        "llama3.2x",
        "my-deployment",
        "",
    ],
)
def test_unknown_models(model):
    assert lookup(model) is UNKNOWN


def test_catalog_values_are_sane():
    for key, caps in CATALOG.items():
        assert key == key.lower(), key
        for value in (caps.context_window, caps.max_output_tokens):
            assert value is None or value > 0, key
        if caps.context_window and caps.max_output_tokens:
            assert caps.max_output_tokens <= caps.context_window, key
        if caps.pricing is not None:
            p = caps.pricing
            assert all(v is None or v >= 0 for v in (p.input, p.output, p.cached_input)), key
            if p.input is not None and p.cached_input is not None:
                assert p.cached_input <= p.input, key
    # the families the catalog promises
    priced = ("gpt-4o", "claude-sonnet-4", "gemini-2.5-pro", "grok-4", "amazon.nova-pro", "meta.llama3-3-70b-instruct")
    for name in priced:
        assert CATALOG[name].pricing is not None, name
    assert CATALOG["yandexgpt"].vision is False and CATALOG["llava"].vision is True


def test_overrides_merge_field_by_field():
    base = lookup("gpt-4o")
    merged = base.with_overrides(
        CapabilitiesConfig(vision=False, context_window=64_000), PricingConfig(input=1.0, cached_input=0.5)
    )
    assert merged == Capabilities(
        vision=False,
        tools=True,
        json_mode=True,
        context_window=64_000,
        max_output_tokens=16_384,
        pricing=Pricing(input=1.0, output=10.0, cached_input=0.5),
    )
    assert UNKNOWN.with_overrides(None, PricingConfig(output=3.0)).pricing == Pricing(output=3.0)


def load(tmp_path, text: str):
    path = tmp_path / "omen.toml"
    path.write_text(text)
    return load_config(str(path), env={}).config


CONFIG = """
[providers.openai]
api_key = "sk-x"

[models."my-gpt"]
provider = "openai"
model = "gpt-4o-2024-08-06"
aliases = ["mine"]
capabilities = { tools = false, max_output_tokens = 1000 }
pricing = { input = 2.0, output = 4.0 }

[models."deployment"]
provider = "openai"
model = "secret-deployment-7"

[models."gpt-4o"]
provider = "openai"
model = "prod-4o"

[images]
max_bytes = 1024
allow_hosts = ["127.0.0.1:8000", "[::1]:9000"]
"""


def test_capabilities_for_routes(tmp_path):
    config = load(tmp_path, CONFIG)
    table = ModelTable.from_config(config, False)

    def caps(model: str) -> Capabilities:
        return capabilities_for(config, table.aliases, table.resolve(model))

    mine = caps("my-gpt")
    assert (mine.vision, mine.tools, mine.max_output_tokens, mine.context_window) == (True, False, 1000, 128_000)
    assert mine.pricing == Pricing(2.0, 4.0, 1.25)
    assert caps("mine") == mine  # an alias shares its model's overrides
    assert caps("deployment") is UNKNOWN
    assert caps("gpt-4o") is CATALOG["gpt-4o"]  # unknown upstream name: the public id is looked up
    assert caps("openai/o3-mini") is CATALOG["o3-mini"]  # provider-prefixed route
    assert config.images.max_bytes == 1024 and config.images.fetch is True
    route = Route("x", "openai", "gpt-4o", "model")
    assert capabilities_for(config, {}, route) is CATALOG["gpt-4o"]


MODEL = '[models."m"]\nprovider = "demo"\n'


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("[images]\nmax_bytes = 0\n", "images.max_bytes", "at least 1"),
        ("[images]\ntimeout_s = 0\n", "images.timeout_s", "greater than 0"),
        ("[images]\nmax_redirects = -1\n", "images.max_redirects", "0 or more"),
        ('[images]\nallow_hosts = ["127.0.0.1"]\n', "images.allow_hosts", "expected 'host:port'"),
        ("[images]\nfetch = 1\n", "images.fetch", "Expected `bool`"),
        ("[images]\nfetchh = true\n", "images.fetchh", "unknown key"),
        (MODEL + "capabilities = { visoin = true }\n", "models.m.capabilities.visoin", "unknown key"),
        (MODEL + "capabilities = { context_window = 0 }\n", "models.m.capabilities.context_window", "at least 1"),
        (MODEL + "pricing = { input = -1.0 }\n", "models.m.pricing.input", "negative"),
    ],
)
def test_config_errors(tmp_path, text, path, fragment):
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    assert any(i.path == path and fragment in i.message for i in exc.value.issues), exc.value.issues


def chat(**body: object) -> ChatCompletionRequest:
    raw = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **body})
    return decode_body(raw, ChatCompletionRequest)


IMAGE_MESSAGES = [
    {"role": "system", "content": "s"},
    {
        "role": "user",
        "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
    },
]
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def refused(caps: Capabilities, model: str, request: ChatCompletionRequest) -> OmenError:
    with pytest.raises(OmenError) as exc:
        check_chat(caps, model, request)
    assert exc.value.status == 400 and exc.value.code == "unsupported_capability"
    return exc.value


def test_check_chat_refuses_known_gaps():
    yandex = lookup("yandexgpt/latest")
    err = refused(yandex, "yandexgpt/latest", chat(messages=IMAGE_MESSAGES))
    assert err.message == "The model 'yandexgpt/latest' does not support images (capability 'vision')."
    assert err.param == "messages[1].content[1]"

    err = refused(lookup("llava"), "llava", chat(tools=TOOLS))
    assert (err.param, err.message) == ("tools", "The model 'llava' does not support tools (capability 'tools').")
    err = refused(lookup("llava"), "llava", chat(functions=[{"name": "f"}]))
    assert err.param == "functions"

    no_json = Capabilities(json_mode=False)
    err = refused(no_json, "m", chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}))
    assert err.param == "response_format" and "capability 'json_mode'" in err.message

    err = refused(lookup("gpt-4o"), "gpt-4o", chat(max_tokens=16_385))
    assert err.param == "max_tokens"
    assert err.message == (
        "The model 'gpt-4o' generates at most 16384 tokens; max_tokens is 16385 (capability 'max_output_tokens')."
    )
    err = refused(lookup("gpt-4o"), "gpt-4o", chat(max_completion_tokens=20_000, max_tokens=10))
    assert err.param == "max_completion_tokens"


def test_check_chat_allows_what_it_does_not_know():
    full = chat(messages=IMAGE_MESSAGES, tools=TOOLS, response_format={"type": "json_object"}, max_tokens=10**9)
    check_chat(UNKNOWN, "anything", full)
    check_chat(lookup("claude-3-5-haiku"), "claude-3-5-haiku", chat(messages=IMAGE_MESSAGES))  # vision unknown
    check_chat(lookup("gigachat"), "GigaChat", chat(response_format={"type": "json_object"}))  # json unknown
    check_chat(lookup("gpt-4o"), "gpt-4o", chat(max_tokens=16_384, response_format={"type": "text"}))
    check_chat(Capabilities(json_mode=False), "m", chat(response_format={"type": "text"}))
