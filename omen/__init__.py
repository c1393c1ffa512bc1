"""OMEN: Open Model Exchange Network, an OpenAI-compatible gateway in front of every LLM provider."""

__version__ = "0.1.0"
