"""The built-in catalog: well-known models per provider family.

Values come from the providers' model and pricing pages (standard tier, USD per 1M tokens; where a
provider charges more above a prompt-size threshold — Gemini 2.5 Pro above 200k tokens — the base
tier is listed). Whatever could not be confirmed is ``None`` (unknown) rather than a guess, because an
unknown capability never blocks a request while a wrong ``False`` or a too-low ``max_output`` would.
For the same reason ``max_output`` is the largest a model accepts (Claude 3.7 Sonnet: 128k with the
extended-output beta). Operators correct or extend entries with ``[models."x"] capabilities`` and
``pricing`` in omen.toml.

Prices of GigaChat and YandexGPT are billed in roubles per token package and Ollama runs locally, so
their pricing is unknown here; JSON mode is marked for Ollama models because Ollama's ``format``
works with any model.
"""

from __future__ import annotations

from omen.catalog.capabilities import Capabilities, Pricing

_ = None  # "unknown", to keep the table readable


def _m(
    vision: bool | None,
    tools: bool | None,
    json_mode: bool | None,
    context: int | None,
    max_output: int | None,
    price: tuple[float | None, float | None, float | None] | None = None,
) -> Capabilities:
    """``price`` is (input, output, cached input), USD per 1M tokens."""
    return Capabilities(
        vision=vision,
        tools=tools,
        json_mode=json_mode,
        context_window=context,
        max_output_tokens=max_output,
        pricing=Pricing(*price) if price else None,
    )


_OPENAI: dict[str, Capabilities] = {
    #                      vision tools json  context    max out   (input, output, cached)
    "gpt-5": _m(True, True, True, 400_000, 128_000, (1.25, 10.0, 0.125)),
    "gpt-5-mini": _m(True, True, True, 400_000, 128_000, (0.25, 2.0, 0.025)),
    "gpt-5-nano": _m(True, True, True, 400_000, 128_000, (0.05, 0.40, 0.005)),
    "gpt-5-pro": _m(True, True, True, 400_000, _, (15.0, 120.0, _)),
    "gpt-5.1": _m(True, True, True, 400_000, 128_000, (1.25, 10.0, 0.125)),
    "gpt-5.2": _m(True, True, True, 400_000, 128_000, (1.75, 14.0, 0.175)),
    "gpt-4.1": _m(True, True, True, 1_047_576, 32_768, (2.0, 8.0, 0.50)),
    "gpt-4.1-mini": _m(True, True, True, 1_047_576, 32_768, (0.40, 1.60, 0.10)),
    "gpt-4.1-nano": _m(True, True, True, 1_047_576, 32_768, (0.10, 0.40, 0.025)),
    "gpt-4o": _m(True, True, True, 128_000, 16_384, (2.50, 10.0, 1.25)),
    "gpt-4o-2024-05-13": _m(True, True, True, 128_000, 4_096, (5.0, 15.0, _)),
    "gpt-4o-mini": _m(True, True, True, 128_000, 16_384, (0.15, 0.60, 0.075)),
    "gpt-4-turbo": _m(True, True, True, 128_000, 4_096, (10.0, 30.0, _)),
    "gpt-4-vision-preview": _m(True, _, _, 128_000, 4_096, (10.0, 30.0, _)),
    "gpt-4-1106-vision-preview": _m(True, _, _, 128_000, 4_096, (10.0, 30.0, _)),
    "gpt-4-1106-preview": _m(False, True, True, 128_000, 4_096, (10.0, 30.0, _)),
    "gpt-4-0125-preview": _m(False, True, True, 128_000, 4_096, (10.0, 30.0, _)),
    "gpt-4": _m(False, True, _, 8_192, 8_192, (30.0, 60.0, _)),
    "gpt-4-32k": _m(False, True, _, 32_768, _, (60.0, 120.0, _)),
    "gpt-3.5-turbo": _m(False, True, True, 16_385, 4_096, (0.50, 1.50, _)),
    "gpt-3.5-turbo-instruct": _m(False, False, False, 4_096, 4_096, (1.50, 2.0, _)),
    "o1": _m(True, True, True, 200_000, 100_000, (15.0, 60.0, 7.50)),
    "o1-mini": _m(False, _, _, 128_000, 65_536, (1.10, 4.40, 0.55)),
    "o1-preview": _m(False, _, _, 128_000, 32_768, (15.0, 60.0, 7.50)),
    "o1-pro": _m(True, True, True, 200_000, 100_000, (150.0, 600.0, _)),
    "o3": _m(True, True, True, 200_000, 100_000, (2.0, 8.0, 0.50)),
    "o3-mini": _m(False, True, True, 200_000, 100_000, (1.10, 4.40, 0.55)),
    "o3-pro": _m(True, True, True, 200_000, 100_000, (20.0, 80.0, _)),
    "o4-mini": _m(True, True, True, 200_000, 100_000, (1.10, 4.40, 0.275)),
    "text-embedding-3-small": _m(False, False, False, 8_191, _, (0.02, _, _)),
    "text-embedding-3-large": _m(False, False, False, 8_191, _, (0.13, _, _)),
    "text-embedding-ada-002": _m(False, False, False, 8_191, _, (0.10, _, _)),
}

