"""Yandex Foundation Models ids: OMEN model ids -> model URIs, the documented model list, and which
models call functions natively.

Yandex has no model-listing endpoint: a model is named by a URI built from the folder the calls are
billed to (``gpt://<folder>/yandexgpt/latest``, ``emb://<folder>/text-search-doc/latest``). OMEN exposes
the short form ``<model>/<version>`` (``yandexgpt/rc``; a bare ``yandexgpt`` means ``/latest``) and
builds the URI from the provider's ``folder_id``; a full URI (``gpt://…``, fine-tunes ``ds://…``)
passes through unchanged.
"""

from __future__ import annotations

from omen.errors import bad_request

DEFAULT_BASE_URL = "https://llm.api.cloud.yandex.net"
CHAT_MODELS = ("yandexgpt", "yandexgpt-lite", "yandexgpt-32k")
VERSIONS = ("latest", "rc", "deprecated")  # rc: release candidate; deprecated: the previous release
EMBEDDING_MODELS = ("text-search-doc", "text-search-query")  # documents / search queries

# Native function calling (``tools``, ``toolCallList``, ``toolResultList``) is documented for YandexGPT
# Pro (``yandexgpt``) and Llama 70B (``llama``). Every other model (``yandexgpt-lite``, ``yandexgpt-32k``,
# ``llama-lite``, fine-tunes) gets OMEN's prompt-based emulation (omen/providers/yandex_tools.py).
NATIVE_TOOL_MODELS = frozenset({"yandexgpt", "llama"})


def static_model_ids() -> list[str]:
    """What /v1/models shows for a Yandex provider (as ``<provider>/<id>``)."""
    return [f"{name}/{version}" for name in CHAT_MODELS for version in VERSIONS] + list(EMBEDDING_MODELS)


def model_uri(model: str, folder_id: str | None, scheme: str) -> str:
    """``yandexgpt/rc`` -> ``gpt://<folder>/yandexgpt/rc``; ``yandexgpt`` -> ``…/latest``; URIs pass."""
    if "://" in model:
        return model
    name, _, version = model.partition("/")
    if not name or "/" in version or any(c.isspace() for c in model):
        raise bad_request(
            f"'{model}' is not a Yandex model id: use <model>/<version> (e.g. yandexgpt/latest, "
            f"yandexgpt-lite/rc) or a full model URI ({scheme}://<folder>/<model>/<version>).",
            param="model",
        )
    if not folder_id:
        raise bad_request(
            "This Yandex provider has no folder_id configured, so only full model URIs "
            f"({scheme}://<folder>/<model>/<version>) can be used.",
            param="model",
        )
    return f"{scheme}://{folder_id}/{name}/{version or 'latest'}"


def base_model(uri: str) -> str:
    """The model name inside a URI (``gpt://f/yandexgpt-lite/rc`` -> ``yandexgpt-lite``); ``""`` for
    URIs without one (fine-tunes ``ds://<id>``)."""
    scheme, _, rest = uri.partition("://")
    parts = rest.split("/")
    return parts[1] if scheme in ("gpt", "emb") and len(parts) >= 2 else ""


def chat_uri(model: str, folder_id: str | None) -> str:
    uri = model_uri(model, folder_id, "gpt")
    if base_model(uri) in EMBEDDING_MODELS:
        raise bad_request(f"'{model}' is an embedding model; use it with /v1/embeddings.", param="model")
    return uri


def embedding_uri(model: str, folder_id: str | None) -> str:
    uri = model_uri(model, folder_id, "emb")
    if base_model(uri) in CHAT_MODELS or uri.startswith("gpt://"):
        raise bad_request(
            f"'{model}' is a text generation model; Yandex embeddings use text-search-doc (documents) "
            "or text-search-query (search queries).",
            param="model",
        )
    return uri


def native_tools(uri: str) -> bool:
    return base_model(uri) in NATIVE_TOOL_MODELS
