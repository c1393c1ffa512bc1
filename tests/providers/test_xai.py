"""xAI adapter: error normalisation, usage-on-every-chunk and the finish_reason "" fix."""

from __future__ import annotations

import itertools

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omen.config.schema import ProviderConfig
from omen.providers.base import ChatCall, Chunk, StreamEnd, StreamError, StreamUsage, Usage
from omen.providers.xai import XAIProvider


def xai() -> XAIProvider:
    return XAIProvider("xai", ProviderConfig(api_key="xai-key"))


def call(include_usage: bool = False) -> ChatCall:
    raw = b'{"model":"grok-4","messages":[{"role":"user","content":"hi"}],"stream":true}'
    return ChatCall(raw=raw, upstream_model="grok-4", public_model="grok", stream=True, include_usage=include_usage)


def chunk(delta: str, n: int, finish: str | None = None, choices: bool = True) -> bytes:
    # shaped like recorded xAI chunks: cumulative usage on every one
    fin = "" if finish is None else f',"finish_reason":"{finish}"'
    ch = f'[{{"index":0,"delta":{delta}{fin}}}]' if choices else "[]"
    return (
        f'{{"id":"e409","object":"chat.completion.chunk","created":1732551988,"model":"grok-4","choices":{ch},'
        f'"usage":{{"prompt_tokens":38,"completion_tokens":{n},"total_tokens":{38 + n},'
        f'"prompt_tokens_details":{{"text_tokens":38,"cached_tokens":0}}}},"system_fingerprint":"fp_6c"}}'
    ).encode()


TEXT = [
    chunk('{"content":"Coca","role":"assistant"}', 1),
    chunk('{"content":"-Cola"}', 2),
    chunk("{}", 2, finish="stop"),
]
TOOL_CALL = chunk(
    '{"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather",'
    '"arguments":"{\\"city\\":\\"Paris\\"}"},"index":0}]}',
    9,
)
TOOL_END = chunk("{}", 9, finish="")
FINAL = chunk("{}", 9, choices=False)


def sse(payloads: list[bytes], done: bool = True) -> bytes:
    return b"".join(b"data: " + p + b"\n\n" for p in payloads) + (b"data: [DONE]\n\n" if done else b"")


def run(make, pieces: list[bytes]) -> list:
    t = make()
    events = []
    for piece in pieces:
        events += t.feed(piece)
    events += t.close()
    return [("error", e.error.status, e.error.message) if isinstance(e, StreamError) else e for e in events]


def test_base_url_and_auth():
    p = xai()
    assert p.endpoints() == ["https://api.x.ai/v1"]
    req = p.chat_request(call(include_usage=True))
    assert req.headers == [("Content-Type", "application/json"), ("Authorization", "Bearer xai-key")]
    assert req.path == "/chat/completions" and req.body == call().raw


def test_usage_reported_once_from_last_chunk():
    data = sse([*TEXT, FINAL])
    events = run(lambda: xai().chat_stream(call()), [data])
    # every chunk with choices reaches the client; the choices-less usage chunk OMEN requested does not
    assert events == [*(Chunk(p) for p in TEXT), StreamUsage(Usage(38, 9, 47)), StreamEnd()]
    events = run(lambda: xai().chat_stream(call(include_usage=True)), [data])
    assert events == [*(Chunk(p) for p in [*TEXT, FINAL]), StreamUsage(Usage(38, 9, 47)), StreamEnd()]


def test_usage_without_final_chunk_uses_latest():
    events = run(lambda: xai().chat_stream(call()), [sse(TEXT)])
    assert events == [*(Chunk(p) for p in TEXT), StreamUsage(Usage(38, 2, 40)), StreamEnd()]


def test_truncated_stream_still_accounts_usage():
    events = run(lambda: xai().chat_stream(call()), [sse(TEXT[:2], done=False)])
    assert events[:3] == [Chunk(TEXT[0]), Chunk(TEXT[1]), StreamUsage(Usage(38, 2, 40))]
    assert events[3][:2] == ("error", 502)


def test_empty_finish_reason_after_tool_calls_is_rewritten():
    events = run(lambda: xai().chat_stream(call()), [sse([TEXT[0], TOOL_CALL, TOOL_END, FINAL])])
    assert events[0] == Chunk(TEXT[0]) and events[1] == Chunk(TOOL_CALL)  # untouched bytes
    fixed = orjson.loads(events[2].data)
    assert fixed == {**orjson.loads(TOOL_END), "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    assert events[3:] == [StreamUsage(Usage(38, 9, 47)), StreamEnd()]


def test_empty_finish_reason_without_tool_calls_is_left_alone():
    odd = chunk("{}", 2, finish="")
    events = run(lambda: xai().chat_stream(call()), [sse([TEXT[0], odd])])
    assert events[:2] == [Chunk(TEXT[0]), Chunk(odd)]


STREAM = sse([TEXT[0], TOOL_CALL, TOOL_END, FINAL])


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_random_splits(cuts):
    make = lambda: xai().chat_stream(call())  # noqa: E731
    points = [0, *sorted(cuts), len(STREAM)]
    assert run(make, [STREAM[a:b] for a, b in itertools.pairwise(points)]) == run(make, [STREAM])


def test_every_split():
    make = lambda: xai().chat_stream(call())  # noqa: E731
    whole = run(make, [STREAM])
    for i in range(len(STREAM) + 1):
        assert run(make, [STREAM[:i], STREAM[i:]]) == whole, i


def test_reasoning_tokens_folded_when_outside_completion():
    body = (
        b'{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,'
        b'"total_tokens":35,"completion_tokens_details":{"reasoning_tokens":20}}}'
    )
    result = xai().chat_result(call(), body)
    assert result.body is body
    assert result.usage == Usage(10, 25, 35, reasoning_tokens=20)
    inside = body.replace(b'"completion_tokens":5', b'"completion_tokens":25')
    assert xai().chat_result(call(), inside).usage == Usage(10, 25, 35, reasoning_tokens=20)


@pytest.mark.parametrize(
    ("status", "body", "want"),
    [
        (
            400,
            b'{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xa***Q6. '
            b'You can obtain an API key from https://console.x.ai."}',
            (401, "authentication_error", "invalid_api_key"),
        ),
        (
            400,
            b'{"code":"Client specified an invalid argument","error":"This model\'s maximum prompt length is '
            b'131072 but the request contains 179111 tokens."}',
            (400, "invalid_request_error", None),
        ),
        (429, b'{"code":429,"error":"You ran out of credits."}', (429, "insufficient_quota", "insufficient_quota")),
        (429, b'{"code":"Too many requests","error":"Rate limited"}', (429, "rate_limit_error", "rate_limit_exceeded")),
    ],
)
def test_error_normalisation(status, body, want):
    err = xai().error(status, [("retry-after", "3")], body)
    assert (err.status, err.type, err.code) == want
    assert err.message == orjson.loads(body)["error"]
    assert set(err.body()["error"]) == {"message", "type", "param", "code"}
