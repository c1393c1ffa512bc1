"""Provider registry: type inference from the id, clear errors, the common provider surface."""

from __future__ import annotations

import pytest

from omen.config.schema import ProviderConfig
from omen.providers import KNOWN_TYPES, PROVIDER_TYPES, create_provider
from omen.providers.azure import AzureProvider
from omen.providers.ollama import OllamaProvider
from omen.providers.openai_compat import OpenAICompatibleProvider, OpenAIProvider
from omen.providers.registry import provider_class
from omen.providers.xai import XAIProvider

CONFIGS = {
    "openai": ProviderConfig(api_key="k"),
    "openai-compatible": ProviderConfig(base_url="http://localhost:1234/v1"),
    "azure": ProviderConfig(endpoint="https://r.openai.azure.com", api_key="k"),
    "xai": ProviderConfig(api_key="k"),
    "ollama": ProviderConfig(),
    "bedrock": ProviderConfig(region="us-east-1", access_key_id="AKID", secret_access_key="secret"),
    "gigachat": ProviderConfig(credentials="k"),
    "anthropic": ProviderConfig(api_key="k"),
    "yandex": ProviderConfig(api_key="k", folder_id="b1g"),
    "gemini": ProviderConfig(api_key="k"),
}


def test_known_types():
    assert KNOWN_TYPES == (
        "openai",
        "openai-compatible",
        "azure",
        "xai",
        "ollama",
        "anthropic",
        "gemini",
        "bedrock",
        "gigachat",
        "yandex",
    )
    assert PROVIDER_TYPES["openai"] is OpenAIProvider
    assert PROVIDER_TYPES["openai-compatible"] is OpenAICompatibleProvider
    assert PROVIDER_TYPES["azure"] is AzureProvider
    assert PROVIDER_TYPES["xai"] is XAIProvider
    assert PROVIDER_TYPES["ollama"] is OllamaProvider


def test_every_known_type_has_a_surface_test():
    assert set(CONFIGS) == set(KNOWN_TYPES)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_type_inferred_from_id_and_common_surface(kind):
    cfg = CONFIGS[kind]
    provider = create_provider(kind, cfg)
    assert type(provider) is provider_class(kind)
    assert (provider.id, provider.type, provider.config) == (kind, kind, cfg)
    endpoints = provider.endpoints()
    assert endpoints and all(not url.endswith("/") for url in endpoints)


def test_explicit_type_with_custom_id():
    provider = create_provider(
        "groq", ProviderConfig(type="openai-compatible", base_url="https://api.groq.com/openai/v1")
    )
    assert (provider.id, provider.type) == ("groq", "openai-compatible")
    assert provider.endpoints() == ["https://api.groq.com/openai/v1"]


def test_unknown_type_lists_known_types():
    with pytest.raises(ValueError, match=r"unknown type 'antropic'.*openai, openai-compatible, azure, xai, ollama"):
        create_provider("claude", ProviderConfig(type="antropic"))
    with pytest.raises(ValueError, match=r"set type = one of openai.*'local' is not a provider type"):
        create_provider("local", ProviderConfig())


def test_sse_facade_exports():
    from omen.streaming import sse

    assert sse.BACKEND in ("pure", "compiled")
    assert sse.SSEDecoder().feed(b"data: x\n\n")[0].data == b"x"
    assert sse.LineSplitter().feed(b"a\nb") == [b"a"]
    assert sse.encode_data(b"{}") == b"data: {}\n\n"
    assert sse.encode_event(b"x", event="error").startswith(b"event: error\n")


def test_native_model_families_route_to_their_provider():
    from omen.config.schema import OmenConfig
    from omen.routing.table import ModelTable

    config = OmenConfig(
        providers={
            "claude": ProviderConfig(type="anthropic", api_key="k"),
            "google": ProviderConfig(type="gemini", api_key="k"),
            "sber": ProviderConfig(type="gigachat", credentials="c"),
            "ya": ProviderConfig(type="yandex", api_key="k", folder_id="f"),
        }
    )
    table = ModelTable.from_config(config, demo_enabled=False)
    assert table.resolve("claude-sonnet-4-20250514").provider_id == "claude"
    assert table.resolve("gemini-2.5-flash").provider_id == "google"
    assert table.resolve("GigaChat-Pro").provider_id == "sber"
    assert table.resolve("yandexgpt/rc").provider_id == "ya"
