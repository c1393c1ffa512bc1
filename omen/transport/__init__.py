"""Sending translated requests upstream: pooled httpx clients and per-phase timeouts."""
