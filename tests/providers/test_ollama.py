"""Ollama native adapter: request mapping, response/stream translation, embeddings, models, errors."""

from __future__ import annotations

import base64
import itertools
import struct

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
    UpstreamRequest,
    Usage,
)
from omen.providers.ollama import OllamaProvider

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()
JSON = [("Content-Type", "application/json")]


def ollama(**cfg: object) -> OllamaProvider:
    counter = itertools.count()
    return OllamaProvider(
        "ollama", ProviderConfig(type="ollama", **cfg), clock=lambda: 1735000000.7, new_id=lambda: f"id{next(counter)}"
    )


def chat(body: dict, *, stream: bool = False, include_usage: bool = False, decoded: bool = True) -> ChatCall:
    raw = orjson.dumps({"model": "llama", **body})
    req = decode_body(raw, ChatCompletionRequest) if decoded else None
    return ChatCall(
        raw=raw,
        upstream_model="llama3.2",
        public_model="llama",
        stream=stream,
        include_usage=include_usage,
        request=req,
    )


def sent(req: UpstreamRequest) -> dict:
    return orjson.loads(req.body)


def run(make, pieces: list[bytes]) -> list:
    t = make()
    events = []
    for piece in pieces:
        events += t.feed(piece)
    events += t.close()
    return [("error", e.error.status, e.error.message) if isinstance(e, StreamError) else e for e in events]


# ---- chat request -----------------------------------------------------------------------------------


def test_chat_request_mapping():
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here? "},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                    {"type": "text", "text": "Thanks"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'},
                    },
                    {"id": "call_8", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_9", "content": "22C"},
            {"role": "tool", "tool_call_id": "call_unknown", "content": [{"type": "text", "text": "?"}]},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "max_tokens": 5,
        "stop": "END",
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.3,
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "user": "ignored",
    }
    req = ollama().chat_request(chat(body))
    assert (req.method, req.path, req.headers, req.stream) == ("POST", "/api/chat", JSON, False)
    assert sent(req) == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Use metric units."},
            {"role": "user", "content": "Weather here? Thanks", "images": [PNG]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},
                    {"function": {"name": "get_time", "arguments": {}}},
                ],
            },
            {"role": "tool", "content": "22C", "tool_name": "get_weather"},
            {"role": "tool", "content": "?"},
        ],
        "stream": False,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "format": "json",
        "options": {
            "temperature": 0.2,
            "top_p": 0.9,
            "seed": 7,
            "presence_penalty": 0.1,
            "frequency_penalty": 0.3,
            "num_predict": 100,
            "stop": ["END"],
        },
    }


def test_chat_request_minimal_stream_schema_and_undecoded_call():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "stop": ["a", "b"],
        "max_tokens": 9,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": "none",
    }
    req = ollama(api_key="ok", headers={"X-A": "1"}).chat_request(chat(body, stream=True, decoded=False))
    assert req.stream is True
    assert req.headers == [*JSON, ("Authorization", "Bearer ok"), ("X-A", "1")]
    assert sent(req) == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,  # explicit: Ollama streams by default
        "format": schema,
        "options": {"num_predict": 9, "stop": ["a", "b"]},
    }


def test_inline_images_and_pipeline_data_uris():
    """Ollama cannot fetch URLs: the provider asks the pipeline for inline images (omen/media) and
    takes the data: URIs it produces (the sniffed type; image/jpg as clients write it)."""
    assert OllamaProvider.inline_images is True
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0 jpeg bytes").decode()
    for url in (f"data:image/jpeg;base64,{jpeg}", f"data:image/jpg;base64,{jpeg}", f"data:IMAGE/PNG;base64,{PNG}"):
        part = {"type": "image_url", "image_url": {"url": url}}
        body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "see"}, part]}]}
        assert sent(ollama().chat_request(chat(body)))["messages"][0]["images"] == [url.partition(",")[2]]


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        # only reachable when the pipeline's fetch step did not run (a translator used on its own)
        ("https://example.com/cat.png", "this image URL was not fetched"),
        ("data:image/png;base64,@@@notbase64", "valid base64"),
        ("data:image/tiff;base64," + PNG, "Unsupported image type 'image/tiff'"),
        ("data:image/png," + PNG, "must be base64-encoded"),
        ("ftp://x/y.png", "must be a data: URI"),
        ("data:image/png;base64,", "valid base64"),
    ],
)
def test_image_errors(url, fragment):
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    with pytest.raises(OmenError) as exc:
        ollama().chat_request(chat(body))
    assert exc.value.status == 400 and fragment in exc.value.message
    assert exc.value.param == "messages[0].content[0].image_url.url"


