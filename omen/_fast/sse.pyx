# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of ``omen._fast.sse_py`` (same API and behaviour; see that module's docstrings).

Why compiled: every streamed token of every relayed response passes through ``SSEDecoder.feed``.
Lines are found with memchr on the chunk's buffer; the only Python objects created per line are the
field values that survive into an event.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.string cimport memchr, memcmp, memcpy

cdef bytes _BOM = b"\xef\xbb\xbf"


@cython.freelist(64)
cdef class SSEEvent:
    """One dispatched event. ``retry`` is the reconnection time set inside this event's block, if any."""

    cdef public object data
    cdef public object event
    cdef public object id
    cdef public object retry

    def __init__(self, data=b"", event="message", id=None, retry=None):
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def __eq__(self, other):
        if not isinstance(other, SSEEvent):
            return NotImplemented
        cdef SSEEvent o = <SSEEvent>other
        return (self.data, self.event, self.id, self.retry) == (o.data, o.event, o.id, o.retry)

    __hash__ = None  # mutable, like the pure twin

    def __repr__(self):
        return f"SSEEvent(data={self.data!r}, event={self.event!r}, id={self.id!r}, retry={self.retry!r})"


cdef inline bytes _as_bytes(data):
    return data if type(data) is bytes else bytes(data)


cdef class _Carry:
    """An unterminated line carried over to the next feed, in a C buffer (no Python objects)."""

    cdef char* _buf
    cdef Py_ssize_t _blen
    cdef Py_ssize_t _bcap

    def __dealloc__(self):
        PyMem_Free(self._buf)

    cdef int _carry(self, const unsigned char* p, Py_ssize_t n) except -1:
        """Append p[:n] (amortised O(1): the capacity doubles)."""
        cdef Py_ssize_t need = self._blen + n, cap = self._bcap
        cdef char* grown
        if need > cap:
            cap = max(need, 2 * cap, 256)
            grown = <char*>PyMem_Realloc(self._buf, cap)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._bcap = cap
        memcpy(self._buf + self._blen, p, n)
        self._blen = need
        return 0


cdef class SSEDecoder(_Carry):
    """Feed raw bytes as they arrive; get back the events completed by them (any split, same events)."""

    cdef public str last_event_id
    cdef public object retry
    cdef object _id  # last event ID buffer: str, or None until an id field is seen
    cdef list _data
    cdef bytes _event
    cdef object _block_retry
    cdef bint _skip_lf
    cdef bint _at_start
    cdef bytes _bom

    def __init__(self):
        self.last_event_id = ""
        self.retry = None
        self._id = None
        self._data = []
        self._event = b""
        self._block_retry = None
        self._blen = 0
        self._skip_lf = False
        self._at_start = True
        self._bom = b""

    @property
    def pending(self):
        """True if the bytes seen so far end inside an event that ``close()`` would discard."""
        return bool(self._blen or self._data or self._bom)

    def feed(self, data):
        cdef bytes buf = _as_bytes(data)
        if self._at_start:
            buf = self._bom + buf
            if PyBytes_GET_SIZE(buf) < 3 and _BOM.startswith(buf):
                self._bom = buf  # could still become a BOM: wait for more bytes
                return []
            self._bom = b""
            self._at_start = False
            if buf.startswith(_BOM):
                buf = buf[3:]
        cdef list events = []
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t pos = 0, e, line_len
        cdef Py_ssize_t next_lf = -1, next_cr = -1  # cached memchr results; n means "none left"
        cdef const void* hit
        if n == 0:
            return events
        if self._skip_lf:
            self._skip_lf = False
            if p[0] == 10:
                pos = 1
        while pos < n:
            if next_lf < pos:
                hit = memchr(p + pos, 10, n - pos)
                next_lf = n if hit == NULL else <const unsigned char*>hit - p
            if next_cr < pos:
                hit = memchr(p + pos, 13, n - pos)
                next_cr = n if hit == NULL else <const unsigned char*>hit - p
            e = next_lf if next_lf < next_cr else next_cr
            if e == n:
                break
            if self._blen:
                self._carry(p + pos, e - pos)
                line_len = self._blen
                self._blen = 0  # _line never carries, so the buffer stays valid while it reads it
                self._line(<const unsigned char*>self._buf, line_len, events)
            else:
                self._line(p + pos, e - pos, events)
            pos = e + 1
            if p[e] == 13:
                if pos < n:
                    if p[pos] == 10:
                        pos += 1
                else:
                    self._skip_lf = True  # CR ended the chunk: a LF opening the next one is its pair
        if pos < n:
            self._carry(p + pos, n - pos)
        return events

    cdef int _line(self, const unsigned char* s, Py_ssize_t n, list events) except -1:
        cdef Py_ssize_t nlen, v, i
        cdef const void* colon
        if n == 0:
            self._dispatch(events)
            return 0
        if s[0] == 58:  # ':' comment
            return 0
        colon = memchr(s, 58, n)
        if colon == NULL:
            nlen = n
            v = n
        else:
            nlen = <const unsigned char*>colon - s
            v = nlen + 1
            if v < n and s[v] == 32:
                v += 1
        if nlen == 4 and memcmp(s, b"data", 4) == 0:
            self._data.append(PyBytes_FromStringAndSize(<const char*>s + v, n - v))
        elif nlen == 5 and memcmp(s, b"event", 5) == 0:
            self._event = PyBytes_FromStringAndSize(<const char*>s + v, n - v)
        elif nlen == 2 and memcmp(s, b"id", 2) == 0:
            if memchr(s + v, 0, n - v) == NULL:
                self._id = PyBytes_FromStringAndSize(<const char*>s + v, n - v).decode("utf-8", "replace")
        elif nlen == 5 and memcmp(s, b"retry", 5) == 0:
            if v == n:
                return 0
            for i in range(v, n):
                if s[i] < 48 or s[i] > 57:
                    return 0
            self._block_retry = self.retry = int(PyBytes_FromStringAndSize(<const char*>s + v, n - v))
        return 0

    cdef int _dispatch(self, list events) except -1:
        cdef SSEEvent ev
        if self._id is not None:
            self.last_event_id = self._id
        if self._data:
            data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
            event = self._event.decode("utf-8", "replace") if self._event else "message"
            ev = SSEEvent.__new__(SSEEvent)  # skips __init__'s argument parsing
            ev.data = data
            ev.event = event
            ev.id = self._id
            ev.retry = self._block_retry
            events.append(ev)
            self._data = []
        self._event = b""
        self._block_retry = None
        return 0

    def close(self):
        """End of stream: an unfinished event is discarded (per spec). Safe to call repeatedly."""
        self._blen = 0
        self._data = []
        self._event = b""
        self._block_retry = None
        self._bom = b""
        self._skip_lf = False
        return []


