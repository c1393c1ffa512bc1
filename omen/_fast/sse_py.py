"""Pure-Python twin of ``omen._fast.sse``: incremental Server-Sent-Events decoding and encoding.

Decoding follows WHATWG HTML "event stream interpretation" but works on bytes: ``data`` stays raw
UTF-8 so OMEN can relay it without a decode/encode round trip (invalid UTF-8 is kept as is, where a
browser would substitute U+FFFD). ``event`` and ``id`` are decoded with ``errors="replace"``.

Both twins must behave identically; tests/fast/ runs every test against both.
"""

from __future__ import annotations

_BOM = b"\xef\xbb\xbf"


class SSEEvent:
    """One dispatched event. ``retry`` is the reconnection time set inside this event's block, if any."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(
        self, data: bytes = b"", event: str = "message", id: str | None = None, retry: int | None = None
    ) -> None:
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SSEEvent):
            return NotImplemented
        return (self.data, self.event, self.id, self.retry) == (other.data, other.event, other.id, other.retry)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the compiled twin

    def __repr__(self) -> str:
        return f"SSEEvent(data={self.data!r}, event={self.event!r}, id={self.id!r}, retry={self.retry!r})"


class SSEDecoder:
    """Feed raw bytes as they arrive; get back the events completed by them.

    Any split of the byte stream yields the same events. A CR ending one chunk is a complete line
    ending right away (so ``\\r\\r`` dispatches without waiting); a LF starting the next chunk is then
    skipped as the second half of CRLF.
    """

    def __init__(self) -> None:
        self.last_event_id: str = ""  # the spec's "last event ID string" (updated at dispatch)
        self.retry: int | None = None  # latest reconnection time seen on the stream
        self._id: str | None = None  # last event ID buffer; None until an id field is seen
        self._data: list[bytes] = []  # data lines of the current event
        self._event = b""
        self._block_retry: int | None = None
        self._partial: list[bytes] = []  # pieces of an unterminated line
        self._skip_lf = False
        self._bom = b""  # bytes held back while they might still be a BOM
        self._at_start = True

    @property
    def pending(self) -> bool:
        """True if the bytes seen so far end inside an event that ``close()`` would discard."""
        return bool(self._partial or self._data or self._bom)

    def feed(self, data: bytes) -> list[SSEEvent]:
        if type(data) is not bytes:
            data = bytes(data)  # accept bytearray/memoryview; never keep a reference to a mutable buffer
        if self._at_start:
            data = self._bom + data
            if len(data) < 3 and _BOM.startswith(data):
                self._bom = data  # could still become a BOM: wait for more bytes
                return []
            self._bom = b""
            self._at_start = False
            if data.startswith(_BOM):
                data = data[3:]
        if not data:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == 10:
                data = data[1:]
                if not data:
                    return []
        if b"\n" not in data and b"\r" not in data:
            self._partial.append(data)  # no line ending: join later, once (avoids quadratic growth)
            return []
        if self._partial:
            self._partial.append(data)
            data = b"".join(self._partial)
            self._partial = []
        events: list[SSEEvent] = []
        if b"\r" in data:
            lines = data.splitlines(True)  # bytes.splitlines breaks only on \n, \r and \r\n
            last = lines[-1]
            if last[-1] == 13:
                self._skip_lf = True
            tail = b"" if last[-1] in (10, 13) else lines.pop()
            for line in lines:
                self._line(line.rstrip(b"\r\n"), events)
        else:
            lines = data.split(b"\n")
            tail = lines.pop()
            append = self._data.append
            for line in lines:
                if line[:6] == b"data: ":  # the common line, inlined
                    append(line[6:])
                elif line:
                    self._line(line, events)
                else:
                    self._dispatch(events)
                    append = self._data.append  # _dispatch starts a new list
        if tail:
            self._partial.append(tail)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == 58:  # ':' comment
            return
        colon = line.find(b":")
        if colon < 0:
            name, value = line, b""
        else:
            name, value = line[:colon], line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"id" and b"\x00" not in value:
            self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():  # bytes.isdigit: ASCII digits only, False for empty
            self._block_retry = self.retry = int(value)

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._id is not None:
            self.last_event_id = self._id
        if self._data:
            data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
            event = self._event.decode("utf-8", "replace") if self._event else "message"
            events.append(SSEEvent(data, event, self._id, self._block_retry))
            self._data = []
        self._event = b""
        self._block_retry = None

    def close(self) -> list[SSEEvent]:
        """End of stream: an unfinished event is discarded (per spec). Safe to call repeatedly."""
        self._partial = []
        self._data = []
        self._event = b""
        self._block_retry = None
        self._bom = b""
        self._skip_lf = False
        return []


def _check_field(value: str, what: str) -> bytes:
    raw = value.encode("utf-8")
    if b"\n" in raw or b"\r" in raw:
        raise ValueError(f"SSE {what} must not contain a line break")
    return raw


def encode_event(data: bytes, event: str | None = None, id: str | None = None, retry: int | None = None) -> bytes:
    """Serialise one event; multi-line data (\\n, \\r\\n or \\r) becomes several ``data:`` lines."""
    if type(data) is not bytes:
        data = bytes(data)
    out = []
    if event is not None:
        out.append(b"event: " + _check_field(event, "event") + b"\n")
    if id is not None:
        raw = _check_field(id, "id")
        if b"\x00" in raw:
            raise ValueError("SSE id must not contain NUL")
        out.append(b"id: " + raw + b"\n")
    if retry is not None:
        if retry < 0:
            raise ValueError("SSE retry must be >= 0")
        out.append(b"retry: %d\n" % retry)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    for line in data.split(b"\n"):
        out.append(b"data: " + line + b"\n")
    out.append(b"\n")
    return b"".join(out)


def encode_data(data: bytes) -> bytes:
    """Fast path for the common case: one ``data:`` line, default event type."""
    if type(data) is not bytes:
        data = bytes(data)
    if b"\n" in data or b"\r" in data:
        return encode_event(data)
    return b"data: " + data + b"\n\n"


class LineSplitter:
    """Splits a byte stream into lines for NDJSON (e.g. Ollama): on \\n, trailing \\r stripped,
    empty or whitespace-only lines skipped."""

    def __init__(self) -> None:
        self._partial: list[bytes] = []

    @property
    def pending(self) -> bool:
        return bool(self._partial)

    def feed(self, data: bytes) -> list[bytes]:
        if type(data) is not bytes:
            data = bytes(data)
        if b"\n" not in data:
            if data:
                self._partial.append(data)
            return []
        if self._partial:
            self._partial.append(data)
            data = b"".join(self._partial)
            self._partial = []
        lines = data.split(b"\n")
        tail = lines.pop()
        if tail:
            self._partial.append(tail)
        out = []
        for line in lines:
            if line and not line.isspace():
                out.append(line[:-1] if line[-1] == 13 else line)
        return out

    def close(self) -> list[bytes]:
        """The unterminated last line, if it is not blank."""
        line = b"".join(self._partial)
        self._partial = []
        if not line or line.isspace():
            return []
        return [line[:-1] if line[-1] == 13 else line]
