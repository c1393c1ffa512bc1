"""GigaChat adapter: token flow, request mapping, answer/stream translation (every split), embeddings,
models, errors."""

from __future__ import annotations

import base64
import itertools
import struct
import uuid

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omen.api.chat import ChatCompletionRequest
from omen.api.completions import CompletionRequest
from omen.api.decode import decode_body
from omen.api.embeddings import EmbeddingRequest
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
    Token,
    UpstreamRequest,
    Usage,
)
from omen.providers.gigachat import GigaChatProvider
from omen.providers.gigachat_auth import GigaChatTokenFlow, authorization_key
from omen.providers.gigachat_response import StopFilter

KEY = base64.b64encode(b"id:secret").decode()
RQUID = uuid.UUID("6f0b1291-c7f3-43c6-bb2e-9f3efb2dc98e")
STATE = "77d3fb14-1111-4222-8333-444455556666"
JSON = [("Content-Type", "application/json"), ("Accept", "application/json")]


def giga(**cfg: object) -> GigaChatProvider:
    counter = itertools.count()
    cfg.setdefault("credentials", KEY)
    return GigaChatProvider(
        "gigachat",
        ProviderConfig(type="gigachat", **cfg),
        clock=lambda: 1735000000.7,
        new_id=lambda: f"id{next(counter)}",
    )


def chat(body: dict, *, stream: bool = False, include_usage: bool = False, decoded: bool = True) -> ChatCall:
    raw = orjson.dumps({"model": "giga", **body})
    return ChatCall(
        raw=raw,
        upstream_model="GigaChat-2-Max",
        public_model="giga",
        stream=stream,
        include_usage=include_usage,
        request=decode_body(raw, ChatCompletionRequest) if decoded else None,
    )


def sent(req: UpstreamRequest) -> dict:
    return orjson.loads(req.body)


def bad(body: dict) -> OmenError:
    with pytest.raises(OmenError) as exc:
        giga().chat_request(chat(body))
    assert exc.value.status == 400
    return exc.value


def run(make, pieces: list[bytes]) -> list:
    t = make()
    events = []
    for piece in pieces:
        events += t.feed(piece)
    events += t.close()
    return [("error", e.error.status, e.error.message) if isinstance(e, StreamError) else e for e in events]


# ---- OAuth token flow ---------------------------------------------------------------------------------------


def flow(**kw: object) -> GigaChatTokenFlow:
    return GigaChatTokenFlow("gigachat", KEY, new_uuid=lambda: RQUID, **kw)  # type: ignore[arg-type]


def test_token_request_is_the_documented_exchange():
    f = flow()
    assert f.token_endpoint() == "https://ngw.devices.sberbank.ru:9443"
    assert f.token_request() == UpstreamRequest(
        "POST",
        "/api/v2/oauth",
        [
            ("Authorization", f"Basic {KEY}"),
            ("RqUID", str(RQUID)),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "application/json"),
        ],
        b"scope=GIGACHAT_API_PERS",
    )
    custom = GigaChatTokenFlow("g", KEY, scope="GIGACHAT_API_B2B", auth_url="http://127.0.0.1:9/x/oauth?v=2")
    req = custom.token_request()
    assert custom.token_endpoint() == "http://127.0.0.1:9"
    assert (req.path, req.body) == ("/x/oauth?v=2", b"scope=GIGACHAT_API_B2B")
    assert uuid.UUID(dict(req.headers)["RqUID"]).version == 4
    assert dict(custom.token_request().headers)["RqUID"] != dict(req.headers)["RqUID"]  # fresh per request


def test_authorization_key_forms():
    assert authorization_key(KEY) == KEY
    assert authorization_key(f"  Basic {KEY} ") == KEY
    assert authorization_key("id:secret") == KEY  # client_id:client_secret is encoded


def test_token_result():
    f = flow()
    body = b'{"access_token":"eyJ.tok","expires_at":1706026848841}'
    assert f.token_result(200, [], body, 1706025000.0) == Token("eyJ.tok", 1706026848.841)
    assert f.token_result(200, [], b'{"access_token":"t","expires_at":1706026848}', 0) == Token("t", 1706026848.0)


