"""Model capabilities and prices: a built-in catalog of well-known models, per-model overrides from
omen.toml, the checks that refuse what a model cannot do, and what ``GET /v1/models`` shows."""

from omen.catalog.capabilities import UNKNOWN, Capabilities, Pricing, capabilities_for, lookup
from omen.catalog.check import check_chat

__all__ = ["UNKNOWN", "Capabilities", "Pricing", "capabilities_for", "check_chat", "lookup"]
