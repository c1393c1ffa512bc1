"""Reusable protocol clients for tests (HTTP/3 over aioquic)."""