@pytest.mark.parametrize(
    ("status", "body", "want_status", "code", "fragment"),
    [
        (401, b'{"code":6,"message":"credentials doesn\'t match db data"}', 502, "upstream_authentication_failed",
         "failed (HTTP 401): credentials doesn't match db data. Check the provider's 'credentials'"),
        (400, b'{"code":7,"message":"scope from db not fully includes consumed scope"}', 502,
         "upstream_authentication_failed", "scope from db"),
        (429, b"", 429, "rate_limit_exceeded", "failed (HTTP 429): HTTP 429"),
        (500, b"<html>oops</html>", 502, "upstream_error", "<html>oops</html>"),
        (200, b'{"tok":"x","exp":1}', 502, "upstream_invalid_response", "without 'access_token'"),
        (200, b"not json", 502, "upstream_invalid_response", "not json"),
    ],
)  # fmt: skip
def test_token_errors_name_provider_and_exchange(status, body, want_status, code, fragment):
    with pytest.raises(OmenError) as exc:
        flow().token_result(status, [("Retry-After", "5")], body, 0)
    err = exc.value
    assert (err.status, err.code) == (want_status, code)
    assert "'gigachat'" in err.message and "token exchange" in err.message and fragment in err.message
    assert err.headers == ({"retry-after": "5"} if status == 429 else {})


def test_token_errors_never_echo_the_key():
    body = orjson.dumps({"message": f"bad Authorization: Basic {KEY}"})
    with pytest.raises(OmenError) as exc:
        flow().token_result(401, [], body, 0)
    assert KEY not in exc.value.message and "Basic ***" in exc.value.message


def test_provider_config():
    p = giga()
    assert p.endpoints() == ["https://gigachat.devices.sberbank.ru/api/v1"]
    assert giga(base_url="http://h/api/v1/").endpoints() == ["http://h/api/v1"]
    assert p.token_flow.token_endpoint() == "https://ngw.devices.sberbank.ru:9443"
    assert p.authorize(UpstreamRequest("GET", "/models", []), "https://x/models", "tok") == [
        ("Authorization", "Bearer tok")
    ]
    with pytest.raises(ValueError, match="credentials"):
        GigaChatProvider("g", ProviderConfig(type="gigachat"))
    with pytest.raises(ValueError, match="auth_url"):
        giga(auth_url="ngw.devices.sberbank.ru/api/v2/oauth")


# ---- chat request ----------------------------------------------------------------------------------------


WEATHER = {"name": "get_weather", "description": "d", "parameters": {"type": "object", "properties": {}}}


