"""GigaChat's OAuth exchange (providers.md §8.1), as a sans-IO :class:`~omen.providers.base.TokenFlow`.

``POST <auth_url>`` with ``Authorization: Basic <authorization key>``, a fresh ``RqUID`` (uuid4) and the
form body ``scope=...`` answers ``{"access_token": "...", "expires_at": <Unix time in milliseconds>}``.
The transport (omen/transport/tokens.py) caches the token, refreshes it before it expires and fetches
a new one when the API refuses it; this module only builds the request and reads the answer.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from omen.errors import OmenError
from omen.providers.base import Headers, Token, UpstreamRequest
from omen.providers.credentials import header_problem, require_header_safe
from omen.providers.upstream_errors import MIN_SECRET, redact, snippet

DEFAULT_AUTH_URL = "https://ngw.devices.sberbank.ru:9443/api/v2/oauth"
DEFAULT_SCOPE = "GIGACHAT_API_PERS"
# expires_at is documented in milliseconds; a value below this is taken as seconds (year 5138 in seconds)
_MS_THRESHOLD = 100_000_000_000


def authorization_key(credentials: str) -> str:
    """The Basic credential GigaChat expects: the base64 "authorization key" from the Sber cabinet.

    A pasted ``Basic `` prefix is dropped, and ``client_id:client_secret`` (which can never be base64:
    ``:`` is not in its alphabet) is encoded, so either form of the secret works."""
    key = credentials.strip()
    if key[:6].lower() == "basic ":
        key = key[6:].strip()
    if ":" in key:
        key = base64.b64encode(key.encode()).decode("ascii")
    return key


class GigaChatTokenFlow:
    """One provider's token exchange. ``new_uuid`` makes ``RqUID`` deterministic in tests."""

    def __init__(
        self,
        provider_id: str,
        credentials: str,
        *,
        scope: str = DEFAULT_SCOPE,
        auth_url: str = DEFAULT_AUTH_URL,
        new_uuid: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        parts = urlsplit(auth_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"provider '{provider_id}': auth_url must be an http(s) URL, got {auth_url!r}")
        self.provider_id = provider_id
        self._key = authorization_key(credentials)
        require_header_safe(provider_id, "credentials", self._key)
        self.credential_values = _credential_forms(credentials, self._key)
        self._endpoint = f"{parts.scheme}://{parts.netloc}"
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._body = urlencode({"scope": scope}).encode()
        self._new_uuid = new_uuid

    def token_endpoint(self) -> str:
        return self._endpoint

    def token_request(self) -> UpstreamRequest:
        headers: Headers = [
            ("Authorization", f"Basic {self._key}"),
            ("RqUID", str(self._new_uuid())),  # required by the endpoint, unique per request
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "application/json"),
        ]
        return UpstreamRequest("POST", self._path, headers, self._body)

    def token_result(self, status: int, headers: Headers, body: bytes, now: float) -> Token:
        if status >= 300:
            raise self._failure(status, headers, body)
        try:
            answer: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        value = answer.get("access_token") if isinstance(answer, dict) else None
        expires = answer.get("expires_at") if isinstance(answer, dict) else None
        if not isinstance(value, str) or not value or not _is_number(expires):
            raise OmenError(
                502,
                f"Upstream provider '{self.provider_id}': the OAuth token exchange returned an answer without "
                f"'access_token' and 'expires_at': {snippet(self._scrub_body(body))}",
                type="server_error",
                code="upstream_invalid_response",
            )
        if header_problem(value) is not None:  # it becomes a header value; h11 would quote it in its error
            raise OmenError(
                502,
                f"Upstream provider '{self.provider_id}': the OAuth token exchange returned an access token that "
                "cannot be sent in an HTTP header",
                type="server_error",
                code="upstream_invalid_response",
            )
        seconds = expires / 1000 if expires >= _MS_THRESHOLD else float(expires)
        return Token(value=value, expires_at=seconds)

    def _failure(self, status: int, headers: Headers, body: bytes) -> OmenError:
        detail = self._scrub(_message(self._scrub_body(body)) or f"HTTP {status}")
        text = f"Upstream provider '{self.provider_id}': the OAuth token exchange failed (HTTP {status}): {detail}"
        if status == 429:
            retry = {k.lower(): v for k, v in headers if k.lower() in ("retry-after", "retry-after-ms")}
            return OmenError(429, text, type="rate_limit_error", code="rate_limit_exceeded", headers=retry)
        if status in (400, 401, 403):
            # The gateway's own credentials are wrong: not the caller's fault, so not a 4xx for them.
            text += ". Check the provider's 'credentials' (authorization key) and 'scope'."
            return OmenError(502, text, type="server_error", code="upstream_authentication_failed")
        return OmenError(502, text, type="server_error", code="upstream_error")

    def _scrub(self, text: str) -> str:
        """Never echo the authorization key, even if an error page quotes the request."""
        for secret in self.credential_values:
            text = text.replace(secret, "***")
        return redact(self.provider_id, text)

    def _scrub_body(self, body: bytes) -> bytes:
        """Scrubbed before it is cut to a snippet: a key cut in two would not be recognised."""
        return self._scrub(body.decode("utf-8", "replace")).encode()


def _credential_forms(credentials: str, key: str) -> tuple[str, ...]:
    """The key as sent, as configured, and ``client_id:client_secret`` / the client secret inside it."""
    forms = {key, credentials.strip()}
    try:
        decoded = base64.b64decode(key, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    if ":" in decoded:
        forms.update((decoded, decoded.partition(":")[2]))
    return tuple(sorted((f for f in forms if len(f) >= MIN_SECRET), key=len, reverse=True))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _message(body: bytes) -> str:
    """The error text of the OAuth endpoint's answer ({"code","message"}, OAuth's error fields, or text)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return snippet(body) if body.strip() else ""
    if isinstance(obj, dict):
        for key in ("message", "error_description", "error"):
            value = obj.get(key)
            if isinstance(value, str) and value:
                return value
    return snippet(body)
