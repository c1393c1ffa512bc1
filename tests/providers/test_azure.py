"""Azure OpenAI adapter: URL forms, auth, first-chunk absorption and error normalisation."""

from __future__ import annotations

import itertools

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omen.config.schema import ProviderConfig
from omen.providers.azure import AzureProvider
from omen.providers.base import (
    ChatCall,
    Chunk,
    CompletionCall,
    EmbeddingCall,
    StreamEnd,
    StreamError,
    StreamUsage,
    Usage,
)

ENDPOINT = "https://res.openai.azure.com"
RAW = b'{"model":"prod-gpt4o","messages":[{"role":"user","content":"hi"}]}'

# Azure's first chunk: empty id/model, no choices, only prompt_filter_results (providers.md section 2)
FILTER = (
    b'{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,'
    b'"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,'
    b'"detected":false},"self_harm":{"filtered":false,"severity":"safe"}}}]}'
)
C1 = (
    b'{"choices":[{"content_filter_results":{},"delta":{"content":"","role":"assistant"},"finish_reason":null,'
    b'"index":0}],"created":1735000000,"id":"chatcmpl-A","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk"}'
)
C2 = (
    b'{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"Hi"},'
    b'"finish_reason":null,"index":0}],"created":1735000000,"id":"chatcmpl-A","model":"gpt-4o-2024-11-20",'
    b'"object":"chat.completion.chunk"}'
)
C3 = (
    b'{"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0}],"created":1735000000,'
    b'"id":"chatcmpl-A","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk"}'
)
USAGE_CHUNK = (
    b'{"choices":[],"created":1735000000,"id":"chatcmpl-A","model":"gpt-4o-2024-11-20",'
    b'"object":"chat.completion.chunk","usage":{"completion_tokens":2,"prompt_tokens":9,"total_tokens":11}}'
)
STREAM = b"".join(b"data: " + p + b"\n\n" for p in [FILTER, C1, C2, C3, USAGE_CHUNK]) + b"data: [DONE]\n\n"


def azure(**cfg: object) -> AzureProvider:
    return AzureProvider("azure", ProviderConfig(**{"type": "azure", "endpoint": ENDPOINT, "api_key": "k1", **cfg}))


def call(raw: bytes = RAW, **kw: object) -> ChatCall:
    return ChatCall(raw=raw, upstream_model="prod-gpt4o", public_model="gpt-4o", **kw)


def run(make, pieces: list[bytes]) -> list:
    t = make()
    events = []
    for piece in pieces:
        events += t.feed(piece)
    events += t.close()
    return [("error", e.error.status, e.error.message) if isinstance(e, StreamError) else e for e in events]


def test_classic_deployment_urls():
    p = azure(api_version="2024-10-21")
    assert p.endpoints() == [ENDPOINT]
    req = p.chat_request(call())
    assert req.path == "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
    assert req.headers == [("Content-Type", "application/json"), ("api-key", "k1")]
    assert req.body is RAW
    c = CompletionCall(raw=b'{"model":"instr","prompt":"x"}', upstream_model="instr", public_model="i")
    assert p.completion_request(c).path == "/openai/deployments/instr/completions?api-version=2024-10-21"
    e = EmbeddingCall(raw=b'{"model":"emb","input":"x"}', upstream_model="emb", public_model="e")
    assert p.embeddings_request(e).path == "/openai/deployments/emb/embeddings?api-version=2024-10-21"
    assert p.models_request() is None  # classic lists base models, not deployments


def test_deployment_name_is_quoted():
    p = azure(api_version="2025-01-01-preview")
    c = call(b'{"model":"a b","messages":[]}')
    c.upstream_model = "a b/c"
    assert p.chat_request(c).path == "/openai/deployments/a%20b%2Fc/chat/completions?api-version=2025-01-01-preview"


@pytest.mark.parametrize("version", [None, "v1"])
def test_v1_urls(version):
    p = azure(api_version=version, endpoint=ENDPOINT + "/openai/v1/")
    assert p.endpoints() == [ENDPOINT]
    req = p.chat_request(call(b'{"model":"gpt-4o","messages":[]}'))
    assert req.path == "/openai/v1/chat/completions"
    assert orjson.loads(req.body)["model"] == "prod-gpt4o"  # v1: the deployment goes in the body
    assert p.models_request().path == "/openai/v1/models"


def test_v1_preview_and_entra_token():
    p = AzureProvider(
        "az", ProviderConfig(type="azure", endpoint=ENDPOINT + "/openai", api_version="preview", azure_ad_token="tok")
    )
    req = p.chat_request(call())
    assert req.path == "/openai/v1/chat/completions?api-version=preview"
    assert req.headers == [("Content-Type", "application/json"), ("Authorization", "Bearer tok")]


def test_config_errors():
    with pytest.raises(ValueError, match="endpoint"):
        AzureProvider("az", ProviderConfig(api_key="k"))
    with pytest.raises(ValueError, match="api_key or azure_ad_token"):
        AzureProvider("az", ProviderConfig(endpoint=ENDPOINT))


def test_stream_injects_usage_request():
    req = azure().chat_request(call(b'{"model":"prod-gpt4o","messages":[],"stream":true}', stream=True))
    assert orjson.loads(req.body)["stream_options"] == {"include_usage": True}


def expected(include_usage: bool) -> list:
    chunks = [Chunk(C1), Chunk(C2), Chunk(C3)] + ([Chunk(USAGE_CHUNK)] if include_usage else [])
    return [*chunks, StreamUsage(Usage(9, 2, 11)), StreamEnd()]


@pytest.mark.parametrize("include_usage", [True, False])
def test_first_chunk_absorbed_every_split(include_usage):
    make = lambda: azure().chat_stream(call(stream=True, include_usage=include_usage))  # noqa: E731
    want = expected(include_usage)
    assert run(make, [STREAM]) == want
    for i in range(len(STREAM) + 1):
        assert run(make, [STREAM[:i], STREAM[i:]]) == want, i


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_random_splits(cuts):
    points = [0, *sorted(cuts), len(STREAM)]
    make = lambda: azure().chat_stream(call(stream=True))  # noqa: E731
    assert run(make, [STREAM[a:b] for a, b in itertools.pairwise(points)]) == expected(False)


def test_error_429_string_code():
    body = (
        b'{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI '
        b'API version 2024-10-21 have exceeded token rate limit. Please retry after 7 seconds."}}'
    )
    err = azure().error(429, [("retry-after", "7"), ("x-ms-region", "eastus")], body)
    assert (err.status, err.type, err.code, err.param) == (429, "rate_limit_error", "rate_limit_exceeded", None)
    assert err.message.startswith("Requests to the ChatCompletions_Create")
    assert err.headers == {"retry-after": "7"}


def test_error_content_filter_keeps_innererror():
    inner = {
        "code": "ResponsibleAIPolicyViolation",
        "content_filter_result": {
            "hate": {"filtered": False, "severity": "safe"},
            "violence": {"filtered": True, "severity": "medium"},
        },
    }
    body = orjson.dumps(
        {
            "error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                "management policy.",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": inner,
            }
        }
    )
    err = azure().error(400, [], body)
    assert (err.status, err.type, err.code, err.param) == (400, "invalid_request_error", "content_filter", "prompt")
    assert err.body()["error"]["innererror"] == inner
    assert orjson.loads(err.to_json())["error"]["innererror"] == inner