def test_chat_request_mapping():
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "here?"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{STATE}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"call_{STATE}", "content": "22C"},
            {"role": "system", "content": "Now answer."},
            {"role": "assistant", "content": "ok", "function_call": {"name": "noop", "arguments": ""}},
            {"role": "function", "name": "noop", "content": '{"done":true}'},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "max_tokens": 5,
        "n": 2,
        "seed": 7,
        "user": "ignored",
        "reasoning_effort": "high",
        "tools": [{"type": "function", "function": WEATHER}, {"type": "function", "function": {"name": "noop"}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "repetition_penalty": 1.05,
        "update_interval": 0.5,
        "profanity_check": True,
        "flags": ["no_cache"],
        "function_ranker": {"enabled": False},
    }
    req = giga().chat_request(chat(body))
    assert (req.method, req.path, req.headers, req.stream) == ("POST", "/chat/completions", JSON, False)
    assert sent(req) == {
        "model": "GigaChat-2-Max",
        "messages": [
            {"role": "system", "content": "Be brief.\n\nUse metric units."},
            {"role": "user", "content": "Weather here?"},
            {
                "role": "assistant",
                "content": "",
                "function_call": {"name": "get_weather", "arguments": {"city": "Tokyo"}},
                "functions_state_id": STATE,
            },
            {"role": "function", "name": "get_weather", "content": '"22C"'},
            {"role": "user", "content": "Now answer."},
            {"role": "assistant", "content": "ok", "function_call": {"name": "noop", "arguments": {}}},
            {"role": "function", "name": "noop", "content": '{"done":true}'},
        ],
        "stream": False,
        "functions": [WEATHER, {"name": "noop", "parameters": {"type": "object", "properties": {}}}],
        "function_call": "auto",
        "response_format": {"type": "json_schema", "schema": {"type": "object"}},
        "temperature": 0.2,
        "top_p": 0.9,
        "n": 2,
        "max_tokens": 100,
        "reasoning_effort": "high",
        "repetition_penalty": 1.05,
        "update_interval": 0.5,
        "profanity_check": True,
        "flags": ["no_cache"],
        "function_ranker": {"enabled": False},
    }


def test_chat_request_stream_headers_minimal_and_undecoded():
    p = giga(headers={"X-Client-ID": "omen", "Authorization": "ignored"})
    req = p.chat_request(chat({"messages": [{"role": "user", "content": "hi"}], "temperature": 0}, stream=True))
    assert req.stream is True
    assert req.headers == [
        ("Content-Type", "application/json"),
        ("Accept", "text/event-stream"),
        ("Cache-Control", "no-store"),
        ("X-Client-ID", "omen"),
    ]
    assert sent(req) == {
        "model": "GigaChat-2-Max",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "top_p": 0,  # temperature 0 -> greedy via top_p
    }
    only_system = p.chat_request(chat({"messages": [{"role": "system", "content": "s"}]}, decoded=False))
    assert sent(only_system)["messages"] == [{"role": "system", "content": "s"}]
    assert p.models_request() == UpstreamRequest(
        "GET", "/models", [("Accept", "application/json"), ("X-Client-ID", "omen")]
    )


@pytest.mark.parametrize(
    ("choice", "tools", "want"),
    [
        ("none", [WEATHER], "none"),
        ("auto", [WEATHER], "auto"),
        ({"type": "function", "function": {"name": "get_weather"}}, [WEATHER], {"name": "get_weather"}),
        ("required", [WEATHER], {"name": "get_weather"}),
    ],
)
def test_tool_choice(choice, tools, want):
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": t} for t in tools],
    }
    assert sent(giga().chat_request(chat({**body, "tool_choice": choice})))["function_call"] == want


def test_legacy_functions_request():
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "functions": [WEATHER],
        "function_call": {"name": "get_weather"},
    }
    out = sent(giga().chat_request(chat(body)))
    assert out["functions"] == [WEATHER] and out["function_call"] == {"name": "get_weather"}


def test_parallel_calls_are_replayed_one_per_turn():
    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    body = {
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "both", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "b", "content": "[1]"},
            {"role": "tool", "tool_call_id": "a", "content": "1"},
            {"role": "user", "content": "thanks"},
        ]
    }
    assert sent(giga().chat_request(chat(body)))["messages"] == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "both", "function_call": {"name": "f", "arguments": {"x": 1}}},
        {"role": "function", "name": "f", "content": "1"},
        {"role": "assistant", "content": "", "function_call": {"name": "g", "arguments": {}}},
        {"role": "function", "name": "g", "content": "[1]"},
        {"role": "user", "content": "thanks"},
    ]
    missing = {"messages": body["messages"][:3]}
    assert bad(missing).param == "messages[1].tool_calls[0]"


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
AUDIO = {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}
NOPE = {"name": "nope"}


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, IMAGE]}]},
         "messages[0].content[1]", "uploaded to its /files API"),
        ({"messages": [{"role": "user", "content": [AUDIO]}]}, "messages[0].content[0]", "'audio' content parts"),
        ({"presence_penalty": 0.5}, "presence_penalty", "repetition_penalty"),
        ({"frequency_penalty": 0.5}, "frequency_penalty", "repetition_penalty"),
        ({"logprobs": True}, "logprobs", "log probabilities"),
        ({"logit_bias": {"1": 2}}, "logit_bias", "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities", "modalities"),
        ({"reasoning_effort": "minimal"}, "reasoning_effort", "'low', 'medium' or 'high'"),
        ({"response_format": {"type": "json_object"}}, "response_format", "no JSON mode"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
         "response_format.json_schema.schema", "'schema' object"),
        ({"response_format": {"type": "yaml"}}, "response_format.type", "'yaml'"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]", "'custom' tools"),
        ({"tools": [{"type": "function", "function": WEATHER}], "tool_choice": {"type": "function", "function": NOPE}},
         "tool_choice.function.name", "not among"),
        ({"tools": [{"type": "function", "function": WEATHER}, {"type": "function", "function": {"name": "b"}}],
          "tool_choice": "required"}, "tool_choice", "cannot require"),
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"functions": [WEATHER], "function_call": {"name": "other"}}, "function_call.name", "not among"),
        ({"repetition_penalty": "high"}, "repetition_penalty", "Expected `float | null`"),
        ({"messages": [{"role": "tool", "tool_call_id": "zz", "content": "x"}]}, "messages[0].tool_call_id", "'zz'"),
        ({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]},
         "messages[0].tool_calls[0].function.arguments", "JSON object"),
    ],
)  # fmt: skip
def test_request_errors(body, param, fragment):
    err = bad({"messages": [{"role": "user", "content": "x"}], **body})
    assert err.param == param and fragment in err.message


