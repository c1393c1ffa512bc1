"""What the environment adds to the config file: ``OMEN__SECTION__KEY`` overrides and providers
detected from their standard variables (OPENAI_API_KEY, AZURE_OPENAI_API_KEY + AZURE_OPENAI_ENDPOINT,
XAI_API_KEY, OLLAMA_HOST)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

OVERRIDE_PREFIX = "OMEN__"


def apply_overrides(tree: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``OMEN__SERVER__BIND=0.0.0.0:8080`` sets ``server.bind``. Values are read as TOML values when
    they parse as one (numbers, booleans, arrays), else as plain strings."""
    for name, raw in env.items():
        if not name.startswith(OVERRIDE_PREFIX):
            continue
        keys = [k.lower() for k in name[len(OVERRIDE_PREFIX) :].split("__") if k]
        if not keys:
            continue
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                break
        else:
            node[keys[-1]] = _toml_value(raw)
    return tree


def _toml_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def detected_providers(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Providers implied by standard environment variables, keyed by provider id."""
    found: dict[str, dict[str, Any]] = {}
    if env.get("OPENAI_API_KEY"):
        openai: dict[str, Any] = {"type": "openai", "api_key": "env:OPENAI_API_KEY", "discover_models": True}
        if env.get("OPENAI_BASE_URL"):
            openai["base_url"] = env["OPENAI_BASE_URL"]
        found["openai"] = openai
    if env.get("AZURE_OPENAI_API_KEY") and env.get("AZURE_OPENAI_ENDPOINT"):
        found["azure"] = {
            "type": "azure",
            "api_key": "env:AZURE_OPENAI_API_KEY",
            "endpoint": env["AZURE_OPENAI_ENDPOINT"],
            "api_version": env.get("AZURE_OPENAI_API_VERSION") or env.get("OPENAI_API_VERSION") or "2024-10-21",
        }
    if env.get("XAI_API_KEY"):
        found["xai"] = {"type": "xai", "api_key": "env:XAI_API_KEY", "discover_models": True}
    if env.get("OLLAMA_HOST"):
        found["ollama"] = {
            "type": "ollama",
            "endpoints": [ollama_url(env["OLLAMA_HOST"])],
            "discover_models": True,
        }
    return found


def ollama_url(host: str) -> str:
    """OLLAMA_HOST is often a bare ``host:port`` (or the server-side bind ``0.0.0.0:11434``)."""
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = f"http://{host}"
    scheme, rest = host.split("://", 1)
    if rest.startswith("0.0.0.0"):
        rest = "127.0.0.1" + rest[len("0.0.0.0") :]
    if ":" not in rest.split("/", 1)[0].rsplit("]", 1)[-1]:
        rest = rest.split("/", 1)[0] + ":11434" + ("/" + rest.split("/", 1)[1] if "/" in rest else "")
    return f"{scheme}://{rest}"