def test_request_errors():
    p = ollama()
    bad_args = {
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}],
            }
        ]
    }
    with pytest.raises(OmenError, match="JSON object") as exc:
        p.chat_request(chat(bad_args))
    assert exc.value.param == "messages[0].tool_calls[0].function.arguments"
    with pytest.raises(OmenError) as exc:
        p.chat_request(chat({"messages": [{"role": "user", "content": "x"}], "n": 2}))
    assert exc.value.param == "n"
    audio = {
        "messages": [
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}
        ]
    }
    with pytest.raises(OmenError, match="'audio'"):
        p.chat_request(chat(audio))


# ---- chat result ------------------------------------------------------------------------------------


def test_chat_result_text():
    body = (
        b'{"model":"llama3.2","created_at":"2025-07-07T20:22:19Z","message":{"role":"assistant","content":"Hello!"},'
        b'"done_reason":"stop","done":true,"total_duration":1,"prompt_eval_count":26,"eval_count":3}'
    )
    result = ollama().chat_result(chat({"messages": []}), body)
    assert result.usage == Usage(26, 3, 29)
    assert orjson.loads(result.body) == {
        "id": "chatcmpl-id0",
        "object": "chat.completion",
        "created": 1735000000,
        "model": "llama3.2",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 26, "completion_tokens": 3, "total_tokens": 29},
    }


def test_chat_result_tool_calls_and_length():
    body = (
        b'{"model":"llama3.2","message":{"role":"assistant","content":"","thinking":"hmm","tool_calls":['
        b'{"function":{"name":"get_weather","arguments":{"city":"Tokyo"}}},'
        b'{"function":{"index":1,"name":"noop","arguments":{}}}]},"done_reason":"stop","done":true,'
        b'"prompt_eval_count":169,"eval_count":15}'
    )
    out = orjson.loads(ollama().chat_result(chat({"messages": []}), body).body)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "reasoning_content": "hmm",
        "tool_calls": [
            {
                "id": "call_id0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'},
            },
            {"id": "call_id1", "type": "function", "function": {"name": "noop", "arguments": "{}"}},
        ],
    }
    assert out["id"] == "chatcmpl-id2"
    cut = b'{"message":{"content":"abc"},"done":true,"done_reason":"length","eval_count":3}'
    out = orjson.loads(ollama().chat_result(chat({"messages": []}), cut).body)
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 3, "total_tokens": 3}


def test_chat_result_errors():
    with pytest.raises(OmenError) as exc:
        ollama().chat_result(chat({"messages": []}), b'{"error":"out of memory"}')
    assert exc.value.status == 502 and "out of memory" in exc.value.message
    with pytest.raises(OmenError) as exc:
        ollama().chat_result(chat({"messages": []}), b"not json")
    assert exc.value.status == 502


# ---- chat stream ------------------------------------------------------------------------------------

