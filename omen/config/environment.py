"""What the environment adds to the config file: ``OMEN__SECTION__KEY`` overrides and providers
detected from their standard variables (OPENAI_API_KEY, AZURE_OPENAI_API_KEY + AZURE_OPENAI_ENDPOINT,
XAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY/GOOGLE_API_KEY, GIGACHAT_CREDENTIALS, YC_API_KEY +
YC_FOLDER_ID, OLLAMA_HOST), plus credentials a configured section leaves out."""

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


# Where each provider type's settings come from when its section leaves them out (first set wins).
PROVIDER_ENV_DEFAULTS: dict[str, dict[str, tuple[str, ...]]] = {
    "openai": {"api_key": ("OPENAI_API_KEY",)},
    "xai": {"api_key": ("XAI_API_KEY",)},
    "azure": {"api_key": ("AZURE_OPENAI_API_KEY",)},
    "anthropic": {"api_key": ("ANTHROPIC_API_KEY",)},
    "gemini": {"api_key": ("GEMINI_API_KEY", "GOOGLE_API_KEY")},
    "bedrock": {
        "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
        "access_key_id": ("AWS_ACCESS_KEY_ID",),
        "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
        "session_token": ("AWS_SESSION_TOKEN",),
        "profile": ("AWS_PROFILE",),
    },
    "gigachat": {"credentials": ("GIGACHAT_CREDENTIALS",), "scope": ("GIGACHAT_SCOPE",)},
    "yandex": {
        "api_key": ("YC_API_KEY", "YANDEX_API_KEY"),
        "iam_token": ("YC_IAM_TOKEN", "YANDEX_IAM_TOKEN"),
        "folder_id": ("YC_FOLDER_ID", "YANDEX_FOLDER_ID"),
    },
}


def fill_provider_defaults(ptype: str, section: dict[str, Any], env: Mapping[str, str]) -> None:
    """Fill keys a ``[providers.x]`` section leaves out from the type's usual environment variables,
    as ``env:NAME`` references (so the value is still treated and masked as a secret)."""
    # An explicit profile (or explicit keys) names the AWS identity: do not mix in AWS_* keys from the
    # environment, which would otherwise take precedence over the profile.
    aws_identity = ptype == "bedrock" and any(section.get(k) for k in ("profile", "access_key_id", "api_key"))
    for key, names in PROVIDER_ENV_DEFAULTS.get(ptype, {}).items():
        if aws_identity and key in ("access_key_id", "secret_access_key", "session_token", "profile"):
            continue
        if section.get(key) is None:
            for name in names:
                if env.get(name):
                    section[key] = f"env:{name}"
                    break


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
    if env.get("ANTHROPIC_API_KEY"):
        found["anthropic"] = {"type": "anthropic", "api_key": "env:ANTHROPIC_API_KEY"}
        if env.get("ANTHROPIC_BASE_URL"):
            found["anthropic"]["base_url"] = env["ANTHROPIC_BASE_URL"]
    if env.get("GEMINI_API_KEY") or env.get("GOOGLE_API_KEY"):
        found["gemini"] = {"type": "gemini"}  # api_key filled by fill_provider_defaults
    if env.get("GIGACHAT_CREDENTIALS"):
        found["gigachat"] = {"type": "gigachat"}
    if (env.get("YC_API_KEY") or env.get("YANDEX_API_KEY") or env.get("YC_IAM_TOKEN")) and (
        env.get("YC_FOLDER_ID") or env.get("YANDEX_FOLDER_ID")
    ):
        found["yandex"] = {"type": "yandex"}
    # Bedrock is not detected from AWS_* alone: those variables are set for many other tools.
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