def test_image_refusal_code():
    err = bad({"messages": [{"role": "user", "content": [IMAGE]}]})
    assert err.code == "unsupported_capability" and "GigaChat" in err.message


def test_completions_are_refused():
    raw = orjson.dumps({"model": "giga", "prompt": "x"})
    call = CompletionCall(
        raw=raw, upstream_model="GigaChat-2", public_model="giga", request=decode_body(raw, CompletionRequest)
    )
    with pytest.raises(OmenError) as exc:
        giga().completion_request(call)
    assert (exc.value.status, exc.value.code) == (400, "unsupported_endpoint")


# ---- chat result ------------------------------------------------------------------------------------------


def test_chat_result_text_with_cached_usage():
    body = (
        b'{"choices":[{"message":{"content":"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82!","role":"assistant",'
        b'"reasoning_content":"hmm"},"index":0,"finish_reason":"stop"}],"created":1706016586,'
        b'"model":"GigaChat-2-Max:2.0.28.2","object":"chat.completion","usage":{"prompt_tokens":18,'
        b'"completion_tokens":4,"total_tokens":22,"precached_prompt_tokens":16,"system_tokens":0}}'
    )
    result = giga().chat_result(chat({"messages": []}), body)
    assert result.usage == Usage(18, 4, 22, cached_tokens=16)
    assert orjson.loads(result.body) == {
        "id": "chatcmpl-id0",
        "object": "chat.completion",
        "created": 1735000000,
        "model": "GigaChat-2-Max",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Привет!", "refusal": None, "reasoning_content": "hmm"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 18,
            "completion_tokens": 4,
            "total_tokens": 22,
            "prompt_tokens_details": {"cached_tokens": 16},
        },
    }


FUNCTION_ANSWER = (
    b'{"choices":[{"message":{"content":"","role":"assistant","function_call":{"name":"fc","arguments":'
    b'{"location":"\xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0","num_days":0}},"functions_state_id":"'
    + STATE.encode()
    + b'"},"index":0,"finish_reason":"function_call"}],"created":1706016586,"model":"GigaChat-funcs",'
    b'"object":"chat.completion","usage":{"prompt_tokens":138,"completion_tokens":21,"total_tokens":159}}'
)