LINES = [
    b'{"model":"llama3.2","created_at":"2025-07-07T20:22:19.1Z","message":{"role":"assistant","content":"It"},"done":false}',
    b'{"model":"llama3.2","created_at":"2025-07-07T20:22:19.1Z","message":{"role":"assistant","content":" is \\"warm\\"."},"done":false}',  # noqa: E501
    b'{"model":"llama3.2","created_at":"2025-07-07T20:22:19.184789Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}',
    b'{"model":"llama3.2","created_at":"2025-07-07T20:22:19.2Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_time","arguments":{"tz":"JST"}}},{"function":{"name":"noop","arguments":{}}}]},"done":false}',
    b'{"model":"llama3.2","created_at":"2025-07-07T20:22:19.19314Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":182242375,"load_duration":41295167,"prompt_eval_count":169,"prompt_eval_duration":24573166,"eval_count":15,"eval_duration":115959084}',
]
STREAM = b"".join(line + b"\n" for line in LINES)
HEAD = b'{"id":"chatcmpl-id0","object":"chat.completion.chunk","created":1735000000,"model":"llama3.2","choices":'


def delta(d: bytes, finish: bytes = b"null") -> Chunk:
    return Chunk(HEAD + b'[{"index":0,"delta":' + d + b',"logprobs":null,"finish_reason":' + finish + b"}]}")


def expected_chat(include_usage: bool) -> list:
    events = [
        delta(b'{"role":"assistant","content":""}'),
        delta(b'{"content":"It"}'),
        delta(b'{"content":" is \\"warm\\"."}'),
        delta(
            b'{"tool_calls":[{"index":0,"id":"call_id1","type":"function",'
            b'"function":{"name":"get_weather","arguments":"{\\"city\\":\\"Tokyo\\"}"}}]}'
        ),
        delta(
            b'{"tool_calls":[{"index":1,"id":"call_id2","type":"function",'
            b'"function":{"name":"get_time","arguments":"{\\"tz\\":\\"JST\\"}"}},'
            b'{"index":2,"id":"call_id3","type":"function","function":{"name":"noop","arguments":"{}"}}]}'
        ),
        delta(b"{}", b'"tool_calls"'),
    ]
    if include_usage:
        events.append(Chunk(HEAD + b'[],"usage":{"prompt_tokens":169,"completion_tokens":15,"total_tokens":184}}'))
    return [*events, StreamUsage(Usage(169, 15, 184)), StreamEnd()]


def chat_stream(include_usage: bool = False):
    return lambda: ollama().chat_stream(chat({"messages": []}, stream=True, include_usage=include_usage))


@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_stream_every_split(include_usage):
    want = expected_chat(include_usage)
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
    assert run(chat_stream(), pieces) == expected_chat(False)


def test_chat_stream_length_and_last_line_without_newline():
    lines = (
        b'{"message":{"content":"a"},"done":false}\n\n'
        b'{"message":{"content":""},"done":true,"done_reason":"length","eval_count":1}'
    )
    events = run(chat_stream(), [lines])
    assert events == [
        delta(b'{"role":"assistant","content":""}'),
        delta(b'{"content":"a"}'),
        delta(b"{}", b'"length"'),
        StreamUsage(Usage(0, 1, 1)),
        StreamEnd(),
    ]


def test_chat_stream_error_line():
    data = LINES[0] + b'\n{"error":"an error was encountered while running the model"}\n' + LINES[1] + b"\n"
    events = run(chat_stream(), [data])
    assert events[:2] == [delta(b'{"role":"assistant","content":""}'), delta(b'{"content":"It"}')]
    assert events[2][:2] == ("error", 502) and "an error was encountered" in events[2][2]
    assert len(events) == 3


def test_chat_stream_truncated_and_garbage():
    events = run(chat_stream(), [STREAM[: STREAM.index(LINES[-1])]])
    assert events[:-1] == expected_chat(False)[:5]
    assert events[-1][:2] == ("error", 502) and "done:true" in events[-1][2]
    events = run(chat_stream(), [b"<html>\n"])
    assert events == [("error", 502, events[0][2])] and "<html>" in events[0][2]


def test_stream_ignores_input_after_done():
    t = chat_stream()()
    assert t.feed(STREAM)[-1] == StreamEnd()
    assert t.feed(LINES[0] + b"\n") == [] and t.close() == []


