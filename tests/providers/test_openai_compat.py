"""OpenAI / OpenAI-compatible adapter: byte-exact request building, pass-through and stream relay."""

from __future__ import annotations

import itertools

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omen.api.chat import ChatCompletionRequest
from omen.api.decode import decode_body
from omen.config.schema import ProviderConfig
from omen.errors import OmenError
from omen.providers.base import (
    ChatCall,
    Chunk,
    CompletionCall,
    EmbeddingCall,
    StreamEnd,
    StreamError,
    StreamUsage,
    UpstreamRequest,
    Usage,
)
from omen.providers.openai_compat import OpenAICompatibleProvider, OpenAIProvider, has_usage_object

# providers.md section 1.5 (illustrative stream: text, one tool call in pieces, include_usage on)
PAYLOADS = [
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}',
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"Checking."},"logprobs":null,"finish_reason":null}],"usage":null}',
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_Ab1","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}',
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"loc"}}]},"logprobs":null,"finish_reason":null}],"usage":null}',
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ation\\":\\"Paris\\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}',
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}',
]
USAGE_PAYLOAD = b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":61,"completion_tokens":18,"total_tokens":79,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}'  # noqa: E501
STREAM = b"".join(b"data: " + p + b"\n\n" for p in [*PAYLOADS, USAGE_PAYLOAD]) + b"data: [DONE]\n\n"
USAGE = Usage(prompt_tokens=61, completion_tokens=18, total_tokens=79)


def provider(**cfg: object) -> OpenAIProvider:
    return OpenAIProvider("openai", ProviderConfig(**{"api_key": "sk-test", **cfg}))


def chat_call(raw: bytes, upstream: str = "gpt-4o", *, stream: bool = False, include_usage: bool = False) -> ChatCall:
    return ChatCall(
        raw=raw,
        upstream_model=upstream,
        public_model="gpt-4o",
        stream=stream,
        include_usage=include_usage,
        request=decode_body(raw, ChatCompletionRequest),
    )


def norm(events: list) -> list:
    """Events in a comparable form (OmenError compares by identity)."""
    out = []
    for ev in events:
        if isinstance(ev, StreamError):
            e = ev.error
            out.append(("error", e.status, e.message, e.type, e.code, e.param))
        else:
            out.append(ev)
    return out


def run(make, pieces: list[bytes]) -> list:
    translator = make()
    events = []
    for piece in pieces:
        events += translator.feed(piece)
    return norm(events + translator.close())


def stream_of(p: OpenAIProvider, include_usage: bool):
    call = chat_call(b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}', stream=True)
    call.include_usage = include_usage
    return lambda: p.chat_stream(call)


# ---- request building -------------------------------------------------------------------------------


def test_request_headers_path_and_identity():
    p = provider(organization="org-1", project="proj-1", headers={"X-Trace": "on"})
    raw = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
    req = p.chat_request(chat_call(raw))
    assert p.endpoints() == ["https://api.openai.com/v1"]
    assert req == UpstreamRequest(
        "POST",
        "/chat/completions",
        [
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer sk-test"),
            ("OpenAI-Organization", "org-1"),
            ("OpenAI-Project", "proj-1"),
            ("X-Trace", "on"),
        ],
        raw,
        stream=False,
    )
    assert req.body is raw  # forwarded, not re-encoded


def test_each_request_gets_its_own_header_list():
    p = provider()
    raw = b'{"model":"gpt-4o","messages":[]}'
    first, second = p.chat_request(chat_call(raw)), p.chat_request(chat_call(raw))
    first.headers.append(("X-Request-Id", "1"))
    assert second.headers == [("Content-Type", "application/json"), ("Authorization", "Bearer sk-test")]


def test_config_headers_replace_defaults_case_insensitively():
    p = provider(headers={"authorization": "Bearer other"})
    assert p.models_request().headers == [("authorization", "Bearer other")]


def test_model_swap_keeps_unknown_fields_and_numbers():
    raw = (
        b'{"model":"fast","messages":[{"role":"user","content":"h\\u00e9"}],"temperature":0.7,'
        b'"x_vendor":{"a":[1,2.5,null,true]},"logit_bias":{"50256":-100}}'
    )
    req = provider().chat_request(chat_call(raw, upstream="gpt-4o-2024-08-06"))
    assert orjson.loads(req.body) == {**orjson.loads(raw), "model": "gpt-4o-2024-08-06"}
    assert req.body is not raw


