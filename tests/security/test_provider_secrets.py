"""A provider's own credentials never reach a client or the access log, whatever the upstream echoes
and however the credential was configured (omen.providers.credentials, upstream_errors.redact)."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest

from omen.config.loader import load_config
from omen.config.schema import ProviderConfig
from omen.pipeline.gateway import Gateway
from omen.providers.bedrock import BedrockProvider
from omen.providers.ollama import _upstream_error
from omen.providers.registry import create_provider
from omen.providers.upstream_errors import invalid_upstream_body
from tests.conftest import openai_provider, running_omen
from tests.fakes import open_fake_upstream

KEY = "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
AWS_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN0123456789abcdef"


def leaks(text: str, *secrets: str) -> bool:
    """Any secret, or any 10-character piece of one (a key cut by a snippet), in ``text``."""
    return any(s[i : i + 10] in text for s in secrets for i in range(len(s) - 9))


# ---- a credential that cannot be a header value: refused at startup, never quoted --------------------


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"api_key": KEY + "\n"}, "api_key"),
        ({"api_key": " " + KEY}, "api_key"),
        ({"api_key": KEY[:10] + "\r\nX-Injected: 1"}, "api_key"),
        ({"api_key": KEY + "é"}, "api_key"),
        ({"headers": {"X-Api-Key": KEY + "\n"}}, "headers.X-Api-Key"),
    ],
)
def test_unsendable_credentials_are_refused_without_quoting_them(fields, what):
    """h11 refuses such a header with "Illegal header value b'Bearer sk-...'", which the exchange
    relayed as the 502's message: every client got the key. Now the provider is not built."""
    with pytest.raises(ValueError) as exc:
        create_provider("openai", ProviderConfig(type="openai", **fields))
    assert what in str(exc.value) and "HTTP header" in str(exc.value)
    assert not leaks(str(exc.value), KEY)


def test_a_trailing_newline_from_the_environment_stops_the_gateway(tmp_path):
    path = tmp_path / "omen.toml"
    path.write_text('[providers.openai]\napi_key = "env:OPENAI_KEY"\n')
    loaded = load_config(str(path), env={"OPENAI_KEY": KEY + "\n"})
    with pytest.raises(ValueError) as exc:
        Gateway.from_config(loaded.config)
    assert "api_key" in str(exc.value) and "trailing newline" in str(exc.value)
    assert not leaks(str(exc.value), KEY)


def test_bedrock_checks_credentials_found_in_the_environment():
    environ = {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE1",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_SESSION_TOKEN": AWS_TOKEN + "\n",
    }
    with pytest.raises(ValueError) as exc:
        BedrockProvider("bedrock", ProviderConfig(type="bedrock", region="us-east-1"), environ=environ)
    assert "session token" in str(exc.value) and not leaks(str(exc.value), AWS_TOKEN)


# ---- upstream error texts that quote the credential ------------------------------------------------------


def _straddling(secret: str) -> bytes:
    """A non-JSON error page whose 200-character snippet cuts ``secret`` in two."""
    return b"x" * 160 + f" Authorization: Bearer {secret} was rejected".encode()  # the key starts at 183


def _json(value: object) -> bytes:
    return orjson.dumps(value)