def test_chat_result_function_call():
    out = orjson.loads(giga().chat_result(chat({"messages": []}), FUNCTION_ANSWER).body)
    assert out["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "id": f"call_{STATE}",
                    "type": "function",
                    "function": {"name": "fc", "arguments": '{"location":"Москва","num_days":0}'},
                }
            ],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    no_state = FUNCTION_ANSWER.replace(STATE.encode(), b"not-a-uuid")
    out = orjson.loads(giga().chat_result(chat({"messages": []}), no_state).body)
    assert out["choices"][0]["message"]["tool_calls"][0]["id"] == "call_id1"  # generated (id0 is the completion)
    legacy = chat({"messages": [], "functions": [{"name": "fc"}]})
    out = orjson.loads(giga().chat_result(legacy, FUNCTION_ANSWER).body)
    assert out["choices"][0]["finish_reason"] == "function_call"
    assert out["choices"][0]["message"]["function_call"] == {
        "name": "fc",
        "arguments": '{"location":"Москва","num_days":0}',
    }


@pytest.mark.parametrize(
    ("reason", "want"),
    [("stop", "stop"), ("length", "length"), ("blacklist", "content_filter"), ("error", "stop"), ("new", "stop")],
)
def test_chat_result_finish_reasons(reason, want):
    body = orjson.dumps({"choices": [{"message": {"content": "x"}, "index": 0, "finish_reason": reason}]})
    out = orjson.loads(giga().chat_result(chat({"messages": []}), body).body)
    assert out["choices"][0]["finish_reason"] == want
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_chat_result_stop_sequences():
    body = orjson.dumps({"choices": [{"message": {"content": "one two END three"}, "finish_reason": "length"}]})
    out = orjson.loads(giga().chat_result(chat({"messages": [], "stop": ["two", "END"]}), body).body)
    assert out["choices"][0]["message"]["content"] == "one "
    assert out["choices"][0]["finish_reason"] == "stop"


def test_chat_result_errors():
    with pytest.raises(OmenError) as exc:
        giga().chat_result(chat({"messages": []}), b'{"status":500,"message":"Internal error"}')
    assert exc.value.status == 500 and "Internal error" in exc.value.message
    with pytest.raises(OmenError) as exc:
        giga().chat_result(chat({"messages": []}), b"<html>")
    assert (exc.value.status, exc.value.code) == (502, "upstream_invalid_response")


# ---- chat stream ------------------------------------------------------------------------------------------

EVENTS = [
    b'{"choices":[{"delta":{"content":"\xd0\x9a\xd0\xbe\xd0\xbd\xd0\xb5\xd1\x87\xd0\xbd\xd0\xbe","role":"assistant"},'
    b'"index":0}],"created":1695802242,"model":"GigaChat:v1.2.19.2","object":"chat.completion"}',
    b'{"choices":[{"delta":{"content":" \\"\xd0\xb4\xd0\xb0\\"."},"index":0}],"created":1695802242,'
    b'"model":"GigaChat:v1.2.19.2","object":"chat.completion"}',
    b'{"choices":[{"delta":{"reasoning_content":"think"},"index":0}],"created":1695802242,"model":"m","object":"chat.completion"}',
    b'{"choices":[{"delta":{"role":"assistant","content":"","function_call":{"name":"fc","arguments":{"n":0}},'
    b'"functions_state_id":"' + STATE.encode() + b'"},"index":0,"finish_reason":"function_call"}],"created":1706016586,'
    b'"model":"GigaChat-2-Max","object":"chat.completion","usage":{"prompt_tokens":138,"completion_tokens":21,'
    b'"total_tokens":159,"precached_prompt_tokens":100}}',
]
STREAM = b"".join(b"data: " + e + b"\n\n" for e in EVENTS) + b"data: [DONE]\n\n"
HEAD = b'{"id":"chatcmpl-id0","object":"chat.completion.chunk","created":1735000000,"model":"GigaChat-2-Max","choices":'


def delta(d: bytes, finish: bytes = b"null", index: int = 0) -> Chunk:
    return Chunk(HEAD + b'[{"index":%d,"delta":%b,"logprobs":null,"finish_reason":%b}]}' % (index, d, finish))


