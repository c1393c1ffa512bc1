"""Fake upstream LLM providers (OpenAI, xAI, Azure OpenAI, Ollama) for OMEN's tests and benchmarks.

Real HTTP servers on 127.0.0.1 speaking each provider's wire format, with fault injection.
"""

from .common import Options, count_tokens, echo_text, embedding_vector, split_words
from .faults import Fault
from .upstream import FakeUpstream, RecordedRequest, open_fake_upstream, serve_fake_upstream

__all__ = [
    "FakeUpstream",
    "Fault",
    "Options",
    "RecordedRequest",
    "count_tokens",
    "echo_text",
    "embedding_vector",
    "open_fake_upstream",
    "serve_fake_upstream",
    "split_words",
]
