"""``POST /v1/completions`` (legacy text completion, incl. ``suffix`` for fill-in-the-middle)."""

from __future__ import annotations

from typing import Any

import msgspec

from omen.api.chat import StreamOptions


class CompletionRequest(msgspec.Struct, omit_defaults=True):
    model: str
    prompt: str | list[Any] | None = None
    suffix: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logprobs: int | None = None
    echo: bool | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    best_of: int | None = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    user: str | None = None