def expected_stream(include_usage: bool) -> list:
    usage = Usage(138, 21, 159, cached_tokens=100)
    events = [
        delta(b'{"role":"assistant","content":""}'),
        delta('{"content":"Конечно"}'.encode()),
        delta('{"content":" \\"да\\"."}'.encode()),
        delta(b'{"reasoning_content":"think"}'),
        delta(
            b'{"tool_calls":[{"index":0,"id":"call_' + STATE.encode() + b'","type":"function",'
            b'"function":{"name":"fc","arguments":"{\\"n\\":0}"}}]}'
        ),
        delta(b"{}", b'"tool_calls"'),
    ]
    if include_usage:
        events.append(
            Chunk(
                HEAD + b'[],"usage":{"prompt_tokens":138,"completion_tokens":21,"total_tokens":159,'
                b'"prompt_tokens_details":{"cached_tokens":100}}}'
            )
        )
    return [*events, StreamUsage(usage), StreamEnd()]


def chat_stream(include_usage: bool = False, **body: object):
    return lambda: giga().chat_stream(chat({"messages": [], **body}, stream=True, include_usage=include_usage))


@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_stream_every_split(include_usage):
    want = expected_stream(include_usage)
    assert run(chat_stream(include_usage), [STREAM]) == want
    for i in range(len(STREAM) + 1):
        assert run(chat_stream(include_usage), [STREAM[:i], STREAM[i:]]) == want, i
    assert run(chat_stream(include_usage), [STREAM[i : i + 1] for i in range(len(STREAM))]) == want