# Claude: every model takes images and tools; JSON mode is not an Anthropic API switch (the adapter
# decides how to serve response_format), so it is unknown.
_ANTHROPIC: dict[str, Capabilities] = {
    "claude-3-haiku": _m(True, True, _, 200_000, 4_096, (0.25, 1.25, 0.03)),
    "claude-3-sonnet": _m(True, True, _, 200_000, 4_096, (3.0, 15.0, _)),
    "claude-3-opus": _m(True, True, _, 200_000, 4_096, (15.0, 75.0, 1.50)),
    "claude-3-5-haiku": _m(_, True, _, 200_000, 8_192, (0.80, 4.0, 0.08)),
    "claude-3-5-sonnet": _m(True, True, _, 200_000, 8_192, (3.0, 15.0, 0.30)),
    "claude-3-7-sonnet": _m(True, True, _, 200_000, 128_000, (3.0, 15.0, 0.30)),
    "claude-sonnet-4": _m(True, True, _, 200_000, 64_000, (3.0, 15.0, 0.30)),
    "claude-sonnet-4-5": _m(True, True, _, 200_000, 64_000, (3.0, 15.0, 0.30)),
    "claude-opus-4": _m(True, True, _, 200_000, 32_000, (15.0, 75.0, 1.50)),
    "claude-opus-4-1": _m(True, True, _, 200_000, 32_000, (15.0, 75.0, 1.50)),
    "claude-opus-4-5": _m(True, True, _, 200_000, 64_000, (5.0, 25.0, 0.50)),
    "claude-opus-4-6": _m(True, True, _, _, _, (5.0, 25.0, 0.50)),
    "claude-opus-4-7": _m(True, True, _, _, _, (5.0, 25.0, 0.50)),
    "claude-haiku-4-5": _m(True, True, _, 200_000, 64_000, (1.0, 5.0, 0.10)),
}

_GEMINI: dict[str, Capabilities] = {
    "gemini-2.5-pro": _m(True, True, True, 1_048_576, 65_536, (1.25, 10.0, _)),
    "gemini-2.5-flash": _m(True, True, True, 1_048_576, 65_536, (0.30, 2.50, _)),
    "gemini-2.5-flash-lite": _m(True, True, True, 1_048_576, 65_536, (0.10, 0.40, _)),
    "gemini-2.0-flash": _m(True, True, True, 1_048_576, 8_192, (0.10, 0.40, 0.025)),
    "gemini-2.0-flash-lite": _m(True, True, True, 1_048_576, 8_192, (0.075, 0.30, _)),
    "gemini-1.5-pro": _m(True, True, True, 2_097_152, 8_192),
    "gemini-1.5-flash": _m(True, True, True, 1_048_576, 8_192),
}

