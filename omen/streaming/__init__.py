"""Streaming wire helpers shared by providers and the server (SSE and NDJSON framing)."""