def test_stream_usage_is_injected_when_client_did_not_ask():
    raw = b'{"model":"gpt-4o","messages":[],"stream":true,"stream_options":{"include_obfuscation":false}}'
    req = provider().chat_request(chat_call(raw, stream=True))
    assert req.stream is True
    assert orjson.loads(req.body)["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert orjson.loads(req.body)["model"] == "gpt-4o"


def test_stream_usage_null_options_replaced():
    raw = b'{"model":"gpt-4o","messages":[],"stream":true,"stream_options":null}'
    req = provider().chat_request(chat_call(raw, stream=True))
    assert orjson.loads(req.body)["stream_options"] == {"include_usage": True}


def test_stream_passthrough_when_client_asked_or_config_disabled():
    raw = b'{"model":"gpt-4o","messages":[],"stream":true,"stream_options":{"include_usage":true}}'
    assert provider().chat_request(chat_call(raw, stream=True, include_usage=True)).body is raw
    raw2 = b'{"model":"gpt-4o","messages":[],"stream":true}'
    assert provider(stream_usage=False).chat_request(chat_call(raw2, stream=True)).body is raw2


def test_model_probe_without_decoded_request():
    raw = b'{"messages":[],"model":"gpt-4o","n":1}'
    call = ChatCall(raw=raw, upstream_model="gpt-4o", public_model="gpt-4o")
    assert provider().chat_request(call).body is raw
    call.upstream_model = "gpt-4.1"
    assert orjson.loads(provider().chat_request(call).body) == {"messages": [], "model": "gpt-4.1", "n": 1}


def test_completions_and_embeddings_paths():
    p = provider()
    raw = b'{"model":"gpt-3.5-turbo-instruct","prompt":"def f(","suffix":"return x","max_tokens":5}'
    req = p.completion_request(CompletionCall(raw=raw, upstream_model="gpt-3.5-turbo-instruct", public_model="x"))
    assert (req.method, req.path, req.body) == ("POST", "/completions", raw)
    raw = b'{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"base64"}'
    req = p.embeddings_request(EmbeddingCall(raw=raw, upstream_model="text-embedding-3-small", public_model="e"))
    assert (req.method, req.path, req.body, req.stream) == ("POST", "/embeddings", raw, False)


def test_completion_stream_injects_usage():
    raw = b'{"model":"m","prompt":"x","stream":true}'
    req = provider().completion_request(CompletionCall(raw=raw, upstream_model="m", public_model="m", stream=True))
    assert orjson.loads(req.body) == {
        "model": "m",
        "prompt": "x",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_openai_compatible_base_url_and_optional_key():
    p = OpenAICompatibleProvider("vllm", ProviderConfig(type="openai-compatible", base_url="http://gpu:8000/v1/"))
    assert p.endpoints() == ["http://gpu:8000/v1"]
    assert p.type == "openai-compatible" and p.id == "vllm"
    req = p.chat_request(chat_call(b'{"model":"gpt-4o","messages":[]}'))
    assert req.headers == [("Content-Type", "application/json")]
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatibleProvider("x", ProviderConfig())


# ---- results ----------------------------------------------------------------------------------------


def test_result_body_untouched_usage_extracted():
    body = (
        b'{"id":"chatcmpl-B9","object":"chat.completion","created":1741569952,"model":"gpt-5.4",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null},'
        b'"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":82,"completion_tokens":17,'
        b'"total_tokens":99,"prompt_tokens_details":{"cached_tokens":64},'
        b'"completion_tokens_details":{"reasoning_tokens":5}}}'
    )
    result = provider().chat_result(chat_call(b'{"model":"gpt-4o","messages":[]}'), body)
    assert result.body is body
    assert result.usage == Usage(82, 17, 99, cached_tokens=64, reasoning_tokens=5)


def test_result_without_usage_and_invalid_json():
    p = provider()
    call = EmbeddingCall(raw=b"{}", upstream_model="e", public_model="e")
    assert p.embeddings_result(call, b'{"object":"list","data":[]}').usage is None
    with pytest.raises(OmenError) as exc:
        p.embeddings_result(call, b"<html>oops")
    assert exc.value.status == 502 and "<html>oops" in exc.value.message


# ---- streams ----------------------------------------------------------------------------------------


def expected(include_usage: bool) -> list:
    # Without include_usage OMEN asked the upstream for usage itself, so it removes the "usage":null
    # member OpenAI then adds to every chunk: the client gets what it would have got without OMEN.
    chunks = [Chunk(p if include_usage else p.replace(b',"usage":null', b"")) for p in PAYLOADS]
    if include_usage:
        chunks.append(Chunk(USAGE_PAYLOAD))
    return [*chunks, StreamUsage(USAGE), StreamEnd()]


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_whole(include_usage):
    assert run(stream_of(provider(), include_usage), [STREAM]) == expected(include_usage)


def test_stream_payload_bytes_are_the_upstream_bytes():
    events = run(stream_of(provider(), True), [STREAM])
    assert [e.data for e in events if isinstance(e, Chunk)] == [*PAYLOADS, USAGE_PAYLOAD]


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_every_two_way_split(include_usage):
    make = stream_of(provider(), include_usage)
    want = expected(include_usage)
    for i in range(len(STREAM) + 1):
        assert run(make, [STREAM[:i], STREAM[i:]]) == want, i


def test_stream_byte_by_byte_and_crlf():
    make = stream_of(provider(), False)
    assert run(make, [STREAM[i : i + 1] for i in range(len(STREAM))]) == expected(False)
    crlf = STREAM.replace(b"\n", b"\r\n")
    assert run(make, [crlf[i : i + 1] for i in range(len(crlf))]) == expected(False)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40), usage=st.booleans())