def test_chat_stream_chunks_are_valid_openai_json():
    for event in run(chat_stream(True), [STREAM]):
        if isinstance(event, Chunk):
            obj = orjson.loads(event.data)
            assert obj["object"] == "chat.completion.chunk" and obj["id"] == "chatcmpl-id0"


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40), crlf=st.booleans())
def test_chat_stream_random_splits(cuts, crlf):
    data = STREAM.replace(b"\n", b"\r\n") if crlf else STREAM
    points = [0, *sorted(c * len(data) // len(STREAM) for c in cuts), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    assert run(chat_stream(), pieces) == expected_stream(False)


def test_chat_stream_legacy_functions_and_finish_reasons():
    events = run(chat_stream(functions=[{"name": "fc"}]), [STREAM])
    assert delta(b'{"function_call":{"name":"fc","arguments":"{\\"n\\":0}"}}') in events
    assert delta(b"{}", b'"function_call"') in events
    for reason, want in [(b"length", b"length"), (b"blacklist", b"content_filter"), (b"error", b"stop")]:
        data = (
            b'data: {"choices":[{"delta":{"content":"a"},"index":0,"finish_reason":"%b"}]}\n\ndata: [DONE]\n\n' % reason
        )
        assert run(chat_stream(), [data]) == [
            delta(b'{"role":"assistant","content":""}'),
            delta(b'{"content":"a"}'),
            delta(b"{}", b'"' + want + b'"'),
            StreamEnd(),  # no usage reported: none invented
        ]


def text_of(events: list) -> str:
    chunks = [orjson.loads(e.data) for e in events if isinstance(e, Chunk)]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


STOP_STREAM = b"".join(
    b'data: {"choices":[{"delta":{"content":"%b"},"index":0}]}\n\n' % piece
    for piece in (b"alpha be", b"ta ST", b"OP gamma")
) + (
    b'data: {"choices":[{"delta":{"content":""},"index":0,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":2,"completion_tokens":5,"total_tokens":7}}\n\ndata: [DONE]\n\n'
)


def test_chat_stream_stop_sequence_every_split():
    want = [
        delta(b'{"role":"assistant","content":""}'),
        delta(b'{"content":"alpha be"}'),
        delta(b'{"content":"ta "}'),  # "ST" held back: it may start "STOP"
        delta(b"{}", b'"stop"'),  # sent at once; the rest of the upstream answer is dropped
        StreamUsage(Usage(2, 5, 7)),
        StreamEnd(),
    ]
    make = chat_stream(stop="STOP")
    assert run(make, [STOP_STREAM]) == want
    for i in range(len(STOP_STREAM) + 1):
        events = run(make, [STOP_STREAM[:i], STOP_STREAM[i:]])
        assert text_of(events) == "alpha beta " and events[-3:] == want[-3:], i
    # held-back text that never became a stop sequence is released at the end
    events = run(chat_stream(stop="STX"), [STOP_STREAM.replace(b"OP gamma", b"")])
    assert text_of(events) == "alpha beta ST" and delta(b'{"content":"ST"}') in events


def test_chat_stream_several_choices():
    data = (
        b'data: {"choices":[{"delta":{"content":"a"},"index":0},{"delta":{"content":"b"},"index":1}]}\n\n'
        b'data: {"choices":[{"delta":{},"index":1,"finish_reason":"length"},'
        b'{"delta":{},"index":0,"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    assert run(chat_stream(), [data]) == [
        delta(b'{"role":"assistant","content":""}'),
        delta(b'{"content":"a"}'),
        delta(b'{"role":"assistant","content":""}', index=1),
        delta(b'{"content":"b"}', index=1),
        delta(b"{}", b'"length"', index=1),
        delta(b"{}", b'"stop"'),
        StreamEnd(),
    ]


def test_chat_stream_errors():
    head = b"data: " + EVENTS[0] + b"\n\n"
    events = run(chat_stream(), [head + b'data: {"status":503,"message":"overloaded"}\n\n' + STREAM])
    assert events[:2] == expected_stream(False)[:2]
    assert events[2][:2] == ("error", 503) and "overloaded" in events[2][2] and len(events) == 3
    events = run(chat_stream(), [head])
    assert events[-1][:2] == ("error", 502) and "data: [DONE]" in events[-1][2]
    events = run(chat_stream(), [b"data: <html>\n\n"])
    assert events == [("error", 502, events[0][2])] and "<html>" in events[0][2]


def test_chat_stream_done_without_blank_line_and_input_after_done():
    assert run(chat_stream(), [STREAM[:-1]]) == expected_stream(False)
    t = chat_stream()()
    assert t.feed(STREAM)[-1] == StreamEnd()
    assert t.feed(b"data: " + EVENTS[0] + b"\n\n") == [] and t.close() == []


# ---- stop filter --------------------------------------------------------------------------------------------


def test_stop_filter_holds_back_only_possible_starts():
    f = StopFilter(("END", "xyz"))
    assert f.feed("abc E") == "abc "
    assert f.feed("N") == ""
    assert f.feed("x") == "EN"  # "ENx" cannot become "END"; "x" may start "xyz"
    assert f.feed("yq") == "xyq"
    assert f.flush() == ""
    assert f.feed("done END more") == "done " and f.hit and f.feed("more") == ""


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet="abE", max_size=30),
    stops=st.lists(st.text(alphabet="abE", min_size=1, max_size=4), min_size=1, max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=8),
)
def test_stop_filter_streaming_equals_whole(text, stops, cuts):
    f = StopFilter(tuple(stops))
    points = [0, *sorted(min(c, len(text)) for c in cuts), len(text)]
    out = "".join(f.feed(text[a:b]) for a, b in itertools.pairwise(points)) + ("" if f.hit else f.flush())
    assert (out, f.hit) == StopFilter(tuple(stops)).cut(text)


# ---- embeddings, models, errors ------------------------------------------------------------------------------


def embedding(body: dict) -> EmbeddingCall:
    raw = orjson.dumps({"model": "embed", **body})
    return EmbeddingCall(
        raw=raw, upstream_model="Embeddings", public_model="embed", request=decode_body(raw, EmbeddingRequest)
    )


EMBED = (
    b'{"object":"list","model":"Embeddings","data":[{"object":"embedding","embedding":[0.1,0.2,0.3],"index":1,'
    b'"usage":{"prompt_tokens":3}},{"object":"embedding","embedding":[0.5,-1.25,3.0],"index":0,"usage":{"prompt_tokens":8}}]}'
)


