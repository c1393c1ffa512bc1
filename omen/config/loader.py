"""Load ``omen.toml``: find it, parse it, apply environment overrides, resolve secrets, validate.

Every problem is collected (not just the first) with its key path and, where it can be found, the
line in the file, so ``omen check-config`` can show them all at once.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from omen.config import environment, secrets
from omen.config.schema import (
    STRATEGIES,
    AuthConfig,
    ImagesConfig,
    ModelConfig,
    OmenConfig,
    ProviderConfig,
    RoutingConfig,
    ServerConfig,
)

DEMO_MODEL = "omen-demo"
DEMO_PROVIDER = "demo"

# What each provider type needs before it can serve (key -> why).
_REQUIRED: dict[str, list[tuple[str, ...]]] = {
    "openai": [("api_key",)],
    "xai": [("api_key",)],
    "azure": [("endpoint",), ("api_key", "azure_ad_token")],
    "openai-compatible": [("base_url",)],
    "anthropic": [("api_key",)],
    "gemini": [("api_key",)],
    "bedrock": [("region",)],
    "gigachat": [("credentials",)],
    "yandex": [("api_key", "iam_token"), ("folder_id",)],
}


@dataclass
class ConfigIssue:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path or '<root>'}{where}: {self.message}"


class ConfigError(Exception):
    def __init__(self, issues: list[ConfigIssue], source: str | None = None) -> None:
        self.issues = issues
        self.source = source
        head = f"invalid configuration{f' in {source}' if source else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  - {i}" for i in issues))


@dataclass
class LoadedConfig:
    config: OmenConfig
    source: str | None  # path of the file read, None for embedded defaults
    detected: list[str] = field(default_factory=list)  # provider ids added from environment variables


def find_config_file(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get("OMEN_CONFIG"):
        return Path(env["OMEN_CONFIG"])
    default = Path("omen.toml")
    return default if default.exists() else None


def load_config(
    path: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    server_overrides: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    env = os.environ if env is None else env
    file = find_config_file(path, env)
    text = ""
    tree: dict[str, Any] = {}
    if file is not None:
        try:
            text = file.read_text()
        except OSError as exc:
            raise ConfigError([ConfigIssue("", f"cannot read {file}: {exc.strerror}")], str(file)) from None
        try:
            tree = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = _decode_error_line(str(exc))
            raise ConfigError([ConfigIssue("", f"not valid TOML: {exc}", line)], str(file)) from None
    source = str(file) if file is not None else None
    locator = _LineLocator(text)

    providers_tree = tree.setdefault("providers", {})
    detected = []
    if isinstance(providers_tree, dict):
        for pid, ptree in environment.detected_providers(env).items():
            if pid not in providers_tree:
                providers_tree[pid] = ptree
                detected.append(pid)

    environment.apply_overrides(tree, env)  # after detection, so overrides can tune detected providers
    if isinstance(providers_tree, dict):
        from omen.providers.registry import KNOWN_TYPES

        for pid, ptree in providers_tree.items():
            if isinstance(ptree, dict):
                ptype = ptree.get("type") or (pid if pid in KNOWN_TYPES else None)
                if isinstance(ptype, str):
                    environment.fill_provider_defaults(ptype, ptree, env)
    if server_overrides:  # command-line flags win over file and environment
        tree.setdefault("server", {}).update({k: v for k, v in server_overrides.items() if v is not None})
    # OMEN_MASTER_KEY is the key when the file names none; master_key = "env:X" with X unset means
    # "no master key" (it is optional on loopback; binding elsewhere then fails validation).
    if env.get("OMEN_MASTER_KEY") and isinstance(tree.setdefault("auth", {}), dict):
        tree["auth"].setdefault("master_key", "env:OMEN_MASTER_KEY")
    auth_tree = tree.get("auth")
    if isinstance(auth_tree, dict) and isinstance(auth_tree.get("master_key"), str):
        ref = auth_tree["master_key"]
        if ref.startswith(secrets.ENV_PREFIX) and ref[len(secrets.ENV_PREFIX) :] not in env:
            auth_tree["master_key"] = None

    base_dir = file.parent if file is not None else None
    tree, secret_errors = secrets.resolve_tree(tree, env, base_dir)
    issues = [ConfigIssue(p, m, locator.line(p)) for p, m in secret_errors]
    config = _validate(tree, issues, locator)
    if issues:
        raise ConfigError(issues, source)
    return LoadedConfig(config, source, detected)


def _validate(tree: dict[str, Any], issues: list[ConfigIssue], locator: _LineLocator) -> OmenConfig:
    from omen.providers.registry import KNOWN_TYPES

    def convert(value: Any, type_: type, path: str) -> Any:
        try:
            return msgspec.convert(value, type_)
        except msgspec.ValidationError as exc:
            issues.append(_issue_from_validation(str(exc), path, locator))
            return None

    known_sections = {"server", "auth", "providers", "models", "aliases", "images", "routing", "demo"}
    for key in tree:
        if key not in known_sections:
            issues.append(
                ConfigIssue(key, f"unknown section; expected one of {sorted(known_sections)}", locator.line(key))
            )

    server = convert(tree.get("server", {}), ServerConfig, "server") or ServerConfig()
    auth = convert(tree.get("auth", {}), AuthConfig, "auth") or AuthConfig()
    images = convert(tree.get("images", {}), ImagesConfig, "images") or ImagesConfig()
    _check_images(images, issues, locator)

    providers: dict[str, ProviderConfig] = {}
    for pid, ptree in _table(tree, "providers", issues, locator).items():
        cfg = convert(ptree, ProviderConfig, f"providers.{pid}")
        if cfg is None:
            continue
        ptype = cfg.type or (pid if pid in KNOWN_TYPES else None)
        if ptype is None:
            issues.append(
                ConfigIssue(
                    f"providers.{pid}",
                    f"missing 'type'; known types: {', '.join(KNOWN_TYPES)}",
                    locator.line(f"providers.{pid}"),
                )
            )
            continue
        if ptype not in KNOWN_TYPES:
            issues.append(
                ConfigIssue(
                    f"providers.{pid}.type",
                    f"unknown provider type '{ptype}'; known types: {', '.join(KNOWN_TYPES)}",
                    locator.line(f"providers.{pid}.type"),
                )
            )
            continue
        for alternatives in _REQUIRED.get(ptype, []):
            if not any(getattr(cfg, key) for key in alternatives):
                keys = " or ".join(f"'{k}'" for k in alternatives)
                defaults = environment.PROVIDER_ENV_DEFAULTS.get(ptype, {})
                names = [n for k in alternatives for n in defaults.get(k, ())]
                hint = f" (or set {' / '.join(names)})" if names else ""
                issues.append(
                    ConfigIssue(
                        f"providers.{pid}",
                        f"provider type '{ptype}' needs {keys}{hint}",
                        locator.line(f"providers.{pid}"),
                    )
                )
        providers[pid] = msgspec.structs.replace(cfg, type=ptype)

    models: dict[str, ModelConfig] = {}
    for mid, mtree in _table(tree, "models", issues, locator).items():
        mcfg = convert(mtree, ModelConfig, f"models.{mid}")
        if mcfg is None:
            continue
        if (mcfg.provider is None) == (not mcfg.deployments):
            issues.append(
                ConfigIssue(
                    f"models.{mid}",
                    "give either 'provider' (one deployment) or 'deployments' (a model group), not both",
                    locator.line(f"models.{mid}"),
                )
            )
        if mcfg.strategy not in STRATEGIES:
            issues.append(
                ConfigIssue(
                    f"models.{mid}.strategy",
                    f"unknown strategy '{mcfg.strategy}'; expected one of {', '.join(STRATEGIES)}",
                    locator.line(f"models.{mid}.strategy"),
                )
            )
        targets = [(f"models.{mid}.provider", mcfg.provider)] if mcfg.provider is not None else []
        targets += [(f"models.{mid}.deployments[{i}].provider", d.provider) for i, d in enumerate(mcfg.deployments)]
        for path, provider in targets:
            known = provider in providers or provider == DEMO_PROVIDER
            # a provider that failed its own validation already has an issue; don't report it twice
            if not known and f"providers.{provider}" not in {i.path for i in issues}:
                issues.append(ConfigIssue(path, f"no provider '{provider}' is configured", locator.line(path)))
        if mcfg.retries is not None and mcfg.retries < 0:
            path = f"models.{mid}.retries"
            issues.append(ConfigIssue(path, "must be 0 or more", locator.line(path)))
        _check_capabilities(mid, mcfg, issues, locator)
        models[mid] = mcfg

    aliases = convert(tree.get("aliases", {}), dict[str, str], "aliases") or {}
    names = set(models)
    for mid, mcfg in models.items():
        for alias in mcfg.aliases:
            if alias in names:
                issues.append(
                    ConfigIssue(
                        f"models.{mid}.aliases",
                        f"'{alias}' is already a model or alias",
                        locator.line(f"models.{mid}.aliases"),
                    )
                )
            names.add(alias)
    for alias, target in aliases.items():
        if alias in names:
            issues.append(
                ConfigIssue(
                    f"aliases.{alias}", f"'{alias}' is already a model or alias", locator.line(f"aliases.{alias}")
                )
            )
        if target not in models:
            issues.append(
                ConfigIssue(
                    f"aliases.{alias}",
                    f"alias target '{target}' is not a configured model",
                    locator.line(f"aliases.{alias}"),
                )
            )
        names.add(alias)

    routing = convert(tree.get("routing", {}), RoutingConfig, "routing") or RoutingConfig()
    if routing.retries < 0:
        issues.append(ConfigIssue("routing.retries", "must be 0 or more", locator.line("routing.retries")))
    known_models = names | {DEMO_MODEL}
    for mid, mcfg in models.items():
        for key in ("fallbacks", "context_window_fallbacks", "content_filter_fallbacks"):
            for i, target in enumerate(getattr(mcfg, key)):
                if target not in known_models:
                    path = f"models.{mid}.{key}[{i}]"
                    issues.append(ConfigIssue(path, f"'{target}' is not a configured model", locator.line(path)))
    for intent in ("code", "reasoning", "vision", "tools", "long", "chat", "default"):
        target = getattr(routing.auto, intent)
        if target is not None and target not in known_models:
            path = f"routing.auto.{intent}"
            issues.append(ConfigIssue(path, f"'{target}' is not a configured model", locator.line(path)))
    from omen.routing.policy import validate_rules

    for path, message in validate_rules(routing.policies, known_models):
        issues.append(ConfigIssue(path, message, locator.line(path)))

    demo = tree.get("demo")
    if demo is not None and not isinstance(demo, bool):
        issues.append(ConfigIssue("demo", "expected true or false", locator.line("demo")))
        demo = None

    raw_bind = tree.get("server", {}).get("bind") if isinstance(tree.get("server"), dict) else None
    bind = raw_bind if isinstance(raw_bind, str) else server.bind  # checked even if [server] had errors
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        issues.append(ConfigIssue("server.bind", f"expected 'host:port', got '{bind}'", locator.line("server.bind")))
    elif not auth.master_key and not is_loopback(host):
        issues.append(
            ConfigIssue(
                "auth.master_key",
                f"a master key is required to bind a non-loopback address ({host}); "
                'set auth.master_key (e.g. "env:OMEN_MASTER_KEY")',
                locator.line("auth.master_key") or locator.line("server.bind"),
            )
        )
    if bool(server.certfile) != bool(server.keyfile):
        issues.append(ConfigIssue("server", "certfile and keyfile must be given together", locator.line("server")))
    if server.workers < 1:
        issues.append(ConfigIssue("server.workers", "must be at least 1", locator.line("server.workers")))

    return OmenConfig(
        server=server,
        auth=auth,
        providers=providers,
        models=models,
        aliases=aliases,
        images=images,
        routing=routing,
        demo=demo,
    )


def _check_images(images: ImagesConfig, issues: list[ConfigIssue], locator: _LineLocator) -> None:
    def issue(key: str, message: str) -> None:
        issues.append(ConfigIssue(f"images.{key}", message, locator.line(f"images.{key}")))

    if images.max_bytes < 1:
        issue("max_bytes", "must be at least 1")
    if images.timeout_s <= 0:
        issue("timeout_s", "must be greater than 0")
    if images.max_redirects < 0:
        issue("max_redirects", "must be 0 or more")
    for entry in images.allow_hosts:
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            issue("allow_hosts", f"expected 'host:port' (IPv6 as '[::1]:8080'), got '{entry}'")


def _check_capabilities(mid: str, mcfg: ModelConfig, issues: list[ConfigIssue], locator: _LineLocator) -> None:
    caps, pricing = mcfg.capabilities, mcfg.pricing
    for key in ("context_window", "max_output_tokens"):
        value = getattr(caps, key) if caps is not None else None
        if value is not None and value < 1:
            path = f"models.{mid}.capabilities.{key}"
            issues.append(ConfigIssue(path, "must be at least 1", locator.line(f"models.{mid}.capabilities")))
    for key in ("input", "output", "cached_input"):
        value = getattr(pricing, key) if pricing is not None else None
        if value is not None and value < 0:
            path = f"models.{mid}.pricing.{key}"
            issues.append(ConfigIssue(path, "must not be negative", locator.line(f"models.{mid}.pricing")))


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _table(tree: dict[str, Any], key: str, issues: list[ConfigIssue], locator: _LineLocator) -> dict[str, Any]:
    value = tree.get(key, {})
    if not isinstance(value, dict):
        issues.append(ConfigIssue(key, "expected a table", locator.line(key)))
        return {}
    return value


def _issue_from_validation(text: str, base: str, locator: _LineLocator) -> ConfigIssue:
    match = re.search(r" - at `\$\.?(.*)`$", text)
    sub = match.group(1) if match else ""
    message = text[: match.start()] if match else text
    unknown = re.match(r"Object contains unknown field `(.+)`", message)
    missing = re.match(r"Object missing required field `(.+)`", message)
    path = ".".join(p for p in (base, sub) if p)
    if unknown:
        path = f"{path}.{unknown.group(1)}"
        message = "unknown key"
    elif missing:
        path = f"{path}.{missing.group(1)}"
        message = "required key is missing"
    return ConfigIssue(path, message, locator.line(path))


def _decode_error_line(text: str) -> int | None:
    match = re.search(r"line (\d+)", text)
    return int(match.group(1)) if match else None


_PART = re.compile(r"^(.*?)((?:\[\d+\])*)$")


def _path_parts(path: str) -> list[tuple[str, int | None]]:
    """``routing.policies[1].cap.max_tokens`` -> [("routing", None), ("policies", 1), ("cap", None), ...]."""
    out: list[tuple[str, int | None]] = []
    for part in re.split(r"\.(?![^\[]*\])", path):
        if not part:
            continue
        match = _PART.match(part)
        name, indexes = (match.group(1), match.group(2)) if match else (part, "")
        first = re.match(r"\[(\d+)\]", indexes)
        out.append((name, int(first.group(1)) if first else None))
    return out


class _LineLocator:
    """Finds the line of a dotted key path in TOML text (best effort: tables, arrays of tables and plain
    keys).

    The path is followed from the left: ``[a]`` / ``[a.b]`` table headers, and for an indexed part
    (``routing.policies[2]``) the third ``[[routing.policies]]`` header, inside which deeper headers
    and keys are looked for. The deepest header found wins; the next part of the path is then looked
    for as a ``key =`` line below it (a key of an inline table or array reports its own line)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line(self, path: str) -> int | None:
        if not self.lines or not path:
            return None
        parts = _path_parts(path)
        names = [name for name, _ in parts]
        lo, hi = 0, len(self.lines)  # the region the rest of the path lies in
        best: int | None = None
        depth = 0
        for k in range(1, len(parts) + 1):
            arrays = self._find_headers(names[:k], lo, hi, array=True)
            if arrays:
                index = parts[k - 1][1] or 0
                if index >= len(arrays):
                    break
                lo = arrays[index]
                hi = arrays[index + 1] if index + 1 < len(arrays) else hi
                best, depth = lo, k
                continue
            tables = self._find_headers(names[:k], lo, hi, array=False)
            if tables:
                best, depth = tables[0], k
        if best is None:
            for i, raw in enumerate(self.lines):
                if re.match(rf'^\s*"?{re.escape(names[0])}"?\s*=', raw):
                    return i + 1
            return None
        if depth == len(parts):
            return best + 1
        key = names[depth]
        for i in range(best + 1, len(self.lines)):
            stripped = self.lines[i].strip()
            if stripped.startswith("["):
                break
            if re.match(rf'^"?{re.escape(key)}"?\s*=', stripped):
                return i + 1
        return best + 1

    def _find_headers(self, parts: list[str], lo: int, hi: int, *, array: bool) -> list[int]:
        """Lines (0-based, in ``lo..hi``) of the ``[a.b]`` (``array``: ``[[a.b]]``) headers of ``parts``."""
        pattern = r"\s*\.\s*".join(rf'"?{re.escape(p)}"?' for p in parts)
        rx = re.compile(rf"^\s*\[\[\s*{pattern}\s*\]\]" if array else rf"^\s*\[\s*{pattern}\s*\](?!\])")
        return [i for i in range(lo, hi) if rx.match(self.lines[i])]
