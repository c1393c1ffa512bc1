"""Config loading: the documented omen.toml shape, secrets, environment, and every error with its path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from omen.config.loader import ConfigError, load_config

DOCUMENTED = """
[server]
bind = "127.0.0.1:8080"            # HTTP/1.1 + h2c; TLS/QUIC options beside it

[auth]
master_key = "env:OMEN_MASTER_KEY" # optional on loopback; required to bind any other address

[providers.openai]                 # provider id; `type` defaults to the id when it names a known type
type = "openai"                    # openai | azure | xai | ollama | openai-compatible (more later)
api_key = "env:OPENAI_API_KEY"
base_url = "https://api.openai.com/v1"   # every type accepts a base_url override

[providers.azure-eu]
type = "azure"
endpoint = "https://example.openai.azure.com"
api_key = "env:AZURE_OPENAI_API_KEY"
api_version = "2024-10-21"

[providers.ollama]
endpoints = ["http://127.0.0.1:11434", "http://gpu-box:11434"]

[models."gpt-4o-mini"]             # public model id -> provider + upstream model (deployment for azure)
provider = "openai"
model = "gpt-4o-mini"
"""

ENV = {"OPENAI_API_KEY": "sk-test-openai-123456", "AZURE_OPENAI_API_KEY": "az-key-abcdef"}


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "omen.toml"
    path.write_text(text)
    return str(path)


def test_documented_shape_loads(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, DOCUMENTED), env=ENV)
    config = loaded.config
    assert config.server.bind == "127.0.0.1:8080"
    assert config.auth.master_key is None  # env var unset: no master key (fine on loopback)
    assert config.providers["openai"].api_key == "sk-test-openai-123456"
    assert config.providers["azure-eu"].type == "azure"
    assert config.providers["ollama"].type == "ollama"  # type defaults to the id
    assert config.providers["ollama"].endpoints == ["http://127.0.0.1:11434", "http://gpu-box:11434"]
    assert config.models["gpt-4o-mini"].provider == "openai"


def test_file_secret_and_master_key(tmp_path: Path) -> None:
    (tmp_path / "key.txt").write_text("sk-from-file\n")
    text = '[auth]\nmaster_key = "env:MK"\n[providers.openai]\napi_key = "file:key.txt"\n'
    config = load_config(write(tmp_path, text), env={"MK": "master-1"}).config
    assert config.providers["openai"].api_key == "sk-from-file"
    assert config.auth.master_key == "master-1"


def test_every_error_has_path_and_line(tmp_path: Path) -> None:
    text = """[server]
bind = "0.0.0.0:8080"
colour = "blue"

[providers.openai]
api_key = "env:MISSING_KEY"

[providers.mystery]
base_url = "http://x"

[models.m1]
provider = "nowhere"
"""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    issues = {i.path: i for i in info.value.issues}
    assert issues["server.colour"].line == 3
    assert "unknown key" in issues["server.colour"].message
    assert issues["providers.openai.api_key"].line == 6
    assert "MISSING_KEY" in issues["providers.openai.api_key"].message
    assert issues["providers.mystery"].line == 8
    assert "known types" in issues["providers.mystery"].message
    assert issues["models.m1.provider"].line == 12
    assert "master key is required" in issues["auth.master_key"].message


def test_policy_and_retry_errors_have_lines(tmp_path: Path) -> None:
    text = """[models.m1]
provider = "demo"
retries = -1

[routing]
retries = -2

[[routing.policies]]
name = "first"
action = "route"
route = "m1"

[[routing.policies]]
name = "second"
action = "route"
route = "nowhere"
split = [{ model = "m1", weight = 1 }]

