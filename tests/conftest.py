"""Repository-wide fixtures: a real OMEN server (Hypercorn trio worker, real sockets) in the test's
nursery, built from a config dict, with its access log captured for assertions."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
import pytest
import trio

from omen.config.loader import load_config
from omen.pipeline.gateway import Gateway
from omen.server.access_log import AccessLog
from omen.server.app import OmenApp
from omen.server.serve import Listening, serve
from tests.server.certs import CertPair, make_self_signed


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPair:
    return make_self_signed(tmp_path_factory.mktemp("certs"))


@dataclass
class RunningOmen:
    url: str
    port: int
    app: OmenApp
    log: io.BytesIO
    listening: Listening

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def log_records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.log.getvalue().splitlines() if line.strip()]

    def request_log(self, request_id: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.log_records() if request_id is None or r.get("request_id") == request_id]

    async def log_for(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The access-log record of one request; it is written just after the response completes,
        so a client can finish reading before it exists."""
        with trio.fail_after(timeout):
            while True:
                records = self.request_log(request_id)
                if records:
                    return records[0]
                await trio.sleep(0.01)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{orjson.dumps(k).decode()} = {toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


def to_toml(tree: dict[str, Any], prefix: str = "") -> str:
    """A minimal TOML writer for test configs (tables of scalars, lists and inline tables)."""
    scalars = {
        k: v
        for k, v in tree.items()
        if not (
            isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()) and k in ("providers", "models")
        )
        and not (isinstance(v, dict) and k in ("server", "auth", "aliases") and not prefix)
    }
    tables = {k: v for k, v in tree.items() if k not in scalars}
    out = [f"{k} = {toml_value(v)}" for k, v in scalars.items()]
    for key, value in tables.items():
        if key in ("providers", "models"):
            for name, body in value.items():
                out.append(f"[{key}.{orjson.dumps(name).decode()}]")
                out += [f"{k} = {toml_value(v)}" for k, v in body.items()]
        else:
            out.append(f"[{key}]")
            out += [f"{k} = {toml_value(v)}" for k, v in value.items()]
    return "\n".join(out) + "\n"


@asynccontextmanager
async def running_omen(
    config: dict[str, Any] | None = None,
    *,
    env: dict[str, str] | None = None,
    tmp_path: Any = None,
    tls: CertPair | None = None,
) -> AsyncIterator[RunningOmen]:
    """Start OMEN on 127.0.0.1:<random port> with ``config`` (an omen.toml as a dict)."""
    tree = dict(config or {})
    server = dict(tree.get("server", {}))
    server.setdefault("bind", "127.0.0.1:0")
    server.setdefault("graceful_timeout", 2.0)
    if tls is not None:
        server["certfile"], server["keyfile"] = tls.certfile, tls.keyfile
    tree["server"] = server
    import tempfile
    from pathlib import Path

    directory = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp())
    path = directory / "omen-test.toml"
    path.write_text(to_toml(tree))
    loaded = load_config(str(path), env=env or {})
    log = io.BytesIO()
    app = OmenApp(Gateway.from_config(loaded.config, access_log=AccessLog(True, log)))
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        listening: Listening = await nursery.start(
            partial(serve, app, loaded.config.server, shutdown_trigger=stop.wait)
        )
        scheme = "https" if tls is not None else "http"
        port = listening.port
        try:
            yield RunningOmen(f"{scheme}://127.0.0.1:{port}", port, app, log, listening)
        finally:
            stop.set()


def openai_provider(up: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "openai", "api_key": "sk-upstream-secret", "base_url": up.openai_base, **extra}
