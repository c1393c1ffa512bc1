"""hypercorn_config, bind parsing, socket binding and the patch module's guards (no traffic)."""

from __future__ import annotations

import logging
import socket
import sys

import pytest

from omen.config.schema import ServerConfig
from omen.server import hypercorn_patches
from omen.server.serve import bind_sockets, hypercorn_config, parse_bind
from tests.server.certs import CertPair


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:443", ("localhost", 443)),
        ("[::1]:8443", ("::1", 8443)),
        ("[::]:80", ("::", 80)),
    ],
)
def test_parse_bind(bind: str, expected: tuple[str, int]) -> None:
    assert parse_bind(bind) == expected


@pytest.mark.parametrize("bind", ["8080", "127.0.0.1", "::1:8080", "host:port", ":8080", "127.0.0.1:70000"])
def test_parse_bind_rejects(bind: str) -> None:
    with pytest.raises(ValueError):
        parse_bind(bind)


def test_cleartext_config() -> None:
    settings = ServerConfig(bind="127.0.0.1:9999", graceful_timeout=7, keep_alive_timeout=30, quic_idle_timeout=4)
    config = hypercorn_config(settings)
    assert config.bind == ["127.0.0.1:9999"]
    assert config.quic_bind == []
    assert config.insecure_bind == []
    assert not config.ssl_enabled
    # hypercorn closes keep-alive connections after 1000 requests by default
    assert config.keep_alive_max_requests >= sys.maxsize
    assert config.keep_alive_timeout == 30
    assert config.graceful_timeout == 7
    assert config.accesslog is None  # OMEN writes its own access log
    assert isinstance(config.errorlog, logging.Logger)
    assert config.include_server_header is False
    assert config.workers == 1
    assert getattr(config, hypercorn_patches.QUIC_IDLE_TIMEOUT_ATTR) == 4


def test_tls_config_enables_alpn_and_quic_on_the_same_port(certs: CertPair) -> None:
    settings = ServerConfig(bind="127.0.0.1:8443", certfile=certs.certfile, keyfile=certs.keyfile)
    config = hypercorn_config(settings)
    assert config.ssl_enabled
    assert config.alpn_protocols == ["h2", "http/1.1"]
    assert config.bind == ["127.0.0.1:8443"]
    assert config.quic_bind == ["127.0.0.1:8443"]
    config.create_ssl_context()  # the certificate loads

    no_quic = hypercorn_config(
        ServerConfig(bind="127.0.0.1:8443", certfile=certs.certfile, keyfile=certs.keyfile, quic=False)
    )
    assert no_quic.quic_bind == []


def test_certfile_without_keyfile_is_rejected(certs: CertPair) -> None:
    with pytest.raises(ValueError, match="together"):
        hypercorn_config(ServerConfig(certfile=certs.certfile))


def test_bind_sockets_port_zero_binds_udp_on_the_tcp_port(certs: CertPair) -> None:
    settings = ServerConfig(bind="127.0.0.1:0", certfile=certs.certfile, keyfile=certs.keyfile)
    sockets = bind_sockets(settings)
    try:
        [tcp], [udp] = sockets.tcp, sockets.quic
        assert tcp.type == socket.SOCK_STREAM and udp.type == socket.SOCK_DGRAM
        assert tcp.getsockname()[1] == udp.getsockname()[1] != 0
        config = hypercorn_config(settings, sockets=sockets)
        assert config.bind == [f"fd://{tcp.fileno()}"]
        assert config.alt_svc_headers == [f'h3=":{udp.getsockname()[1]}"; ma=3600']
    finally:
        sockets.close()


def test_bind_sockets_reuse_port_allows_one_socket_per_process() -> None:
    first = bind_sockets(ServerConfig(bind="127.0.0.1:0"), reuse_port=True)
    port = first.tcp[0].getsockname()[1]
    second = bind_sockets(ServerConfig(bind=f"127.0.0.1:{port}"), reuse_port=True)
    try:
        assert second.tcp[0].getsockname()[1] == port
    finally:
        first.close()
        second.close()


def test_cleartext_binds_no_udp() -> None:
    sockets = bind_sockets(ServerConfig(bind="127.0.0.1:0"))
    try:
        assert len(sockets.tcp) == 1
        assert sockets.quic == []
    finally:
        sockets.close()


# ---- the patch module's guards


def test_apply_is_idempotent() -> None:
    from hypercorn.trio.tcp_server import TCPServer

    hypercorn_patches.apply()
    patched = TCPServer._close
    hypercorn_patches.apply()
    for patch in hypercorn_patches.PATCHES:  # calling each patch again must not wrap twice
        patch()
    assert TCPServer._close is patched
    assert TCPServer._close.__wrapped__.__module__ == "hypercorn.trio.tcp_server"  # type: ignore[attr-defined]
    assert hypercorn_patches.applied()


def test_other_hypercorn_versions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hypercorn_patches, "_installed_version", lambda: "0.19.0")
    monkeypatch.delenv("OMEN_ALLOW_UNTESTED_HYPERCORN", raising=False)
    with pytest.raises(hypercorn_patches.UntestedHypercornError, match=r"0\.18\.0"):
        hypercorn_patches._check_version()
    monkeypatch.setenv("OMEN_ALLOW_UNTESTED_HYPERCORN", "1")
    with pytest.warns(RuntimeWarning, match="applying anyway"):
        hypercorn_patches._check_version()


def test_installed_hypercorn_is_the_patched_version() -> None:
    assert hypercorn_patches._installed_version() == hypercorn_patches.HYPERCORN_VERSION
