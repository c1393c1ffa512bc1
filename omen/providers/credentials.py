"""A provider's credentials, checked and registered when it is built (``registry.create_provider``).

* **Registered** with :func:`omen.providers.upstream_errors.register_secrets`, so no error relayed to a
  client or written to the access log can quote them, whatever an upstream echoes back.
* **Checked** to be sendable in an HTTP header. A value with a line break (an ``env:`` variable read from
  a file with its trailing newline is the usual way to get one) used to fail every request with h11's
  ``Illegal header value b'Bearer sk-...'``, relayed to the client as the 502's message: the key itself.
  The gateway now refuses to start instead, naming the setting and never the value.
"""

from __future__ import annotations

from collections.abc import Iterable

from omen.config.schema import ProviderConfig

# ProviderConfig fields that hold a secret.
SECRET_FIELDS = ("api_key", "azure_ad_token", "access_key_id", "secret_access_key", "session_token", "iam_token")
# Fields the adapters send verbatim as (part of) a header value. GigaChat's ``credentials`` is not one:
# its token flow strips and re-encodes it.
HEADER_FIELDS = (
    "api_key",
    "azure_ad_token",
    "access_key_id",
    "session_token",
    "iam_token",
    "organization",
    "project",
    "folder_id",
    "anthropic_version",
)
# Configured extra headers whose value is a credential (Authorization, X-Api-Key, Cookie...).
_SECRET_HEADER_WORDS = ("auth", "key", "token", "secret", "cookie", "signature", "password", "credential")
_SCHEMES = ("bearer ", "basic ", "api-key ", "token ")


def header_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as an HTTP header value by OMEN's transports, or ``None``."""
    if value != value.strip():
        return "leading or trailing whitespace (a trailing newline from a file or an environment variable?)"
    if not value.isascii():
        return "a non-ASCII character"
    if not value.replace("\t", " ").isprintable():
        return "a line break or another control character"
    return None


def require_header_safe(provider_id: str, what: str, value: str | None) -> None:
    """Raise ValueError naming ``what`` (never the value) if ``value`` cannot be sent in a header."""
    if not value:
        return
    problem = header_problem(value)
    if problem is not None:
        raise ValueError(f"provider '{provider_id}': {what} cannot be sent in an HTTP header: it has {problem}")


def check_config(provider_id: str, config: ProviderConfig) -> None:
    for name in HEADER_FIELDS:
        require_header_safe(provider_id, name, getattr(config, name, None))
    for name, value in config.headers.items():
        require_header_safe(provider_id, f"headers.{name}", value)


def config_secrets(config: ProviderConfig) -> list[str]:
    """Every credential value in a provider section (and the bare credential of a secret header)."""
    values = [getattr(config, name, None) or "" for name in SECRET_FIELDS]
    for name, value in config.headers.items():
        if any(word in name.lower() for word in _SECRET_HEADER_WORDS):
            values.append(value)
            for scheme in _SCHEMES:
                if value[: len(scheme)].lower() == scheme:
                    values.append(value[len(scheme) :])
    return [v for v in values if v]


def provider_secrets(provider: object, config: ProviderConfig) -> Iterable[str]:
    """The section's secrets plus those the adapter resolved itself (``credential_values``: AWS keys
    from the environment or a profile, GigaChat's encoded authorization key)."""
    return [*config_secrets(config), *getattr(provider, "credential_values", ())]


__all__ = ["check_config", "config_secrets", "header_problem", "provider_secrets", "require_header_safe"]
