"""The human-readable summary ``omen check-config`` prints (secrets masked)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from omen.config.loader import DEMO_MODEL, LoadedConfig
from omen.config.secrets import mask

# Query parameters whose value is a credential (?key=..., ?sig=..., ?access_token=...).
_SECRET_PARAMS = ("key", "token", "secret", "sig", "pass", "auth", "credential", "code")
_SHOWN_SECRET_MIN = 20  # below this, first 3 + last 2 characters would be too much of the secret


def _secret(secret: str | None) -> str:
    """Whether a secret is set; its ends only when they are a small part of it."""
    if secret and len(secret) < _SHOWN_SECRET_MIN:
        return "****"
    return mask(secret)


def _param(param: str) -> str:
    name, eq, _ = param.partition("=")
    return f"{name}=***" if eq and any(word in name.lower() for word in _SECRET_PARAMS) else param


def _url(url: str) -> str:
    """A configured URL without the credentials it may carry (user:password@, ?key=...)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(not a valid URL)"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(_param(p) for p in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe(loaded: LoadedConfig) -> str:
    config = loaded.config
    out = [f"config: {loaded.source or '(embedded defaults)'} - OK"]
    out.append(
        f"server: bind {config.server.bind}, workers {config.server.workers}, "
        f"tls {'on' if config.server.certfile else 'off'}, "
        f"master key {'set' if config.auth.master_key else 'not set'}"
    )
    if config.providers:
        rows = [["provider", "type", "endpoint", "api key", "source"]]
        for pid, p in config.providers.items():
            urls = [p.base_url] if p.base_url else [p.endpoint] if p.endpoint else p.endpoints or []
            endpoint = ", ".join(_url(u) for u in urls) or "(default)"
            secret = p.api_key or p.azure_ad_token
            rows.append(
                [pid, p.type or pid, endpoint, _secret(secret), "environment" if pid in loaded.detected else "file"]
            )
        out += ["", _table(rows)]
    else:
        out += ["", "providers: none configured"]
    rows = [["model", "provider", "upstream model", "aliases"]]
    for mid, m in config.models.items():
        aliases = [*m.aliases, *(a for a, t in config.aliases.items() if t == mid)]
        rows.append([mid, m.provider, m.model or mid, ", ".join(aliases)])
    demo = config.demo if config.demo is not None else not config.providers
    if demo:
        rows.append([DEMO_MODEL, "demo", "(built-in demo model)", ""])
    if len(rows) > 1:
        out += ["", _table(rows)]
    if config.providers:
        out += ["", "Any configured provider also serves '<provider>/<upstream model>' directly."]
    return "\n".join(out)