_AWS = {"region": "us-east-1", "access_key_id": "AKIDEXAMPLE1", "secret_access_key": AWS_SECRET}
_GIGA_KEY = base64.b64encode(b"client-id-1234:" + KEY.encode()).decode()
_ESCAPED_AWS_SECRET = AWS_SECRET.replace("/", "\\/")  # as a JSON encoder that escapes '/' writes it
_ECHOES = [
    ("openai", {"api_key": KEY}, 401, _json({"error": {"message": f"Invalid API key: {KEY}"}})),
    ("openai", {"api_key": KEY}, 502, _straddling(KEY)),
    ("openai-compatible", {"api_key": KEY, "base_url": "http://h/v1"}, 401, _json({"detail": f"bad key {KEY}"})),
    ("xai", {"api_key": KEY}, 400, _json({"code": "x", "error": f"Incorrect API key provided: {KEY}"})),
    (
        "azure",
        {"api_key": KEY, "endpoint": "https://r.openai.azure.com"},
        400,
        _json({"error": {"message": "filtered", "innererror": {"detail": [f"key {KEY}"]}}}),
    ),
    ("ollama", {"api_key": KEY, "endpoints": ["http://h:1"]}, 401, _json({"error": f"token {KEY} unknown"})),
    (
        "anthropic",
        {"api_key": KEY},
        401,
        _json({"type": "error", "error": {"type": "authentication_error", "message": f"bad x-api-key {KEY}"}}),
    ),
    ("anthropic", {"api_key": KEY}, 502, _straddling(KEY)),
    ("gemini", {"api_key": KEY}, 400, _json({"error": {"code": 400, "message": f"API key {KEY} not valid"}})),
    (
        "bedrock",
        {**_AWS, "session_token": AWS_TOKEN},
        400,
        _json({"message": f"x-amz-security-token:{AWS_TOKEN} secret {_ESCAPED_AWS_SECRET}"}),
    ),
    ("yandex", {"api_key": KEY, "folder_id": "b1gfolder"}, 502, _straddling(KEY)),
    ("gigachat", {"credentials": _GIGA_KEY}, 400, _json({"message": f"client secret {KEY} revoked"})),
]


@pytest.mark.parametrize(("kind", "fields", "status", "body"), _ECHOES)
def test_upstream_errors_never_quote_the_credentials(kind, fields, status, body):
    provider = create_provider(f"{kind}-leak", ProviderConfig(type=kind, **fields))
    error = provider.error(status, [], body)
    shown = orjson.dumps(error.body()).decode()
    assert not leaks(shown, KEY, AWS_SECRET, AWS_TOKEN), shown
    assert "***" in shown or status == 502


def test_in_band_and_invalid_body_errors_are_masked_too():
    create_provider("ollama-leak", ProviderConfig(type="ollama", api_key=KEY, endpoints=["http://127.0.0.1:1"]))
    assert not leaks(_upstream_error("ollama-leak", f"unauthorized: {KEY}").message, KEY)
    assert not leaks(invalid_upstream_body("ollama-leak", "a response", _straddling(KEY)).message, KEY)


def test_gigachat_token_exchange_errors_mask_a_key_cut_by_the_snippet():
    key = _GIGA_KEY
    provider = create_provider("giga-leak", ProviderConfig(type="gigachat", credentials=key))
    flow = provider.token_flow
    for status, body in ((401, _straddling(key)), (200, _straddling(key))):
        with pytest.raises(Exception) as exc:
            flow.token_result(status, [], body, 0)
        assert not leaks(str(exc.value), key, KEY), str(exc.value)


async def test_an_echoed_key_reaches_neither_the_client_nor_the_access_log(tmp_path):
    async with (
        open_fake_upstream("openai") as up,
        running_omen({"providers": {"openai": openai_provider(up, api_key=KEY)}}, tmp_path=tmp_path) as omen,
    ):
        up.set_fault(status=401, message=f"Incorrect API key provided: {KEY}. Check it.")
        async with httpx.AsyncClient(base_url=omen.url, timeout=30) as client:
            response = await client.post(
                "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            )
        assert response.status_code == 401
        assert "Incorrect API key provided: ***" in response.text and not leaks(response.text, KEY)
        record = await omen.log_for(response.headers["x-request-id"])
        assert not leaks(orjson.dumps(record).decode(), KEY)
        assert not leaks(omen.log.getvalue().decode(), KEY)


def test_local_protocol_errors_do_not_quote_header_values() -> None:
    import httpx

    from omen.transport.exchange import _describe

    text = _describe(httpx.LocalProtocolError("Illegal header value b'Bearer sk-secret-value\\n'"))
    assert "sk-secret-value" not in text and "LocalProtocolError" in text
