"""Secret references in config values: ``env:VAR`` and ``file:PATH``.

Secrets stay out of the TOML file; the resolved values exist only in memory and are masked whenever
the config is shown (see :func:`mask`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "env:"
FILE_PREFIX = "file:"


class SecretError(ValueError):
    pass


def resolve(value: str, env: Mapping[str, str], base_dir: Path | None = None) -> str:
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if name not in env:
            raise SecretError(f"environment variable {name} is not set")
        return env[name]
    if value.startswith(FILE_PREFIX):
        path = Path(os.path.expanduser(value[len(FILE_PREFIX) :]))
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from None
    return value


def resolve_tree(tree: Any, env: Mapping[str, str], base_dir: Path | None, path: str = "") -> tuple[Any, list]:
    """Resolve every reference in a parsed TOML tree. Returns (tree, [(key path, message)])."""
    errors: list[tuple[str, str]] = []
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            sub = f"{path}.{key}" if path else str(key)
            out[key], errs = resolve_tree(value, env, base_dir, sub)
            errors.extend(errs)
        return out, errors
    if isinstance(tree, list):
        out_list = []
        for i, value in enumerate(tree):
            item, errs = resolve_tree(value, env, base_dir, f"{path}[{i}]")
            out_list.append(item)
            errors.extend(errs)
        return out_list, errors
    if isinstance(tree, str) and (tree.startswith(ENV_PREFIX) or tree.startswith(FILE_PREFIX)):
        try:
            return resolve(tree, env, base_dir), errors
        except SecretError as exc:
            return None, [(path, str(exc))]
    return tree, errors


def mask(secret: str | None) -> str:
    """Show that a secret is set without revealing it."""
    if not secret:
        return "-"
    if len(secret) <= 8:
        return "****"
    return f"{secret[:3]}…{secret[-2:]}"