[[routing.policies]]
name = "third"
action = "rewrite"
[routing.policies.cap]
max_tokens = -5
"""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    issues = {i.path: i for i in info.value.issues}
    assert issues["models.m1.retries"].line == 3 and "0 or more" in issues["models.m1.retries"].message
    assert issues["routing.retries"].line == 6 and "0 or more" in issues["routing.retries"].message
    # the i-th [[routing.policies]] header, then the key below it
    assert issues["routing.policies[1].route"].line == 16  # not the first rule's route (line 11)
    assert issues["routing.policies[1]"].line == 13  # "route or split, not both": the rule's header
    assert issues["routing.policies[2].cap.max_tokens"].line == 23  # in a subtable of the third rule
    # paths of other sections still resolve as before
    assert issues["routing.policies[1].route"].message == "'nowhere' is not a configured model"


def test_unknown_policy_key_has_its_line(tmp_path: Path) -> None:
    text = """[[routing.policies]]
name = "first"
action = "deny"

[[routing.policies]]
name = "second"
action = "deny"
colour = "blue"
"""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    [issue] = info.value.issues
    assert (issue.path, issue.message, issue.line) == ("routing.policies[1].colour", "unknown key", 8)


def test_wrong_types_and_toml_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[server]\nworkers = "two"\n'), env={})
    assert info.value.issues[0].path == "server.workers"
    assert info.value.issues[0].line == 2
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[server\nbind = 1\n"), env={})
    assert info.value.issues[0].line == 1


def test_environment_detection_and_overrides() -> None:
    env = {
        "OPENAI_API_KEY": "sk-1",
        "XAI_API_KEY": "xai-1",
        "OLLAMA_HOST": "0.0.0.0:11434",
        "AZURE_OPENAI_API_KEY": "az",
        "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
        "OMEN__SERVER__BIND": "127.0.0.1:9999",
        "OMEN__PROVIDERS__OPENAI__TIMEOUTS__TOTAL": "30",
    }
    loaded = load_config(None, env=env)
    config = loaded.config
    assert sorted(loaded.detected) == ["azure", "ollama", "openai", "xai"]
    assert config.providers["ollama"].endpoints == ["http://127.0.0.1:11434"]
    assert config.providers["azure"].api_version == "2024-10-21"
    assert config.server.bind == "127.0.0.1:9999"
    assert config.providers["openai"].timeouts.total == 30


def test_non_loopback_bind_needs_master_key() -> None:
    with pytest.raises(ConfigError):
        load_config(None, env={"OMEN__SERVER__BIND": "0.0.0.0:8080"})
    config = load_config(None, env={"OMEN__SERVER__BIND": "0.0.0.0:8080", "OMEN_MASTER_KEY": "k"}).config
    assert config.auth.master_key == "k"


def test_check_config_cli(tmp_path: Path) -> None:
    path = write(tmp_path, DOCUMENTED)
    env = {"PATH": "/usr/bin:/bin", **ENV}
    ok = subprocess.run([sys.executable, "-m", "omen", "check-config", path], capture_output=True, text=True,
                        env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "gpt-4o-mini" in ok.stdout and "azure-eu" in ok.stdout
    assert "sk-test-openai-123456" not in ok.stdout and "az-key-abcdef" not in ok.stdout  # masked
    bad = write(tmp_path, '[providers.openai]\napi_key = "env:NOPE"\n[models.x]\nprovider = "ghost"\n')
    failed = subprocess.run([sys.executable, "-m", "omen", "check-config", bad], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert failed.returncode != 0
    assert "providers.openai.api_key (line 2)" in failed.stderr
    assert "models.x.provider (line 4)" in failed.stderr


def test_provider_credentials_from_the_usual_environment(tmp_path) -> None:
    path = tmp_path / "omen.toml"
    path.write_text(
        '[providers.anthropic]\n[providers.gemini]\n[providers.bedrock]\nregion = "eu-west-1"\n'
        '[providers.aws-profile]\ntype = "bedrock"\nregion = "eu-west-1"\nprofile = "dev"\n'
    )
    env = {
        "ANTHROPIC_API_KEY": "sk-ant",
        "GOOGLE_API_KEY": "g-key",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    providers = load_config(str(path), env=env).config.providers
    assert providers["anthropic"].api_key == "sk-ant"
    assert providers["gemini"].api_key == "g-key"
    assert (providers["bedrock"].access_key_id, providers["bedrock"].secret_access_key) == ("AKIDEXAMPLE", "secret")
    # an explicit profile is not overridden by AWS_* keys from the environment
    assert providers["aws-profile"].access_key_id is None and providers["aws-profile"].profile == "dev"


def test_missing_provider_credentials_name_the_variable(tmp_path) -> None:
    path = tmp_path / "omen.toml"
    path.write_text('[providers.anthropic]\n[providers.yandex]\napi_key = "k"\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    text = str(info.value)
    assert "provider type 'anthropic' needs 'api_key' (or set ANTHROPIC_API_KEY)" in text
    assert "provider type 'yandex' needs 'folder_id' (or set YC_FOLDER_ID / YANDEX_FOLDER_ID)" in text


def test_native_providers_detected_from_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./omen.toml
    env = {
        "ANTHROPIC_API_KEY": "sk-ant",
        "GEMINI_API_KEY": "g-key",
        "GIGACHAT_CREDENTIALS": "Z2lnYQ==",
        "YC_API_KEY": "yc-key",
        "YC_FOLDER_ID": "b1g",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",  # not enough on its own: many tools set these
        "AWS_REGION": "us-east-1",
    }
    loaded = load_config(None, env=env)
    providers = loaded.config.providers
    assert sorted(loaded.detected) == ["anthropic", "gemini", "gigachat", "yandex"]
    assert providers["gemini"].api_key == "g-key" and providers["gigachat"].credentials == "Z2lnYQ=="
    assert (providers["yandex"].api_key, providers["yandex"].folder_id) == ("yc-key", "b1g")
    assert "bedrock" not in providers


def test_model_groups_and_routing_section(tmp_path) -> None:
    path = tmp_path / "omen.toml"
    path.write_text(
        '[providers.openai]\napi_key = "k"\n[providers.ollama]\n'
        '[models."gpt-4o-mini"]\nprovider = "openai"\n'
        '[models.smart]\nstrategy = "least-busy"\nfallbacks = ["gpt-4o-mini"]\n'
        'deployments = [{ provider = "openai", model = "gpt-4o", weight = 3 },'
        ' { provider = "ollama", model = "qwen2.5:7b", priority = 2 }]\n'
        '[routing]\nretries = 3\n[routing.auto]\ncode = "smart"\ndefault = "gpt-4o-mini"\n'
        '[[routing.policies]]\nmodels = ["auto"]\nintents = ["code"]\nroute = "smart"\n'
    )
    config = load_config(str(path), env={}).config
    smart = config.models["smart"]
    assert [d.provider for d in smart.deployments] == ["openai", "ollama"] and smart.deployments[0].weight == 3
    assert config.routing.retries == 3 and config.routing.auto.code == "smart"
    assert config.routing.policies[0].route == "smart"


def test_model_group_errors(tmp_path) -> None:
    path = tmp_path / "omen.toml"
    path.write_text(
        '[providers.openai]\napi_key = "k"\n'
        '[models.both]\nprovider = "openai"\ndeployments = [{ provider = "openai" }]\n'
        '[models.neither]\nmodel = "x"\n'
        '[models.bad]\nstrategy = "fastest"\nfallbacks = ["nope"]\ndeployments = [{ provider = "missing" }]\n'
        '[routing.auto]\ncode = "ghost"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    text = str(info.value)
    assert "models.both" in text and "models.neither" in text and "not both" in text
    assert "unknown strategy 'fastest'" in text
    assert "models.bad.fallbacks[0]" in text and "models.bad.deployments[0].provider" in text
    assert "routing.auto.code" in text