# ---- legacy completions -----------------------------------------------------------------------------


def completion(body: dict, *, stream: bool = False, include_usage: bool = False) -> CompletionCall:
    raw = orjson.dumps({"model": "coder", **body})
    return CompletionCall(
        raw=raw,
        upstream_model="qwen2.5-coder",
        public_model="coder",
        stream=stream,
        include_usage=include_usage,
        request=decode_body(raw, CompletionRequest),
    )


def test_completion_request_fim():
    body = {
        "prompt": "def add(a, b):\n    ",
        "suffix": "\n\nprint(add(1, 2))",
        "max_tokens": 32,
        "temperature": 0,
        "stop": ["\n\n"],
    }
    req = ollama().completion_request(completion(body, stream=True))
    assert (req.path, req.stream) == ("/api/generate", True)
    assert sent(req) == {
        "model": "qwen2.5-coder",
        "prompt": "def add(a, b):\n    ",
        "stream": True,
        "suffix": "\n\nprint(add(1, 2))",
        "options": {"temperature": 0, "num_predict": 32, "stop": ["\n\n"]},
        "raw": False,
    }
    assert sent(ollama().completion_request(completion({"prompt": ["one"]})))["prompt"] == "one"


@pytest.mark.parametrize(
    ("body", "param"),
    [({"prompt": [1, 2, 3]}, "prompt"), ({"prompt": ["a", "b"]}, "prompt"), ({"prompt": "x", "echo": True}, "echo")],
)
def test_completion_request_errors(body, param):
    with pytest.raises(OmenError) as exc:
        ollama().completion_request(completion(body))
    assert (exc.value.status, exc.value.param) == (400, param)


def test_completion_result():
    body = (
        b'{"model":"qwen2.5-coder","response":"return a + b","done":true,"done_reason":"stop","context":[1,2],'
        b'"prompt_eval_count":12,"eval_count":6}'
    )
    result = ollama().completion_result(completion({"prompt": "x"}), body)
    assert result.usage == Usage(12, 6, 18)
    assert orjson.loads(result.body) == {
        "id": "cmpl-id0",
        "object": "text_completion",
        "created": 1735000000,
        "model": "qwen2.5-coder",
        "choices": [{"text": "return a + b", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }


def test_completion_stream():
    data = (
        b'{"model":"m","response":"return","done":false}\n{"model":"m","response":" a + b","done":false}\n'
        b'{"model":"m","response":"","done":true,"done_reason":"length","prompt_eval_count":4,"eval_count":2}\n'
    )
    head = b'{"id":"cmpl-id0","object":"text_completion","created":1735000000,"model":"qwen2.5-coder","choices":'

    def text(t: bytes, finish: bytes = b"null") -> Chunk:
        return Chunk(head + b'[{"text":' + t + b',"index":0,"logprobs":null,"finish_reason":' + finish + b"}]}")

    want = [
        text(b'"return"'),
        text(b'" a + b"'),
        text(b'""', b'"length"'),
        Chunk(head + b'[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}'),
        StreamUsage(Usage(4, 2, 6)),
        StreamEnd(),
    ]
    make = lambda: ollama().completion_stream(completion({"prompt": "x"}, stream=True, include_usage=True))  # noqa: E731
    for i in range(len(data) + 1):
        assert run(make, [data[:i], data[i:]]) == want, i


# ---- embeddings -------------------------------------------------------------------------------------


def embedding(body: dict) -> EmbeddingCall:
    raw = orjson.dumps({"model": "embed", **body})
    return EmbeddingCall(
        raw=raw, upstream_model="nomic-embed-text", public_model="embed", request=decode_body(raw, EmbeddingRequest)
    )


EMBED = (
    b'{"model":"nomic-embed-text","embeddings":[[0.5,-1.25,3.0],[0.1,0.2,0.3]],"total_duration":1,'
    b'"prompt_eval_count":8}'
)


def test_embeddings_request():
    req = ollama().embeddings_request(embedding({"input": ["a", "b"], "dimensions": 3}))
    assert (req.method, req.path, req.stream) == ("POST", "/api/embed", False)
    assert sent(req) == {"model": "nomic-embed-text", "input": ["a", "b"], "dimensions": 3}
    assert sent(ollama().embeddings_request(embedding({"input": "a"})))["input"] == "a"
    for bad in ([1, 2, 3], [[1, 2]], []):
        with pytest.raises(OmenError) as exc:
            ollama().embeddings_request(embedding({"input": bad}))
        assert (exc.value.status, exc.value.param) == (400, "input")


def test_embeddings_float():
    result = ollama().embeddings_result(embedding({"input": ["a", "b"]}), EMBED)
    assert result.usage == Usage(prompt_tokens=8, total_tokens=8)
    assert orjson.loads(result.body) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.25, 3.0]},
            {"object": "embedding", "index": 1, "embedding": [0.1, 0.2, 0.3]},
        ],
        "model": "nomic-embed-text",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }


def test_embeddings_base64_is_little_endian_float32():
    result = ollama().embeddings_result(embedding({"input": ["a", "b"], "encoding_format": "base64"}), EMBED)
    data = orjson.loads(result.body)["data"]
    assert data[0]["embedding"] == base64.b64encode(struct.pack("<3f", 0.5, -1.25, 3.0)).decode()
    assert struct.unpack("<3f", base64.b64decode(data[1]["embedding"])) == struct.unpack(
        "<3f", struct.pack("<3f", 0.1, 0.2, 0.3)
    )


# ---- models, endpoints, errors ----------------------------------------------------------------------


def test_endpoints():
    assert ollama().endpoints() == ["http://127.0.0.1:11434"]
    p = ollama(endpoints=["http://gpu1:11434/", "http://gpu2:11434/api"])
    assert p.endpoints() == ["http://gpu1:11434", "http://gpu2:11434"]
    assert ollama(base_url="https://ollama.com/").endpoints() == ["https://ollama.com"]


def test_models():
    p = ollama()
    assert p.models_request() == UpstreamRequest("GET", "/api/tags", [])
    body = (
        b'{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","modified_at":"2025-05-04T17:37:44.706015396-07:00",'
        b'"size":2019393189,"digest":"a80c4f17acd5","details":{"family":"llama","parameter_size":"3.2B"}},{"model":"x:1"}]}'
    )
    models = p.models_result(body)
    assert [(m.id, m.owned_by) for m in models] == [("llama3.2:latest", "ollama"), ("x:1", "ollama")]
    assert models[0].created == 1746405464
    assert models[0].extra["size"] == 2019393189 and models[0].extra["details"]["family"] == "llama"
    assert models[1].created == 0
    with pytest.raises(OmenError):
        p.models_result(b"nope")


@pytest.mark.parametrize(
    ("status", "body", "want"),
    [
        (
            404,
            b'{"error":"model \'llama9\' not found, try pulling it first"}',
            ("invalid_request_error", "model_not_found", "model"),
        ),
        (400, b'{"error":"invalid format"}', ("invalid_request_error", None, None)),
        (429, b'{"error":"too many requests"}', ("rate_limit_error", "rate_limit_exceeded", None)),
        (500, b'{"error":"llama runner process has terminated"}', ("server_error", None, None)),
        (502, b'{"error":"cloud model unreachable"}', ("server_error", None, None)),
    ],
)
def test_errors(status, body, want):
    err = ollama().error(status, [("Retry-After", "2")], body)
    assert (err.status, err.type, err.code, err.param) == (status, *want)
    assert err.message == orjson.loads(body)["error"]
    assert err.headers == ({"retry-after": "2"} if status == 429 else {})


def test_error_non_json_404():
    err = ollama().error(404, [], b"404 page not found")
    assert err.status == 404 and err.code is None and "404 page not found" in err.message