def test_embeddings():
    p = giga()
    req = p.embeddings_request(embedding({"input": "a"}))
    assert (req.method, req.path) == ("POST", "/embeddings") and sent(req) == {"model": "Embeddings", "input": ["a"]}
    assert sent(p.embeddings_request(embedding({"input": ["a", "b"]})))["input"] == ["a", "b"]
    result = p.embeddings_result(embedding({"input": ["a", "b"]}), EMBED)
    assert result.usage == Usage(prompt_tokens=11, total_tokens=11)
    assert orjson.loads(result.body) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.25, 3.0]},
            {"object": "embedding", "index": 1, "embedding": [0.1, 0.2, 0.3]},
        ],
        "model": "Embeddings",
        "usage": {"prompt_tokens": 11, "total_tokens": 11},
    }
    b64 = orjson.loads(p.embeddings_result(embedding({"input": "a", "encoding_format": "base64"}), EMBED).body)
    assert b64["data"][0]["embedding"] == base64.b64encode(struct.pack("<3f", 0.5, -1.25, 3.0)).decode()
    for body, param in [
        ({"input": [1, 2]}, "input"),
        ({"input": []}, "input"),
        ({"input": "a", "dimensions": 8}, "dimensions"),
    ]:
        with pytest.raises(OmenError) as exc:
            p.embeddings_request(embedding(body))
        assert (exc.value.status, exc.value.param) == (400, param)
    with pytest.raises(OmenError):
        p.embeddings_result(embedding({"input": "a"}), b'{"data":"x"}')


def test_models():
    body = (
        b'{"data":[{"id":"GigaChat-2","object":"model","owned_by":"salutedevices","type":"chat"},'
        b'{"id":"Embeddings","object":"model","owned_by":"salutedevices"},{"object":"model"}],"object":"list"}'
    )
    models = giga().models_result(body)
    assert [(m.id, m.owned_by, m.extra) for m in models] == [
        ("GigaChat-2", "gigachat", {"type": "chat"}),
        ("Embeddings", "gigachat", {}),
    ]
    with pytest.raises(OmenError):
        giga().models_result(b"nope")


@pytest.mark.parametrize(
    ("status", "body", "want"),
    [
        (400, b'{"status":400,"message":"Invalid params"}', ("invalid_request_error", None, None)),
        (401, b'{"status":401,"message":"Token has expired"}', ("authentication_error", None, None)),
        (403, b'{"status":403,"message":"Permission denied"}', ("permission_error", None, None)),
        (404, b'{"status":404,"message":"No such model"}', ("invalid_request_error", "model_not_found", "model")),
        (404, b'{"status":404,"message":"Not found"}', ("invalid_request_error", None, None)),
        (413, b'{"status":413,"message":"Payload too large"}', ("invalid_request_error", "request_too_large", None)),
        (422, b'{"status":422,"message":"Invalid params"}', ("invalid_request_error", None, None)),
        (429, b'{"status":429,"message":"Too many requests"}', ("rate_limit_error", "rate_limit_exceeded", None)),
        (500, b'{"status":500,"message":"Internal Server Error"}', ("server_error", None, None)),
        (503, b"<html>busy</html>", ("server_error", None, None)),
    ],
)
def test_errors(status, body, want):
    err = giga().error(status, [("Retry-After", "2")], body)
    assert (err.status, err.type, err.code, err.param) == (status, *want)
    assert err.headers == ({"retry-after": "2"} if status in (429, 503) else {})
    message = orjson.loads(body)["message"] if body.startswith(b"{") else "busy"
    assert message in err.message
    if status == 401:
        assert err.message == "Upstream provider 'gigachat' refused OMEN's access token: Token has expired"


def test_chat_stream_function_call_snapshots_and_missing_finish():
    snapshot = b'data: {"choices":[{"delta":{"function_call":{"name":"fc","arguments":%b}},"index":0}]}\n\n'
    data = snapshot % b"{}" + snapshot % b'{"n":1}' + b"data: [DONE]\n\n"
    events = run(chat_stream(), [data])
    assert events == [
        delta(b'{"role":"assistant","content":""}'),
        delta(
            b'{"tool_calls":[{"index":0,"id":"call_id1","type":"function",'
            b'"function":{"name":"fc","arguments":"{\\"n\\":1}"}}]}'
        ),
        StreamEnd(),
    ]
