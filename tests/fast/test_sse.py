"""SSE decoder/encoder and NDJSON line splitter, against both twins (fixture ``sse``).

Decoder cases follow WHATWG HTML "9.2.6 Interpreting an event stream", including its examples.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


def ev(sse: ModuleType, data: bytes, event: str = "message", id: str | None = None, retry: int | None = None):
    return sse.SSEEvent(data, event, id, retry)


def as_tuples(events: list) -> list[tuple]:
    # Events of different twins are different classes; compare their fields.
    return [(e.data, e.event, e.id, e.retry) for e in events]


def decode(sse: ModuleType, stream: bytes, sizes: list[int] | None = None) -> list:
    """Events from ``stream`` fed in pieces of the given sizes (whole when None)."""
    d = sse.SSEDecoder()
    if sizes is None:
        return d.feed(stream) + d.close()
    out, pos = [], 0
    for n in sizes:
        out += d.feed(stream[pos : pos + n])
        pos += n
    out += d.feed(stream[pos:])
    return out + d.close()


def decode_all_ways(sse: ModuleType, stream: bytes) -> list:
    """Decode whole, byte by byte and in 2/3-byte pieces; all must agree."""
    whole = decode(sse, stream)
    assert decode(sse, stream, [1] * len(stream)) == whole
    assert decode(sse, stream, [2] * (len(stream) // 2)) == whole
    assert decode(sse, stream, [3] * (len(stream) // 3)) == whole
    return whole


# ---- WHATWG examples ------------------------------------------------------------------------------


def test_spec_example_multiline(sse):
    stream = b"data: YHOO\ndata: +2\ndata: 10\n\n"
    assert decode_all_ways(sse, stream) == [ev(sse, b"YHOO\n+2\n10")]


def test_spec_example_ids_and_unterminated_event(sse):
    stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n"
    assert decode_all_ways(sse, stream) == [ev(sse, b"first event", id="1"), ev(sse, b"second event", id="")]


def test_spec_example_empty_data(sse):
    stream = b"data\n\ndata\ndata\n\ndata:"
    assert decode_all_ways(sse, stream) == [ev(sse, b""), ev(sse, b"\n")]


def test_spec_example_space_after_colon(sse):
    stream = b"data:test\n\ndata: test\n\n"
    assert decode_all_ways(sse, stream) == [ev(sse, b"test"), ev(sse, b"test")]


# ---- line endings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_each_line_ending(sse, eol):
    stream = b"event: add" + eol + b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert decode_all_ways(sse, stream) == [ev(sse, b"a\nb", "add"), ev(sse, b"c")]


def test_mixed_line_endings(sse):
    stream = b"data: a\rdata: b\r\ndata: c\n\r\ndata: d\r\r"
    assert decode_all_ways(sse, stream) == [ev(sse, b"a\nb\nc"), ev(sse, b"d")]


def test_crlf_split_across_chunks_is_one_line_ending(sse):
    d = sse.SSEDecoder()
    assert d.feed(b"data: a\r") == []
    # The LF completes the CRLF begun in the previous chunk: no extra (dispatching) blank line.
    assert d.feed(b"\ndata: b\r") == []
    assert d.feed(b"\n\r") == [ev(sse, b"a\nb")]
    assert d.feed(b"\n") == []  # again the second half of a CRLF, not a blank line
    assert d.feed(b"data: c\n\n") == [ev(sse, b"c")]


def test_cr_at_chunk_end_dispatches_without_waiting(sse):
    d = sse.SSEDecoder()
    assert d.feed(b"data: a\r\r") == [ev(sse, b"a")]
    assert d.feed(b"data: b\r") == []
    assert d.feed(b"\r") == [ev(sse, b"b")]


def test_lf_after_cr_only_skipped_once(sse):
    d = sse.SSEDecoder()
    assert d.feed(b"data: a\r") == []
    assert d.feed(b"") == []  # an empty chunk must not forget the pending CR
    assert d.feed(b"\n") == []
    assert d.feed(b"\n") == [ev(sse, b"a")]


# ---- BOM ------------------------------------------------------------------------------------------


def test_leading_bom_stripped(sse):
    assert decode_all_ways(sse, b"\xef\xbb\xbfdata: a\n\n") == [ev(sse, b"a")]


def test_bom_split_across_chunks(sse):
    d = sse.SSEDecoder()
    assert d.feed(b"\xef") == []
    assert d.pending
    assert d.feed(b"\xbb") == []
    assert d.feed(b"\xbfdata: a\n\n") == [ev(sse, b"a")]


def test_only_first_bom_stripped(sse):
    # A second BOM is part of the field name "\ufeffdata", an unknown field.
    assert decode_all_ways(sse, b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n") == [ev(sse, b"b")]


def test_bom_later_in_stream_not_stripped(sse):
    assert decode_all_ways(sse, b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == [ev(sse, b"a")]


def test_partial_bom_prefix_then_other_bytes(sse):
    # b"\xef" followed by something that is not the BOM is kept as data bytes.
    assert decode_all_ways(sse, b"\xefdata: a\n\ndata: \xef\n\n") == [ev(sse, b"\xef")]
    d = sse.SSEDecoder()
    assert d.feed(b"\xef\xbb") == []
    assert d.feed(b"x\ndata: y\n\n") == [ev(sse, b"y")]


# ---- fields ---------------------------------------------------------------------------------------


def test_comments_ignored(sse):
    stream = b": hello\n:\n:data: no\ndata: yes\n: between\n\n"
    assert decode_all_ways(sse, stream) == [ev(sse, b"yes")]


def test_only_one_space_stripped(sse):
    assert decode_all_ways(sse, b"data:  two\n\n") == [ev(sse, b" two")]
    assert decode_all_ways(sse, b"data:\tx\n\n") == [ev(sse, b"\tx")]
    assert decode_all_ways(sse, b"data: \n\n") == [ev(sse, b"")]
    assert decode_all_ways(sse, b"data: a:b: c\n\n") == [ev(sse, b"a:b: c")]


def test_field_without_colon(sse):
    assert decode_all_ways(sse, b"event\ndata\n\n") == [ev(sse, b"")]
    assert decode_all_ways(sse, b"data: a\nid\n\n") == [ev(sse, b"a", id="")]


def test_unknown_and_case_sensitive_fields_ignored(sse):
    assert decode_all_ways(sse, b"Data: x\nDATA: y\nfoo: z\ndata : w\n\n") == []
    assert decode_all_ways(sse, b"Event: x\ndata: y\n\n") == [ev(sse, b"y")]


def test_event_type(sse):
    stream = b"event: delta\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\nevent: a\nevent: b\ndata: 4\n\n"
    assert decode_all_ways(sse, stream) == [ev(sse, b"1", "delta"), ev(sse, b"2"), ev(sse, b"3"), ev(sse, b"4", "b")]


def test_empty_data_not_dispatched_but_event_type_reset(sse):
    stream = b"event: foo\n\ndata: x\n\nevent: bar\nid: 3\n\ndata: y\n\n"
    assert decode_all_ways(sse, stream) == [ev(sse, b"x"), ev(sse, b"y", id="3")]


def test_id_persists_and_updates_at_dispatch(sse):
    d = sse.SSEDecoder()
    assert d.last_event_id == ""
    assert d.feed(b"id: 1\ndata: a\n\n") == [ev(sse, b"a", id="1")]
    assert d.last_event_id == "1"
    assert d.feed(b"data: b\n\n") == [ev(sse, b"b", id="1")]
    assert d.feed(b"id: 2\n") == []
    assert d.last_event_id == "1"  # the buffer becomes the last event ID only at dispatch
    assert d.feed(b"\n") == []  # no data: nothing dispatched, but the id is taken
    assert d.last_event_id == "2"
    assert d.feed(b"id:\ndata: c\n\n") == [ev(sse, b"c", id="")]
    assert d.last_event_id == ""


def test_id_with_nul_ignored(sse):
    stream = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"
    assert decode_all_ways(sse, stream) == [ev(sse, b"a", id="1"), ev(sse, b"b", id="1")]


def test_id_and_event_decoded_with_replacement(sse):
    events = decode_all_ways(sse, b"id: \xff1\nevent: \xe2\x82\xac\xfe\ndata: \xff\xfe raw\n\n")
    assert events == [ev(sse, b"\xff\xfe raw", "\u20ac\ufffd", "\ufffd1")]


def test_retry(sse):
    d = sse.SSEDecoder()
    assert d.retry is None
    assert d.feed(b"retry: 1500\ndata: a\n\n") == [ev(sse, b"a", retry=1500)]
    assert d.retry == 1500
    assert d.feed(b"data: b\n\n") == [ev(sse, b"b")]  # retry belongs to the block that set it
    for bad in (b"retry: 10a", b"retry:", b"retry: ", b"retry: -1", b"retry:  10", b"retry: 1.5", b"retry: \xd9\xa3"):
        assert d.feed(bad + b"\ndata: x\n\n") == [ev(sse, b"x")], bad
    assert d.retry == 1500
    assert d.feed(b"retry: 7\n\n") == []  # a retry-only block still sets the reconnection time
    assert d.retry == 7
    assert d.feed(b"retry:0\ndata: y\n\n") == [ev(sse, b"y", retry=0)]


def test_large_retry(sse):
    assert decode(sse, b"retry: 123456789012345678901234567890\ndata: x\n\n")[0].retry == 123456789012345678901234567890


# ---- stream state ---------------------------------------------------------------------------------


def test_pending_and_close(sse):
    d = sse.SSEDecoder()
    assert not d.pending
    d.feed(b": keep-alive\n")
    assert not d.pending
    d.feed(b"data: x")
    assert d.pending  # inside a line
    d.feed(b"\n")
    assert d.pending  # data line without its dispatching blank line
    assert d.feed(b"\n") == [ev(sse, b"x")]
    assert not d.pending
    d.feed(b"data: trunc\n")
    assert d.pending
    assert d.close() == []  # the incomplete event is discarded
    assert not d.pending
    assert d.close() == []  # idempotent


def test_many_events_in_one_chunk(sse):
    stream = b"".join(b'data: {"i": %d}\n\n' % i for i in range(1000))
    events = decode(sse, stream)
    assert [e.data for e in events] == [b'{"i": %d}' % i for i in range(1000)]


def test_long_line_in_tiny_chunks(sse):
    payload = b"x" * 100_000
    assert decode(sse, b"data: " + payload + b"\n\n", [7] * 15_000) == [ev(sse, payload)]


def test_accepts_bytearray_and_memoryview(sse):
    d = sse.SSEDecoder()
    buf = bytearray(b"data: a")
    assert d.feed(buf) == []
    buf[:] = b"XXXXXXX"  # the decoder must not keep a reference to the caller's buffer
    assert d.feed(memoryview(b"\n\n")) == [ev(sse, b"a")]


def test_event_object(sse):
    e = sse.SSEEvent()
    assert (e.data, e.event, e.id, e.retry) == (b"", "message", None, None)
    e2 = sse.SSEEvent(b"x", "t", "1", 5)
    assert repr(e2) == "SSEEvent(data=b'x', event='t', id='1', retry=5)"
    assert e2 == sse.SSEEvent(b"x", "t", "1", 5)
    assert e2 != sse.SSEEvent(b"x", "t", "1", None)
    assert e2 != (b"x", "t", "1", 5)
    with pytest.raises(TypeError):
        hash(e2)


# ---- encoding -------------------------------------------------------------------------------------


def test_encode_event(sse):
    assert sse.encode_event(b"hi") == b"data: hi\n\n"
    assert sse.encode_event(b"a\nb\r\nc\rd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"
    assert sse.encode_event(b"x", event="e", id="7", retry=30) == b"event: e\nid: 7\nretry: 30\ndata: x\n\n"
    assert sse.encode_event(b"") == b"data: \n\n"
    assert sse.encode_event(b"a\n") == b"data: a\ndata: \n\n"
    assert sse.encode_event(b"[DONE]") == b"data: [DONE]\n\n"


@pytest.mark.parametrize(
    "kwargs", [{"event": "a\nb"}, {"event": "a\rb"}, {"id": "1\n"}, {"id": "1\x002"}, {"retry": -1}]
)
def test_encode_event_rejects_unframeable_fields(sse, kwargs):
    with pytest.raises(ValueError):
        sse.encode_event(b"x", **kwargs)


def test_encode_data(sse):
    assert sse.encode_data(b'{"a": 1}') == b'data: {"a": 1}\n\n'
    assert sse.encode_data(b"") == b"data: \n\n"
    assert sse.encode_data(b"a\nb") == sse.encode_event(b"a\nb")
    assert sse.encode_data(b"a\rb") == sse.encode_event(b"a\rb")
    assert sse.encode_data(bytearray(b"z")) == b"data: z\n\n"


def test_round_trip_examples(sse):
    for data in (b"", b"x", b"a\nb", b"\n", b"\n\n", b" lead", b":colon", b"\xff\x00"):
        events = decode_all_ways(sse, sse.encode_event(data, event="t", id="i", retry=3))
        assert events == [ev(sse, data, "t", "i", 3)]


# ---- LineSplitter ---------------------------------------------------------------------------------


def split_lines(sse: ModuleType, stream: bytes, sizes: list[int] | None = None) -> list[bytes]:
    s = sse.LineSplitter()
    if sizes is None:
        return s.feed(stream) + s.close()
    out, pos = [], 0
    for n in sizes:
        out += s.feed(stream[pos : pos + n])
        pos += n
    return out + s.feed(stream[pos:]) + s.close()


def test_line_splitter(sse):
    stream = b'{"a":1}\n{"b":2}\r\n\n  \n\t\r\n\r\n{"c":"x\ry"} \n{"d":4}'
    expected = [b'{"a":1}', b'{"b":2}', b'{"c":"x\ry"} ', b'{"d":4}']
    assert split_lines(sse, stream) == expected
    assert split_lines(sse, stream, [1] * len(stream)) == expected


def test_line_splitter_crlf_split_and_close(sse):
    s = sse.LineSplitter()
    assert s.feed(b"ab\r") == []
    assert s.pending
    assert s.feed(b"\ncd") == [b"ab"]
    assert s.close() == [b"cd"]
    assert not s.pending
    assert s.close() == []
    assert s.feed(b"   ") == []
    assert s.close() == []  # a blank unterminated tail is skipped too
    assert s.feed(b"x\r") == []
    assert s.close() == [b"x"]


def test_line_splitter_keeps_inner_whitespace(sse):
    assert split_lines(sse, b"  x  \n") == [b"  x  "]
    assert split_lines(sse, b"\x0b\x0c\n") == []


# ---- properties -----------------------------------------------------------------------------------

_SSE_ATOMS = [
    b"data", b"data:", b"data: ", b"event:", b"event: ", b"id:", b"id: ", b"retry:", b"retry: ", b":",
    b"\n", b"\r", b"\r\n", b"\n\n", b" ", b"x", b"12", b"\x00", b"\xef\xbb\xbf", b"\xef", b"\xff",
    b'{"choices":[{"delta":{"content":"hi"}}]}', b"[DONE]",
]  # fmt: skip
sse_streams = st.lists(st.sampled_from(_SSE_ATOMS) | st.binary(max_size=4), max_size=60).map(b"".join)


@st.composite
def stream_and_sizes(draw):
    stream = draw(sse_streams)
    sizes = draw(st.lists(st.integers(0, max(1, len(stream))), max_size=20))
    return stream, sizes


def decoder_state(sse: ModuleType, stream: bytes, sizes: list[int]) -> tuple:
    d = sse.SSEDecoder()
    events, pos = [], 0
    for n in sizes:
        events += d.feed(stream[pos : pos + n])
        pos += n
    events += d.feed(stream[pos:])
    return as_tuples(events), d.last_event_id, d.retry, d.pending


@settings(max_examples=400, deadline=None)
@given(stream_and_sizes())
def test_property_any_split_gives_same_events(sse, case):
    stream, sizes = case
    assert decoder_state(sse, stream, sizes) == decoder_state(sse, stream, [])


@settings(max_examples=400, deadline=None)
@given(stream_and_sizes())
def test_property_twins_agree(both_sse, case):
    compiled, pure = both_sse
    stream, sizes = case
    assert decoder_state(compiled, stream, sizes) == decoder_state(pure, stream, sizes)
    assert split_lines(compiled, stream, sizes) == split_lines(pure, stream, sizes)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200),
    st.none() | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=10),
    st.none() | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=10),
    st.none() | st.integers(0, 10**12),
    st.lists(st.integers(1, 50), max_size=10),
)
def test_property_round_trip(sse, data, event, id, retry, sizes):
    stream = sse.encode_event(data, event, id, retry)
    normalized = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    expected_event = event if event else "message"
    # Surrogates in str fields cannot be UTF-8 encoded; hypothesis' default text excludes them.
    expected = [(normalized, expected_event, id, retry)]
    assert as_tuples(decode(sse, stream, sizes)) == expected
    if b"\n" not in data and b"\r" not in data:
        assert sse.encode_data(data) == sse.encode_event(data)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b" ", b"\t", b"{}", b'{"a":1}', b"x"]), max_size=40).map(b"".join),
    st.lists(st.integers(0, 30), max_size=10),
)
def test_property_line_splitter_matches_split(sse, stream, sizes):
    expected = [
        line[:-1] if line.endswith(b"\r") else line for line in stream.split(b"\n") if line and not line.isspace()
    ]
    assert split_lines(sse, stream, sizes) == expected


def test_unencodable_field_is_refused_by_both_twins(sse) -> None:
    # A lone surrogate cannot be written as UTF-8; both twins refuse it the same way.
    with pytest.raises(UnicodeEncodeError):
        sse.encode_event(b"x", id="\ud800")
    with pytest.raises(UnicodeEncodeError):
        sse.encode_event(b"x", event="\udfff")