def test_stream_random_splits(cuts, usage):
    points = [0, *sorted(cuts), len(STREAM)]
    pieces = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert run(stream_of(provider(), usage), pieces) == expected(usage)


def test_stream_keepalives_comments_and_event_name():
    data = b": ping\n\ndata:\n\nevent: message\ndata: " + PAYLOADS[1] + b"\n\ndata: [DONE]\n\n"
    assert run(stream_of(provider(), True), [data]) == [Chunk(PAYLOADS[1]), StreamEnd()]


def test_stream_ignores_bytes_after_done():
    make = stream_of(provider(), False)
    t = make()
    assert t.feed(b"data: [DONE]\n\ndata: " + PAYLOADS[0] + b"\n\n") == [StreamEnd()]
    assert t.feed(b"data: garbage\n\n") == []
    assert t.close() == []


def test_stream_error_payload():
    err = b'{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}'
    data = b"data: " + PAYLOADS[0] + b"\n\ndata: " + err + b"\n\ndata: " + PAYLOADS[1] + b"\n\n"
    events = run(stream_of(provider(), True), [data])
    assert events == [Chunk(PAYLOADS[0]), ("error", 502, "The server had an error", "server_error", None, None)]


def test_stream_error_status_hint_and_named_event():
    vllm = b'{"error":{"object":"error","message":"too long","type":"BadRequestError","param":null,"code":400}}'
    assert run(stream_of(provider(), False), [b"data: " + vllm + b"\n\n"]) == [
        ("error", 400, "too long", "BadRequestError", None, None)
    ]
    named = b'event: error\ndata: {"message":"overloaded","type":"overloaded_error"}\n\n'
    assert run(stream_of(provider(), False), [named]) == [("error", 502, "overloaded", "overloaded_error", None, None)]


def test_error_word_in_content_is_not_an_error():
    payload = b'{"id":"c","choices":[{"index":0,"delta":{"content":"error"},"finish_reason":null}]}'
    data = b"data: " + payload + b"\n\ndata: [DONE]\n\n"
    assert run(stream_of(provider(), False), [data]) == [Chunk(payload), StreamEnd()]


def test_stream_truncated():
    events = run(stream_of(provider(), False), [STREAM[: STREAM.index(b"data: [DONE]")]])
    assert events[:-1] == expected(False)[:-1]
    assert events[-1][:2] == ("error", 502) and "early" in events[-1][2]
    cut = run(stream_of(provider(), False), [b"data: " + PAYLOADS[0][:20]])
    assert len(cut) == 1 and cut[0][0] == "error" and "middle of an event" in cut[0][2]


