"""One structured JSON line per request on stderr.

Only metadata is logged: ids, model and provider names, status, timings and token counts. Request
bodies (prompts), API keys and provider secrets never reach this function.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

import orjson


class AccessLog:
    def __init__(self, enabled: bool = True, stream: IO[bytes] | None = None) -> None:
        self.enabled = enabled
        self._stream = stream if stream is not None else sys.stderr.buffer

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"ts": round(time.time(), 3), "level": "info", "event": "request", **record}
        try:
            self._stream.write(orjson.dumps(record) + b"\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken log pipe must not fail requests


def log_event(event: str, level: str = "info", **fields: Any) -> None:
    """A non-request log line (startup, discovery errors...)."""
    record = {"ts": round(time.time(), 3), "level": level, "event": event, "pid": os.getpid(), **fields}
    try:
        sys.stderr.buffer.write(orjson.dumps(record, default=str) + b"\n")
        sys.stderr.buffer.flush()
    except (OSError, ValueError):
        pass


def describe_exception(exc: BaseException) -> str:
    """The innermost exception with its location, unwrapping trio's ExceptionGroups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
        tb = tb.tb_next
    return f"{type(exc).__name__}: {exc}{where}"
