"""The shape of ``omen.toml``. Unknown keys are errors (a typo must not be silently ignored)."""

from __future__ import annotations

from typing import Any

import msgspec


class _Section(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    pass


class Timeouts(_Section):
    """Per-phase upstream timeouts in seconds, each enforced as a trio cancel scope."""

    connect: float = 10.0
    first_byte: float = 120.0  # request sent -> response headers
    idle: float = 60.0  # between two chunks of a streamed body
    total: float = 600.0  # whole upstream exchange


class ServerConfig(_Section):
    bind: str = "127.0.0.1:8080"
    workers: int = 1
    certfile: str | None = None
    keyfile: str | None = None
    quic: bool = True  # HTTP/3 on the same port over UDP when TLS is configured
    max_body_bytes: int = 32 * 1024 * 1024
    graceful_timeout: float = 30.0
    keep_alive_timeout: float = 75.0
    quic_idle_timeout: float = 10.0
    access_log: bool = True
    log_level: str = "info"


class AuthConfig(_Section):
    master_key: str | None = None


class ProviderConfig(_Section):
    type: str | None = None  # defaults to the provider id when that names a known type
    api_key: str | None = None
    base_url: str | None = None
    # Azure OpenAI
    endpoint: str | None = None
    api_version: str | None = None
    azure_ad_token: str | None = None
    # Ollama: several endpoints per provider
    endpoints: list[str] | None = None
    # OpenAI
    organization: str | None = None
    project: str | None = None
    # Anthropic
    anthropic_version: str | None = None
    # AWS Bedrock (default: the standard AWS variables, then the shared config/credentials profile)
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    profile: str | None = None
    # GigaChat: OAuth authorization key ("credentials"), scope, token endpoint
    credentials: str | None = None
    scope: str | None = None
    auth_url: str | None = None
    # YandexGPT: api_key (Api-Key) or iam_token (Bearer), and the folder the models are billed to
    iam_token: str | None = None
    folder_id: str | None = None
    # extra CA certificates (PEM file) trusted for this provider's TLS, e.g. the Russian root CA for GigaChat
    ca_bundle: str | None = None
    headers: dict[str, str] = {}
    http2: bool | None = None  # None/false: HTTP/1.1 keep-alive (h11 transport); true: HTTP/2 (ALPN or h2c)
    # ask OpenAI-compatible upstreams for the final usage chunk (stream_options.include_usage) so
    # streamed calls are accounted exactly; the chunk is dropped if the client did not ask for it
    stream_usage: bool = True
    max_connections: int = 1024  # per upstream per worker; every open stream holds one connection
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    # discover the provider's models (GET /models, /api/tags) and expose them as <provider>/<model>
    discover_models: bool = False


class CapabilitiesConfig(_Section):
    """What a model can do, overriding the built-in catalog (omen/catalog); unset = catalog value."""

    vision: bool | None = None  # accepts image parts
    tools: bool | None = None  # accepts tools / functions
    json_mode: bool | None = None  # accepts response_format json_object / json_schema
    context_window: int | None = None  # tokens, prompt + output
    max_output_tokens: int | None = None  # larger max_tokens / max_completion_tokens -> 400


class PricingConfig(_Section):
    """USD per 1M tokens, overriding the built-in catalog; shown by GET /v1/models."""

    input: float | None = None
    output: float | None = None
    cached_input: float | None = None


class ModelConfig(_Section):
    provider: str
    model: str | None = None  # upstream model (Azure: deployment); defaults to the public id
    aliases: list[str] = []
    demo: bool = False
    extra: dict[str, Any] = {}
    capabilities: CapabilitiesConfig | None = None
    pricing: PricingConfig | None = None


class ImagesConfig(_Section):
    """Fetching http(s) image URLs for providers that need images inline (``inline_images``).

    Every hop is checked after DNS resolution: loopback, private, link-local, metadata and other
    non-public addresses are refused unless their ``host:port`` is listed in ``allow_hosts``."""

    fetch: bool = True  # false: such providers refuse http(s) image URLs (data: URIs still work)
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0  # whole fetch, redirects included
    max_redirects: int = 3
    allow_hosts: list[str] = []  # "host:port" exceptions for private addresses, e.g. "127.0.0.1:8000"


class OmenConfig(_Section):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    providers: dict[str, ProviderConfig] = {}
    models: dict[str, ModelConfig] = {}
    aliases: dict[str, str] = {}  # alias -> public model id
    images: ImagesConfig = msgspec.field(default_factory=ImagesConfig)
    demo: bool | None = None  # None: serve the demo model only when nothing else is configured
