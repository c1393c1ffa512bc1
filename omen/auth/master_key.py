"""The master key: with one configured, every /v1 call must present it.

The key is kept only as a SHA-256 digest and compared with ``hmac.compare_digest`` (constant time),
so neither timing nor a memory dump of the check reveals it. It is never forwarded upstream: adapters
build their own upstream headers.
"""

from __future__ import annotations

import hashlib
import hmac

from omen.errors import OmenError


class MasterKey:
    def __init__(self, key: str | None) -> None:
        self._digest = hashlib.sha256(key.encode()).digest() if key else None

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def check(self, authorization: bytes | None, api_key: bytes | None) -> None:
        """Raise 401 unless the request carries the key (``Authorization: Bearer`` or ``x-api-key``)."""
        if self._digest is None:
            return
        presented = None
        if authorization:
            scheme, _, value = authorization.partition(b" ")
            if scheme.lower() == b"bearer":
                presented = value.strip()
        if presented is None and api_key:
            presented = api_key.strip()
        if not presented:
            raise OmenError(
                401,
                "Missing API key. Send 'Authorization: Bearer <key>' with the gateway's key.",
                type="invalid_request_error",
                code="missing_api_key",
            )
        if not hmac.compare_digest(hashlib.sha256(presented).digest(), self._digest):
            raise OmenError(401, "Incorrect API key provided.", type="invalid_request_error", code="invalid_api_key")
