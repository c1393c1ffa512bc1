"""Provider type name -> adapter class, and construction from a ``[providers.<id>]`` section."""

from __future__ import annotations

from omen.config.schema import ProviderConfig
from omen.providers.azure import AzureProvider
from omen.providers.base import Provider
from omen.providers.ollama import OllamaProvider
from omen.providers.openai_compat import OpenAICompatibleProvider, OpenAIProvider
from omen.providers.xai import XAIProvider

PROVIDER_TYPES: dict[str, type] = {
    "openai": OpenAIProvider,
    "openai-compatible": OpenAICompatibleProvider,
    "azure": AzureProvider,
    "xai": XAIProvider,
    "ollama": OllamaProvider,
}
KNOWN_TYPES: tuple[str, ...] = tuple(PROVIDER_TYPES)


def provider_type(provider_id: str, cfg: ProviderConfig) -> str:
    """The section's ``type``, or its id when that names a type (``[providers.openai]``)."""
    kind = cfg.type or provider_id
    if kind not in PROVIDER_TYPES:
        known = ", ".join(KNOWN_TYPES)
        if cfg.type is None:
            raise ValueError(
                f"provider '{provider_id}': set type = one of {known} "
                f"('{provider_id}' is not a provider type, so the type cannot be inferred from it)"
            )
        raise ValueError(f"provider '{provider_id}': unknown type '{cfg.type}'; known types: {known}")
    return kind


def create_provider(provider_id: str, cfg: ProviderConfig) -> Provider:
    return PROVIDER_TYPES[provider_type(provider_id, cfg)](provider_id, cfg)
