"""The built-in demo model: answers locally, so a fresh install can be tried with no credentials.

It is clearly labelled (model id ``omen-demo``, ``owned_by: omen-demo`` and ``"demo": true`` in
/v1/models) and streams its reply word by word at a realistic pace (~40 tokens/s), with usage
counted by OMEN's own tokenizer. It never pretends to be a real LLM.
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable

import orjson
import trio

from omen.api.chat import UserMessage, message_text
from omen.config.schema import ProviderConfig
from omen.providers.base import (
    ChatCall,
    Chunk,
    CompletionCall,
    EmbeddingCall,
    ModelInfo,
    Result,
    StreamEnd,
    StreamEvent,
    StreamUsage,
    Usage,
)
from omen.tokens import count_chat
from omen.tokens import count_text as _count_text

_INTRO = (
    "Hello from OMEN's built-in demo model. No LLM provider is configured yet, so this reply is "
    "generated locally by the gateway itself. Set OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, "
    "XAI_API_KEY, GIGACHAT_CREDENTIALS, OLLAMA_HOST, AZURE_OPENAI_API_KEY with AZURE_OPENAI_ENDPOINT or "
    "YC_API_KEY with YC_FOLDER_ID, or write an omen.toml, and restart to reach real "
    "models through the same API."
)


class DemoModel:
    id = "demo"
    type = "demo"
    local = True

    def __init__(
        self,
        *,
        token_interval: float = 0.025,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.config = ProviderConfig(type="demo")
        self._interval = token_interval
        self._clock = clock
        self._random = random.Random(seed)

    def endpoints(self) -> list[str]:
        return []

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id="omen-demo", owned_by="omen-demo", extra={"demo": True})]

    # ---- chat -------------------------------------------------------------------------------------

    def _chat_reply(self, call: ChatCall) -> str:
        asked = ""
        if call.request is not None:
            for message in reversed(call.request.messages):
                if isinstance(message, UserMessage):
                    asked = message_text(message.content)
                    break
        words = len(asked.split())
        echo = f" Your message had {words} word{'s' if words != 1 else ''}." if asked else ""
        return _INTRO + echo

    def _prompt_tokens(self, call: ChatCall) -> int:
        return count_chat(call.request.messages, "gpt-4o") if call.request is not None else 0

    def chat_result(self, call: ChatCall) -> Result:
        text = self._chat_reply(call)
        usage = Usage(self._prompt_tokens(call), _count(text))
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(self._clock()),
            "model": "omen-demo",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage.to_openai(),
        }
        return Result(orjson.dumps(body), usage)

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[list[StreamEvent]]:
        text = self._chat_reply(call)
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(self._clock()),
            "model": "omen-demo",
        }

        def chunk(delta: dict, finish: str | None = None) -> Chunk:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return Chunk(orjson.dumps({**base, "choices": [choice]}))

        yield [chunk({"role": "assistant", "content": ""})]
        for piece in _pieces(text):
            await trio.sleep(self._interval * (0.5 + self._random.random()))
            yield [chunk({"content": piece})]
        usage = Usage(self._prompt_tokens(call), _count(text))
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        events: list[StreamEvent] = [chunk({}, "stop")]
        if call.include_usage:
            events.append(Chunk(orjson.dumps({**base, "choices": [], "usage": usage.to_openai()})))
        events += [StreamUsage(usage), StreamEnd()]
        yield events

    # ---- legacy completions (fill-in-the-middle aware) ------------------------------------------

    def _completion_text(self, call: CompletionCall) -> str:
        request = call.request
        suffix = request.suffix if request is not None else None
        if suffix:
            return " # (omen-demo fills the gap between your prompt and suffix here)\n"
        return " This is a completion from OMEN's built-in demo model."

    def completion_result(self, call: CompletionCall) -> Result:
        text = self._completion_text(call)
        prompt = call.request.prompt if call.request is not None else ""
        usage = Usage(_count(prompt if isinstance(prompt, str) else ""), _count(text))
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        body = {
            "id": f"cmpl-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": int(self._clock()),
            "model": "omen-demo",
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage.to_openai(),
        }
        return Result(orjson.dumps(body), usage)

    async def completion_stream(self, call: CompletionCall) -> AsyncIterator[list[StreamEvent]]:
        result = self.completion_result(call)
        doc = orjson.loads(result.body)
        base = {"id": doc["id"], "object": "text_completion", "created": doc["created"], "model": "omen-demo"}
        for piece in _pieces(doc["choices"][0]["text"]):
            await trio.sleep(self._interval * (0.5 + self._random.random()))
            choice = {"text": piece, "index": 0, "logprobs": None, "finish_reason": None}
            yield [Chunk(orjson.dumps({**base, "choices": [choice]}))]
        final = {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}
        events: list[StreamEvent] = [Chunk(orjson.dumps({**base, "choices": [final]}))]
        assert result.usage is not None
        if call.include_usage:
            events.append(Chunk(orjson.dumps({**base, "choices": [], "usage": result.usage.to_openai()})))
        events += [StreamUsage(result.usage), StreamEnd()]
        yield events

    # ---- embeddings: deterministic unit vectors derived from the text ---------------------------

    def embeddings_result(self, call: EmbeddingCall) -> Result:
        request = call.request
        assert request is not None
        inputs = [request.input] if isinstance(request.input, str) else list(request.input)
        dims = request.dimensions or 16
        data = []
        tokens = 0
        for index, item in enumerate(inputs):
            text = item if isinstance(item, str) else orjson.dumps(item).decode()
            tokens += _count(text)
            vector = _unit_vector(text, dims)
            embedding: object = vector
            if request.encoding_format == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        usage = Usage(tokens, 0, tokens)
        body = {
            "object": "list",
            "model": "omen-demo",
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Result(orjson.dumps(body), usage)


def _count(text: str) -> int:
    return _count_text(text, "gpt-4o")  # the demo bills like an o200k_base model


def _pieces(text: str) -> list[str]:
    """Split text into word-sized deltas the way model streams arrive (leading spaces kept)."""
    words = text.split(" ")
    return [words[0]] + [f" {w}" for w in words[1:]]


def _unit_vector(text: str, dims: int) -> list[float]:
    digest = b""
    counter = 0
    while len(digest) < dims * 4:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    raw = [int.from_bytes(digest[i * 4 : i * 4 + 4], "little") / 2**32 - 0.5 for i in range(dims)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [round(x / norm, 6) for x in raw]
