"""URL routing, authentication and error rendering per provider kind.

Kept apart from the socket loop so each provider's rules (Azure's mandatory ``api-version``, xAI's
400-for-bad-key, Ollama's plain-text 404) read as a table rather than as branches in the server.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

from . import ollama_wire as ollama
from . import openai_wire as oai
from .common import NATIVE_KINDS, ApiError, Ctx, Options, Plan, json_plan, text_plan
from .faults import AZURE_401, AZURE_AD_401, error_body

Handler = Callable[[Ctx], Plan]

_OPENAI: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/chat/completions"): oai.chat,
    ("POST", "/v1/completions"): oai.completions,
    ("POST", "/v1/embeddings"): oai.embeddings,
    ("GET", "/v1/models"): oai.list_models,
}
_AZURE_OPS: dict[str, Handler] = {
    "chat/completions": oai.chat,
    "completions": oai.completions,
    "embeddings": oai.embeddings,
}
_AZURE_V1: dict[tuple[str, str], Handler] = {
    ("POST", "/openai/v1/chat/completions"): oai.chat,
    ("POST", "/openai/v1/completions"): oai.completions,
    ("POST", "/openai/v1/embeddings"): oai.embeddings,
    ("GET", "/openai/v1/models"): oai.list_models,
}
_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]+)/(chat/completions|completions|embeddings)")
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
_OLLAMA: dict[tuple[str, str], Handler] = {
    ("POST", "/api/chat"): ollama.chat,
    ("POST", "/api/generate"): ollama.generate,
    ("POST", "/api/embed"): ollama.embed,
    ("GET", "/api/tags"): ollama.tags,
    ("GET", "/api/version"): ollama.version,
    ("GET", "/"): ollama.root,
    ("HEAD", "/"): ollama.root,
}


def _azure_api_version(query: dict[str, str]) -> str:
    """Classic Azure URLs need ``?api-version=``: missing -> 404, malformed -> 400, as Azure answers."""
    version = query.get("api-version")
    if not version:
        raise ApiError(404)
    if not _API_VERSION.fullmatch(version):
        raise ApiError(400, body={"error": {"code": "BadRequest", "message": "API version not supported"}})
    return version


def native_wire(kind: str) -> ModuleType | None:
    """The wire module of a native kind (``tests/fakes/<kind>_wire.py``), which provides
    ``resolve(method, path, query) -> (handler, params)``, ``check_auth(opts, headers, path, query)``,
    ``error_body(err, model) -> body`` and ``mid_stream_error(message) -> bytes`` (one framed event)."""
    if kind not in NATIVE_KINDS:
        return None
    return importlib.import_module(f"{__package__}.{kind}_wire")


def resolve(kind: str, method: str, path: str, query: dict[str, str]) -> tuple[Handler, dict[str, str]]:
    """Find the handler and path parameters, or raise the provider's 404."""
    wire = native_wire(kind)
    if wire is not None:
        return wire.resolve(method, path, query)
    if kind == "azure":
        m = _AZURE_DEPLOYMENT.fullmatch(path)
        if m and method == "POST":
            version = _azure_api_version(query)
            return _AZURE_OPS[m[2]], {"deployment": m[1], "api_version": version}
        handler = _AZURE_V1.get((method, path))
        if handler is not None:
            return handler, {}
        if method == "GET" and path == "/openai/models":
            return oai.list_models, {"api_version": _azure_api_version(query)}
        raise ApiError(404)
    if kind == "ollama":
        handler = _OLLAMA.get((method, path))
        if handler is None:
            raise ApiError(404, body=b"404 page not found")
        return handler, {}
    handler = _OPENAI.get((method, path))
    if handler is not None:
        return handler, {}
    if method == "GET" and path.startswith("/v1/models/"):
        return oai.get_model, {"model": path[len("/v1/models/") :]}
    raise ApiError(404, f"Invalid URL ({method} {path})", type="invalid_request_error")


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _mask(key: str) -> str:
    return f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"


def check_auth(
    kind: str, opts: Options, headers: dict[str, str], path: str, query: dict[str, str] | None = None
) -> None:
    """Raise the provider's auth error unless the request carries the configured credential."""
    wire = native_wire(kind)
    if wire is not None:
        wire.check_auth(opts, headers, path, query or {})
        return
    api_key, ad_token = opts.api_key, opts.ad_token
    token = _bearer(headers.get("authorization"))
    if kind == "azure":
        if api_key is None and ad_token is None:
            return
        if api_key is not None and headers.get("api-key") == api_key:
            return
        if ad_token is not None and token == ad_token:
            return
        if api_key is not None and token == api_key and path.startswith("/openai/v1/"):
            return  # the v1 surface also takes the key as a Bearer token
        message = AZURE_AD_401 if token is not None and "api-key" not in headers else AZURE_401
        raise ApiError(401, body={"error": {"code": "401", "message": message}})
    if api_key is None or token == api_key:
        return
    presented = token or headers.get("authorization") or ""
    if kind == "ollama":
        raise ApiError(401, "unauthorized")
    if kind == "xai":
        raise ApiError(
            400,
            f"Incorrect API key provided: {_mask(presented)}. You can obtain an API key from https://console.x.ai.",
            code="Client specified an invalid argument",
        )
    if not presented:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using "
            "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            type="invalid_request_error",
        )
    raise ApiError(
        401,
        f"Incorrect API key provided: {_mask(presented)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        type="invalid_request_error",
        code="invalid_api_key",
    )


def error_plan(kind: str, err: ApiError, *, model: str | None = None, api_version: str | None = None) -> Plan:
    """Render an ApiError as a complete response in ``kind``'s error shape."""
    wire = native_wire(kind)
    body: Any
    if wire is not None:
        body = err.body if err.body is not None else wire.error_body(err, model)
    else:
        body = error_body(kind, err, model=model, api_version=api_version)
    if isinstance(body, str):
        body = body.encode()
    extra = [(k.lower().encode(), str(v).encode()) for k, v in err.headers.items()]
    if isinstance(body, bytes):
        if body[:1] in (b"{", b"["):
            return json_plan(err.status, body, extra)
        plan = text_plan(err.status, body.decode("utf-8", "replace"))
        plan.headers.extend(extra)
        return plan
    return json_plan(err.status, body, extra)
