"""Fixtures for the server tests (the repository-wide tests/conftest.py belongs to the lead)."""

from __future__ import annotations

import pytest

from tests.server.certs import CertPair, make_self_signed


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPair:
    return make_self_signed(tmp_path_factory.mktemp("certs"))
