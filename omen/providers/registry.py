"""Provider type name -> adapter class, and construction from a ``[providers.<id>]`` section."""

from __future__ import annotations

import importlib

from omen.config.schema import ProviderConfig
from omen.providers.azure import AzureProvider
from omen.providers.base import Provider
from omen.providers.credentials import check_config, provider_secrets
from omen.providers.ollama import OllamaProvider
from omen.providers.openai_compat import OpenAICompatibleProvider, OpenAIProvider
from omen.providers.upstream_errors import register_secrets
from omen.providers.xai import XAIProvider

PROVIDER_TYPES: dict[str, type] = {
    "openai": OpenAIProvider,
    "openai-compatible": OpenAICompatibleProvider,
    "azure": AzureProvider,
    "xai": XAIProvider,
    "ollama": OllamaProvider,
}
# Native translators imported on first use, so a deployment that never configures one does not pay for
# its imports (botocore for Bedrock). "<module>:<class>" under omen.providers.
LAZY_TYPES: dict[str, str] = {
    "anthropic": "anthropic:AnthropicProvider",
    "gemini": "gemini:GeminiProvider",
    "bedrock": "bedrock:BedrockProvider",
    "gigachat": "gigachat:GigaChatProvider",
    "yandex": "yandex:YandexProvider",
}
KNOWN_TYPES: tuple[str, ...] = (*PROVIDER_TYPES, *LAZY_TYPES)


def provider_class(kind: str) -> type:
    cls = PROVIDER_TYPES.get(kind)
    if cls is None:
        module, _, name = LAZY_TYPES[kind].partition(":")
        cls = PROVIDER_TYPES[kind] = getattr(importlib.import_module(f"omen.providers.{module}"), name)
    return cls


def provider_type(provider_id: str, cfg: ProviderConfig) -> str:
    """The section's ``type``, or its id when that names a type (``[providers.openai]``)."""
    kind = cfg.type or provider_id
    if kind not in KNOWN_TYPES:
        known = ", ".join(KNOWN_TYPES)
        if cfg.type is None:
            raise ValueError(
                f"provider '{provider_id}': set type = one of {known} "
                f"('{provider_id}' is not a provider type, so the type cannot be inferred from it)"
            )
        raise ValueError(f"provider '{provider_id}': unknown type '{cfg.type}'; known types: {known}")
    return kind


def create_provider(provider_id: str, cfg: ProviderConfig) -> Provider:
    """Build the adapter; its credentials must fit in a header and are registered so that no error
    relayed to a client can quote them (omen.providers.credentials)."""
    kind = provider_type(provider_id, cfg)
    check_config(provider_id, cfg)
    provider = provider_class(kind)(provider_id, cfg)
    register_secrets(provider_id, provider_secrets(provider, cfg))
    return provider