def test_usage_with_spaces_detected_and_null_usage_not_decoded():
    spaced = b'{"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}'
    assert has_usage_object(spaced)
    assert not has_usage_object(b'{"usage": null, "content": "usage"}')
    assert not has_usage_object(b'{"delta":{"content":"\\"usage\\":{"}}')
    events = run(stream_of(provider(), False), [b"data: " + spaced + b"\n\ndata: [DONE]\n\n"])
    assert events == [StreamUsage(Usage(3, 4, 7)), StreamEnd()]


def test_repeated_cumulative_usage_is_reported_once():
    def payload(n: int) -> bytes:
        return (
            b'{"id":"c","choices":[{"index":0,"delta":{"content":"x"}}],'
            b'"usage":{"prompt_tokens":5,"completion_tokens":%d,"total_tokens":%d}}' % (n, 5 + n)
        )

    data = b"".join(b"data: " + payload(n) + b"\n\n" for n in (1, 2, 3)) + b"data: [DONE]\n\n"
    events = run(stream_of(provider(), False), [data])
    assert events == [Chunk(payload(1)), Chunk(payload(2)), Chunk(payload(3)), StreamUsage(Usage(5, 3, 8)), StreamEnd()]
    truncated = run(stream_of(provider(), False), [data[: data.index(b"data: [DONE]")]])
    assert truncated[3] == StreamUsage(Usage(5, 3, 8)) and truncated[4][0] == "error"


def test_usage_on_a_chunk_with_choices_is_kept():
    payload = (
        b'{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}'
    )
    events = run(stream_of(provider(), False), [b"data: " + payload + b"\n\ndata: [DONE]\n\n"])
    assert events == [Chunk(payload), StreamUsage(Usage(1, 2, 3)), StreamEnd()]


# ---- errors -----------------------------------------------------------------------------------------


def test_error_openai_shape_kept_with_retry_headers():
    body = (
        b'{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,'
        b'"code":"rate_limit_exceeded"}}'
    )
    headers = [("Retry-After", "7"), ("retry-after-ms", "6500"), ("x-request-id", "r1")]
    err = provider().error(429, headers, body)
    assert (err.status, err.message, err.type, err.code, err.param) == (
        429,
        "Rate limit reached for requests",
        "requests",
        "rate_limit_exceeded",
        None,
    )
    assert err.headers == {"retry-after": "7", "retry-after-ms": "6500"}
    assert err.body() == {
        "error": {
            "message": "Rate limit reached for requests",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


def test_error_keeps_param_and_fills_type():
    body = b'{"error":{"message":"Invalid value","param":"messages[0].role","code":"invalid_value"}}'
    err = provider().error(400, [("retry-after", "1")], body)
    assert (err.status, err.type, err.param, err.code, err.headers) == (
        400,
        "invalid_request_error",
        "messages[0].role",
        "invalid_value",
        {},
    )


def test_error_non_json_body_is_truncated_snippet():
    body = b"<html><body>" + b"Bad gateway " * 100 + b"</body></html>"
    err = provider().error(502, [], body)
    assert err.status == 502 and err.type == "server_error"
    assert "HTTP 502" in err.message and "<html><body>Bad gateway" in err.message
    assert len(err.message) < 300 and err.message.endswith("…")
    assert "empty body" in provider().error(503, [], b"").message


def test_error_top_level_message_shape():
    err = provider().error(
        404, [], b'{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","code":404}'
    )
    assert (err.status, err.message, err.type, err.code) == (
        404,
        "The model `x` does not exist.",
        "NotFoundError",
        None,
    )
    detail = provider().error(422, [], b'{"detail":[{"loc":["body","model"],"msg":"field required"}]}')
    assert detail.status == 422 and "field required" in detail.message


# ---- models -----------------------------------------------------------------------------------------


def test_models():
    p = provider()
    req = p.models_request()
    assert (req.method, req.path, req.headers, req.body) == (
        "GET",
        "/models",
        [("Authorization", "Bearer sk-test")],
        None,
    )
    body = (
        b'{"object":"list","data":[{"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"system"},'
        b'{"id":"ft:x","object":"model","owned_by":"org","shutdown_date":"2027-01-01"},{"object":"model"}]}'
    )
    models = p.models_result(body)
    assert [(m.id, m.owned_by, m.created, m.extra) for m in models] == [
        ("gpt-4o", "system", 1715367049, {}),
        ("ft:x", "org", 0, {"shutdown_date": "2027-01-01"}),
    ]
    with pytest.raises(OmenError):
        p.models_result(b'{"models":[]}')
