"""Azure OpenAI: the OpenAI adapter with Azure's URLs, auth headers and stream quirk.

Two URL forms exist. The classic one puts the deployment in the path and needs a dated
``api-version``; the v1 GA form (``api_version = "v1"`` or unset) is plain OpenAI under
``/openai/v1`` with the deployment name as the body's ``model``. Either way ``call.upstream_model``
is the deployment name.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

from omen.config.schema import ProviderConfig
from omen.providers.base import Headers, StreamEvent, UpstreamRequest
from omen.providers.openai_compat import OpenAIProvider, OpenAIStream, probe_usage

_V1 = ("v1", "preview")  # api-version values that select the v1 URL form


class AzureStream(OpenAIStream):
    """Absorbs Azure's content-filter-only chunks (``"choices":[]`` + ``prompt_filter_results``, no
    usage). Azure sends one first, with empty id/model; OpenAI clients that index ``choices[0]`` break
    on it, and it holds nothing an OpenAI client would use."""

    def _chunk(self, data: bytes, out: list[StreamEvent]) -> None:
        if b'"prompt_filter_results"' in data:
            probe = probe_usage(data)  # rare (the first chunk), so a decode is affordable
            if not probe.choices and not isinstance(probe.usage, dict):
                return
        super()._chunk(data, out)


class AzureProvider(OpenAIProvider):
    """``type = "azure"``: ``endpoint`` (https://{resource}.openai.azure.com), ``api_key`` or
    ``azure_ad_token``, ``api_version``."""

    type: ClassVar[str] = "azure"
    default_base_url: ClassVar[str | None] = None
    stream_class: ClassVar[type[OpenAIStream]] = AzureStream

    def __init__(self, provider_id: str, config: ProviderConfig) -> None:
        version = config.api_version or "v1"
        self.v1 = version in _V1
        # v1 needs no api-version; "preview" opts into preview features of the v1 API
        self._query = "" if version == "v1" else f"?api-version={quote(version, safe='')}"
        super().__init__(provider_id, config)

    def _base_url(self) -> str:
        cfg = self.config
        endpoint = (cfg.endpoint or cfg.base_url or "").rstrip("/")
        if not endpoint:
            raise ValueError(f"provider '{self.id}' (type azure): endpoint is required")
        if not (cfg.api_key or cfg.azure_ad_token):
            raise ValueError(f"provider '{self.id}' (type azure): set api_key or azure_ad_token")
        # accept the resource URL pasted with its /openai or /openai/v1 suffix too
        for suffix in ("/openai/v1", "/openai"):
            if endpoint.endswith(suffix):
                return endpoint[: -len(suffix)]
        return endpoint

    def _auth_headers(self) -> Headers:
        cfg = self.config
        if cfg.api_key:
            return [("api-key", cfg.api_key)]
        return [("Authorization", f"Bearer {cfg.azure_ad_token}")]

    def _path(self, operation: str, model: str) -> str:
        if self.v1:
            return f"/openai/v1/{operation}{self._query}"
        return f"/openai/deployments/{quote(model, safe='')}/{operation}{self._query}"

    def models_request(self) -> UpstreamRequest | None:
        # Classic endpoints list base models, not deployments, so they cannot be routed to: no discovery.
        if not self.v1:
            return None
        return UpstreamRequest("GET", f"/openai/v1/models{self._query}", list(self._auth))
