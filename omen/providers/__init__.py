"""Provider adapters: sans-IO translators between OpenAI-format calls and each upstream's wire format.

``base`` holds the contract; ``registry.create_provider`` builds an adapter from its config section.
"""

from omen.providers.base import Provider, StreamTranslator, UpstreamRequest
from omen.providers.registry import KNOWN_TYPES, PROVIDER_TYPES, create_provider

__all__ = [
    "KNOWN_TYPES",
    "PROVIDER_TYPES",
    "Provider",
    "StreamTranslator",
    "UpstreamRequest",
    "create_provider",
]
