"""Names shared by load/run.py and load/locustfile.py (no locust import here: run.py must not be
monkey-patched by gevent)."""

from __future__ import annotations

# public model id -> provider kind of the fake behind it (see run.py's omen.toml)
CHAT_MODELS: dict[str, str] = {
    "gpt-4o-mini": "openai",
    "azure-gpt": "azure",
    "grok": "xai",
}
OLLAMA_MODEL = "ollama/llama3.2"
EMBEDDING_MODELS: dict[str, str] = {
    "text-embedding-3-small": "openai",
    "azure-embed": "azure",
    OLLAMA_MODEL: "ollama",
}
MODEL_KINDS: dict[str, str] = {**CHAT_MODELS, **EMBEDDING_MODELS}
# ids GET /v1/models must list (configured models; ollama/<model> resolves without being configured)
LISTED_MODELS = frozenset({*CHAT_MODELS, "text-embedding-3-small", "azure-embed"})

# Every fake streams exactly this many content chunks per reply (fake_upstream.py --chunks), so
# the reply text and its completion_tokens are known in advance.
DEFAULT_CHUNKS = 16

# environment of the locust process (set by run.py)
ENV_LEDGER = "OMEN_LOAD_LEDGER"  # JSON-lines file: one start and one end record per request
ENV_PHASE = "OMEN_LOAD_PHASE"  # short tag put into every X-Request-ID
ENV_CHUNKS = "OMEN_LOAD_CHUNKS"
ENV_TIMEOUT = "OMEN_LOAD_TIMEOUT"  # seconds one request (a whole stream included) may take
ENV_THROUGHPUT = "OMEN_LOAD_THROUGHPUT"  # tasks per second per user (constant_throughput); unset: short waits
ENV_SEED = "OMEN_LOAD_SEED"
ENV_STATS = "OMEN_LOAD_STATS"  # where the locustfile saves locust's final request stats (JSON)

REQUEST_ID_PREFIX = "lt"