cdef bytes _check_field(value, str what):
    cdef bytes raw = value.encode("utf-8")
    if b"\n" in raw or b"\r" in raw:
        raise ValueError(f"SSE {what} must not contain a line break")
    return raw


def encode_event(data, event=None, id=None, retry=None):
    """Serialise one event; multi-line data (\\n, \\r\\n or \\r) becomes several ``data:`` lines."""
    cdef bytes buf = _as_bytes(data)
    cdef list out = []
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
    if b"\r" in buf:
        buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    for line in buf.split(b"\n"):
        out.append(b"data: " + line + b"\n")
    out.append(b"\n")
    return b"".join(out)


def encode_data(data):
    """Fast path for the common case: one ``data:`` line, default event type (one allocation)."""
    cdef bytes buf = _as_bytes(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef const char* p = PyBytes_AS_STRING(buf)
    if memchr(p, 10, n) != NULL or memchr(p, 13, n) != NULL:
        return encode_event(buf)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n + 8)
    cdef char* q = PyBytes_AS_STRING(out)
    memcpy(q, b"data: ", 6)
    memcpy(q + 6, p, n)
    q[n + 6] = 10
    q[n + 7] = 10
    return out


cdef inline bint _blank(const unsigned char* s, Py_ssize_t n) noexcept:
    # ASCII whitespace as bytes.isspace() defines it
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] != 32 and not (9 <= s[i] <= 13):
            return False
    return True


cdef class LineSplitter(_Carry):
    """Splits a byte stream into lines for NDJSON (e.g. Ollama): on \\n, trailing \\r stripped,
    empty or whitespace-only lines skipped."""

    @property
    def pending(self):
        return self._blen > 0

    cdef inline int _emit(self, const unsigned char* s, Py_ssize_t n, list out) except -1:
        if n == 0 or _blank(s, n):
            return 0
        if s[n - 1] == 13:
            n -= 1
        out.append(PyBytes_FromStringAndSize(<const char*>s, n))
        return 0

    def feed(self, data):
        cdef bytes buf = _as_bytes(data)
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t pos = 0, e, line_len
        cdef const void* hit
        cdef list out = []
        while pos < n:
            hit = memchr(p + pos, 10, n - pos)
            if hit == NULL:
                break
            e = <const unsigned char*>hit - p
            if self._blen:
                self._carry(p + pos, e - pos)
                line_len = self._blen
                self._blen = 0
                self._emit(<const unsigned char*>self._buf, line_len, out)
            else:
                self._emit(p + pos, e - pos, out)
            pos = e + 1
        if pos < n:
            self._carry(p + pos, n - pos)
        return out

    def close(self):
        """The unterminated last line, if it is not blank."""
        cdef list out = []
        cdef Py_ssize_t line_len = self._blen
        self._blen = 0
        if line_len:
            self._emit(<const unsigned char*>self._buf, line_len, out)
        return out
