"""OpenAI-format wire messages (msgspec structs) that OMEN decodes, validates and produces."""
