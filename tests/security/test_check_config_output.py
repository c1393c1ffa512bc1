"""``omen check-config`` shows what a config resolves to without the credentials in it."""

from __future__ import annotations

from pathlib import Path

from omen.config.loader import load_config
from omen.config.report import describe

CONFIG = """
[providers.proxy]
type = "openai-compatible"
base_url = "https://svc:hunter2-db-pass@llm-proxy.internal/v1?key=AIzaSyEXAMPLEKEY123&api-version=2024-10-21"
api_key = "env:SHORT_KEY"

[providers.ollama]
endpoints = ["http://admin:s3cretpw@gpu1:11434", "http://gpu2:11434"]

[providers.openai]
api_key = "env:LONG_KEY"
"""
ENV = {"SHORT_KEY": "q7Zr9pX2k", "LONG_KEY": "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"}


def test_urls_and_short_keys_are_masked(tmp_path: Path) -> None:
    path = tmp_path / "omen.toml"
    path.write_text(CONFIG)
    shown = describe(load_config(str(path), env=ENV))
    for secret in ("hunter2-db-pass", "svc:", "AIzaSyEXAMPLEKEY123", "s3cretpw", "admin:", "q7Z", "k9", "pX2"):
        assert secret not in shown, secret
    assert "https://***@llm-proxy.internal/v1?key=***&api-version=2024-10-21" in shown
    assert "http://***@gpu1:11434, http://gpu2:11434" in shown
    assert "sk-…89" in shown  # a long key keeps its ends; they are a small part of it
    assert "abcdefghij" not in shown
