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


class DeploymentConfig(_Section):
    """One way to serve a model group: a provider, its upstream model, and this deployment's limits."""

    provider: str
    model: str | None = None  # upstream model (Azure: deployment); defaults to the group's public id
    id: str | None = None  # name in status/explain/headers; default "<provider>/<model>"
    weight: float = 1.0  # weighted strategy / A/B share within its priority tier
    priority: int = 1  # tiers are tried in ascending order: tier 2 only when tier 1 cannot serve
    max_concurrent: int | None = None  # in-flight requests on this deployment (per worker)
    max_queue: int | None = None  # requests waiting for a slot beyond max_concurrent (default: max_concurrent)
    queue_timeout_s: float | None = None  # longest wait for a slot (default: routing.queue_timeout_s)
    rpm: int | None = None  # requests per minute (per worker until shared limits exist)
    tpm: int | None = None  # tokens per minute (estimated prompt + max output)


STRATEGIES = ("weighted", "least-busy", "latency", "cost", "score")


class ModelConfig(_Section):
    """A public model: either one ``provider``/``model`` (the core form) or a group of ``deployments``."""

    provider: str | None = None
    model: str | None = None  # upstream model (Azure: deployment); defaults to the public id
    aliases: list[str] = []
    demo: bool = False
    extra: dict[str, Any] = {}
    capabilities: CapabilitiesConfig | None = None
    pricing: PricingConfig | None = None
    # ---- model groups (routing) ----
    deployments: list[DeploymentConfig] = []
    strategy: str = "weighted"  # one of STRATEGIES
    fallbacks: list[str] = []  # public models tried in order once this group is exhausted
    context_window_fallbacks: list[str] = []  # on context-window-exceeded: larger-context public models
    content_filter_fallbacks: list[str] = []  # on a content-filter refusal
    hedge: bool = False  # start a second attempt on another deployment after the group's p95 first-byte time
    hedge_after_ms: float | None = None  # fixed hedge delay instead of the observed p95
    sticky: str | None = None  # "user" | "session": keep a user/session on one deployment (weights = A/B)
    retries: int | None = None  # this model's retry budget per request (default: routing.retries)


class BreakerConfig(_Section):
    """Circuit breaker per deployment: open on the error rate over a sliding window."""

    window_s: float = 30.0
    min_requests: int = 10  # no verdict below this many requests in the window
    error_rate: float = 0.5  # open at or above this failure share
    cooldown_s: float = 30.0  # open -> half-open after this long
    half_open_probes: int = 2  # requests admitted while half-open; all must succeed to close


class HealthConfig(_Section):
    """Active health probes (a model-list or minimal request per deployment) feeding breaker and score."""

    probe_interval_s: float = 0.0  # 0: passive health only (from traffic)
    probe_timeout_s: float = 10.0
    jitter: float = 0.2  # +-20 % on every interval, so workers and deployments do not probe in step


class ScoreWeights(_Section):
    """Weights of the ``score`` strategy (omen/_fast/scoring.pyx); higher = matters more."""

    health: float = 1.0
    latency: float = 1.0
    error_rate: float = 1.0
    cost: float = 0.5
    capacity: float = 0.5
    capability: float = 1.0


class AutoConfig(_Section):
    """``model = "auto"``: intent -> public model. Intents: code, reasoning, vision, tools, long, chat."""

    code: str | None = None
    reasoning: str | None = None
    vision: str | None = None
    tools: str | None = None
    long: str | None = None
    chat: str | None = None
    default: str | None = None  # for intents not listed
    long_threshold_tokens: int = 6000  # prompt tokens above which a request is "long"
    prefer_local_for: list[str] = []  # intents sent to an Ollama deployment first when one can serve


class SplitArm(_Section):
    model: str  # public model (or group) of this arm
    weight: float  # share; arms of one split need not sum to 100


class PolicyRule(_Section):
    """One ordered rule: every ``match`` field given must match; the first matching rule applies."""

    name: str | None = None
    # ---- match ----
    api_keys: list[str] | None = None  # key ids (the master key is "master")
    teams: list[str] | None = None  # from the authenticated key, else the x-omen-team header
    users: list[str] | None = None  # from the key, else the request's "user" field / x-omen-user header
    models: list[str] | None = None  # model asked for ("auto" included); fnmatch patterns
    intents: list[str] | None = None
    headers: dict[str, str] = {}  # header -> fnmatch pattern
    metadata: dict[str, str] = {}  # request metadata/tags key -> fnmatch pattern
    hours: str | None = None  # "09:00-18:00" (UTC; may wrap past midnight)
    days: list[str] | None = None  # "mon".."sun"
    # ---- action ----
    action: str = "route"  # route | deny | rewrite
    route: str | None = None  # public model or group to use
    split: list[SplitArm] = []  # A/B or canary arms instead of one route
    sticky: str | None = None  # "user" | "session": the same user/session always gets the same arm
    set: dict[str, Any] = {}  # rewrite: request parameters to set (e.g. temperature = 0)
    cap: dict[str, float] = {}  # rewrite: numeric parameters capped (e.g. max_tokens = 1024)
    message: str | None = None  # deny: the message the client gets (403)


class RoutingConfig(_Section):
    retries: int = 2  # repeated attempts per request on deployments that just failed (failovers are free)
    timeout_s: float = 600.0  # the request's overall deadline, retries and fallbacks included
    backoff_base_s: float = 0.25  # full-jitter exponential backoff between retries
    backoff_max_s: float = 8.0
    queue_timeout_s: float = 10.0  # default wait for a deployment slot
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    health: HealthConfig = msgspec.field(default_factory=HealthConfig)
    score: ScoreWeights = msgspec.field(default_factory=ScoreWeights)
    auto: AutoConfig = msgspec.field(default_factory=AutoConfig)
    policies: list[PolicyRule] = []


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
    routing: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    demo: bool | None = None  # None: serve the demo model only when nothing else is configured