_XAI: dict[str, Capabilities] = {
    "grok-4": _m(True, True, True, 256_000, _, (3.0, 15.0, 0.75)),
    "grok-4-fast": _m(True, True, True, 2_000_000, _, (0.20, 0.50, 0.05)),
    "grok-4-1-fast": _m(True, True, True, 2_000_000, _, (0.20, 0.50, 0.05)),
    "grok-code-fast-1": _m(False, True, True, 256_000, _, (0.20, 1.50, 0.02)),
    "grok-3": _m(False, True, True, 131_072, _, (3.0, 15.0, 0.75)),
    "grok-3-mini": _m(False, True, True, 131_072, _, (0.30, 0.50, 0.075)),
    "grok-2-vision": _m(True, True, True, 32_768, _, (2.0, 10.0, _)),
}

# Bedrock ids after normalisation (region prefix dropped; anthropic.* map to the Claude entries).
_BEDROCK: dict[str, Capabilities] = {
    "amazon.nova-premier": _m(True, True, _, 1_000_000, _, (2.50, 12.50, _)),
    "amazon.nova-pro": _m(True, True, _, 300_000, _, (0.80, 3.20, 0.20)),
    "amazon.nova-lite": _m(True, True, _, 300_000, _, (0.06, 0.24, 0.015)),
    "amazon.nova-micro": _m(False, True, _, 128_000, _, (0.035, 0.14, 0.00875)),
    "meta.llama3-8b-instruct": _m(False, _, _, 8_192, _),
    "meta.llama3-70b-instruct": _m(False, _, _, 8_192, _),
    "meta.llama3-1-8b-instruct": _m(False, _, _, 128_000, _, (0.22, 0.22, _)),
    "meta.llama3-1-70b-instruct": _m(False, _, _, 128_000, _, (0.72, 0.72, _)),
    "meta.llama3-1-405b-instruct": _m(False, _, _, 128_000, _),
    "meta.llama3-2-1b-instruct": _m(False, _, _, 128_000, _),
    "meta.llama3-2-3b-instruct": _m(False, _, _, 128_000, _),
    "meta.llama3-2-11b-instruct": _m(True, _, _, 128_000, _),
    "meta.llama3-2-90b-instruct": _m(True, _, _, 128_000, _),
    "meta.llama3-3-70b-instruct": _m(False, _, _, 128_000, _, (0.72, 0.72, _)),
    "meta.llama4-scout-17b-instruct": _m(True, _, _, _, _),
    "meta.llama4-maverick-17b-instruct": _m(True, _, _, _, _),
}

# GigaChat 2 has a 128k context and images on Pro/Max; every GigaChat model calls functions.
_GIGACHAT: dict[str, Capabilities] = {
    "gigachat": _m(_, True, _, _, _),
    "gigachat-plus": _m(_, True, _, _, _),
    "gigachat-pro": _m(_, True, _, _, _),
    "gigachat-max": _m(_, True, _, _, _),
    "gigachat-2": _m(_, True, _, 128_000, _),
    "gigachat-2-pro": _m(True, True, _, 128_000, _),
    "gigachat-2-max": _m(True, True, _, 128_000, _),
}

# YandexGPT is text-only; Pro (yandexgpt) calls functions and answers in JSON by schema.
_YANDEX: dict[str, Capabilities] = {
    "yandexgpt": _m(False, True, True, 32_000, _),
    "yandexgpt-lite": _m(False, _, _, 32_000, _),
    "yandexgpt-32k": _m(False, _, _, 32_000, _),
}

# Ollama library tags; context is the model's maximum (Ollama's own num_ctx default is smaller).
_OLLAMA: dict[str, Capabilities] = {
    "llama3": _m(False, False, True, 8_192, _),
    "llama3.1": _m(False, True, True, 131_072, _),
    "llama3.2": _m(False, True, True, 131_072, _),
    "llama3.2-vision": _m(True, _, True, 131_072, _),
    "llama3.3": _m(False, True, True, 131_072, _),
    "qwen2.5": _m(False, True, True, 32_768, _),
    "qwen2.5-coder": _m(False, True, True, 32_768, _),
    "qwen2.5vl": _m(True, _, True, _, _),
    "qwen2.5-vl": _m(True, _, True, _, _),
    "llava": _m(True, False, True, _, _),
}

CATALOG: dict[str, Capabilities] = {
    **_OPENAI,
    **_ANTHROPIC,
    **_GEMINI,
    **_XAI,
    **_BEDROCK,
    **_GIGACHAT,
    **_YANDEX,
    **_OLLAMA,
}
