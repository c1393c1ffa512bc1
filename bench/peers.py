"""The gateways bench/run.py measures OMEN against: installed by this module into a scratch directory
outside the repository, configured in their documented production setup, all pointed at the same fake
upstream.

- **nginx** (Debian package ``nginx``): ``apt-get download`` + ``dpkg-deb -x`` into the scratch dir, so
  nothing is installed system-wide and no service starts. A plain reverse proxy: the physical reference.
- **LiteLLM proxy** (PyPI ``litellm[proxy]``) in its own venv, started with its ``litellm`` CLI.
- **Portkey gateway** (npm ``@portkey-ai/gateway``), with ``@hono/node-server`` pinned by npm
  ``overrides`` (streams break with >= 1.14.2: ``TypeError: immutable``, Portkey issue #1389).

Each install is reused while its marker file (``installed.json``) matches what this module would
install. A peer that cannot be installed or started raises ``PeerUnavailable`` naming the command and
its output, and the benchmark goes on without it.

Routes: every gateway is configured for three upstreams of the fake: ``instant`` (non-streaming
figures), ``stream`` (the 50-stream measurement) and ``ramp`` (the streaming capacity ramp, paced more
slowly). A target reaches a route by port (nginx: one server block per route), by model name
(OMEN, LiteLLM) or by header (Portkey: ``x-portkey-custom-host``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROUTES = ("instant", "stream", "ramp")
MODELS = {"instant": "bench-model", "stream": "bench-model-stream", "ramp": "bench-model-ramp"}
MASTER_KEY = "sk-omen-bench"  # LiteLLM's master key; every target is sent "Authorization: Bearer <this>"

LITELLM_SPEC = "litellm[proxy]>=1.106,<1.107"  # 1.106.x is known to work; pip picks the newest installable
PORTKEY_PACKAGE = "@portkey-ai/gateway"
PORTKEY_VERSION = "1.15.2"
HONO_NODE_SERVER = "1.14.1"  # >= 1.14.2 breaks Portkey's streams (TypeError: immutable, issue #1389)
NGINX_PACKAGE = "nginx"

DEFAULT_DIR = Path(os.environ.get("OMEN_BENCH_PEERS_DIR") or Path.home() / ".cache" / "omen-bench" / "peers")
KNOWN = ("nginx", "litellm", "portkey")


class PeerUnavailable(Exception):
    """A peer that could not be installed or started; the message has the command and its output."""


@dataclass
class Installed:
    name: str
    version: str
    commands: list[str]  # how it was installed (recorded in installed.json, also when reused)
    reused: bool
    paths: dict[str, str] = field(default_factory=dict)


def _quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def run_step(argv: list[str], cwd: Path, log_path: Path, timeout: float, env: dict[str, str] | None = None) -> None:
    """Run one install command in its own process group, output appended to ``log_path``; the group is
    killed on timeout, error or Ctrl-C. Raises PeerUnavailable with the command and its output's tail."""
    with open(log_path, "ab") as out:
        out.write(f"\n$ (cd {cwd} && {_quote(argv)})\n".encode())
        out.flush()
        try:
            popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise PeerUnavailable(f"`{_quote(argv)}` could not be started: {exc}") from exc
        try:
            code = popen.wait(timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
            if isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
                raise PeerUnavailable(f"`{_quote(argv)}` (in {cwd}) timed out after {timeout:.0f} s") from None
            raise
    if code != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise PeerUnavailable(f"`{_quote(argv)}` (in {cwd}) exited with {code}:\n{tail}")


def _marker(directory: Path) -> dict[str, object]:
    try:
        return dict(json.loads((directory / "installed.json").read_text()))
    except (OSError, ValueError):
        return {}


def _write_marker(directory: Path, data: dict[str, object]) -> None:
    (directory / "installed.json").write_text(json.dumps(data, indent=2) + "\n")


def _output(argv: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)
    return (result.stdout + result.stderr).strip()


# --------------------------------------------------------------------------------------------------
# installation


def install_nginx(root: Path, log: Callable[[str], None]) -> Installed:
    directory = root / "nginx"
    binary = directory / "root" / "usr" / "sbin" / "nginx"
    marker = _marker(directory)
    reused = marker.get("package") == NGINX_PACKAGE and binary.exists()
    if not reused:
        log(f"installing nginx into {directory} (apt-get download {NGINX_PACKAGE} + dpkg-deb -x)")
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        logf = directory / "install.log"
        download = ["apt-get", "download", NGINX_PACKAGE]
        commands = [download]
        try:
            run_step(download, directory, logf, 300)
        except PeerUnavailable:
            commands = [["apt-get", "update"], download]  # an empty or stale package list; refresh once
            run_step(commands[0], directory, logf, 300)
            run_step(download, directory, logf, 300)
        debs = sorted(directory.glob("nginx_*.deb"))
        if not debs:
            raise PeerUnavailable(f"`{_quote(download)}` left no nginx_*.deb in {directory}")
        extract = ["dpkg-deb", "-x", debs[-1].name, "root"]
        run_step(extract, directory, logf, 120)
        commands.append(extract)
        missing = [line.strip() for line in _output(["ldd", str(binary)]).splitlines() if "not found" in line]
        if missing:
            raise PeerUnavailable(
                f"{binary} needs libraries that are not installed ({'; '.join(missing)}): "
                f"`apt-get install -y {NGINX_PACKAGE}` would pull them in"
            )
        marker = {"package": NGINX_PACKAGE, "deb": debs[-1].name, "commands": [_quote(c) for c in commands]}
        _write_marker(directory, marker)
    version = _output([str(binary), "-v"]).replace("nginx version: ", "")
    deb = str(marker.get("deb", "")).removesuffix(".deb").replace("_", " ")
    return Installed(
        "nginx", f"{version} (Debian {deb})", [str(c) for c in marker.get("commands", [])],  # type: ignore[union-attr]
        reused, {"binary": str(binary)},
    )  # fmt: skip


def install_litellm(root: Path, log: Callable[[str], None]) -> Installed:
    directory = root / "litellm"
    venv = directory / "venv"
    exe = venv / "bin" / "litellm"
    marker = _marker(directory)
    reused = marker.get("spec") == LITELLM_SPEC and exe.exists()
    if not reused:
        log(f"installing {LITELLM_SPEC} into {venv} (pip, ~2-3 min)")
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        logf = directory / "install.log"
        python = shutil.which("python3") or sys.executable
        commands = [
            [python, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", LITELLM_SPEC],
        ]
        for argv in commands:
            run_step(argv, directory, logf, 900)
        if not exe.exists():
            raise PeerUnavailable(f"{exe} missing after `{_quote(commands[-1])}`")
        marker = {"spec": LITELLM_SPEC, "commands": [_quote(c) for c in commands]}
        _write_marker(directory, marker)
    script = "import importlib.metadata as m; print(m.version('litellm'), m.version('uvicorn'))"
    litellm_version, _, uvicorn_version = _output([str(venv / "bin" / "python"), "-c", script]).partition(" ")
    return Installed(
        "litellm", f"litellm {litellm_version} (uvicorn {uvicorn_version}, {LITELLM_SPEC})",
        [str(c) for c in marker.get("commands", [])], reused, {"exe": str(exe)},  # type: ignore[union-attr]
    )  # fmt: skip


PORTKEY_START = """\
// Written by bench/peers.py. Starts the Portkey gateway bound to 127.0.0.1 only: its start-server.js
// calls @hono/node-server's serve({fetch, port}) without a hostname, which listens on every interface.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number") {
    if (args[1] === undefined) args[1] = "127.0.0.1";
    else if (typeof args[1] === "function") args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};

await import("./node_modules/@portkey-ai/gateway/build/start-server.js");
"""


def _package_version(path: Path) -> str:
    try:
        return str(json.loads(path.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "?"


def install_portkey(root: Path, log: Callable[[str], None]) -> Installed:
    directory = root / "portkey"
    package_json = {
        "name": "omen-bench-portkey",
        "private": True,
        "dependencies": {PORTKEY_PACKAGE: PORTKEY_VERSION},
        "overrides": {"@hono/node-server": HONO_NODE_SERVER},
    }
    gateway = directory / "node_modules" / "@portkey-ai" / "gateway"
    hono = directory / "node_modules" / "@hono" / "node-server" / "package.json"
    marker = _marker(directory)
    reused = marker.get("package.json") == package_json and (gateway / "build" / "start-server.js").exists()
    if not reused:
        log(f"installing {PORTKEY_PACKAGE}@{PORTKEY_VERSION} into {directory} (npm, @hono/node-server pinned "
            f"to {HONO_NODE_SERVER})")  # fmt: skip
        if shutil.which("npm") is None or shutil.which("node") is None:
            raise PeerUnavailable("node/npm not found: apt-get install -y nodejs npm")
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        (directory / "package.json").write_text(json.dumps(package_json, indent=2) + "\n")
        command = ["npm", "install", "--no-audit", "--no-fund"]
        run_step(command, directory, directory / "install.log", 600)
        marker = {
            "package.json": package_json,
            "commands": [f"echo {shlex.quote(json.dumps(package_json))} > package.json", _quote(command)],
        }
        _write_marker(directory, marker)
    (directory / "start.mjs").write_text(PORTKEY_START)
    hono_version = _package_version(hono)
    if hono_version != HONO_NODE_SERVER:
        raise PeerUnavailable(f"npm installed @hono/node-server {hono_version}, not the pinned {HONO_NODE_SERVER}")
    version = _package_version(gateway / "package.json")
    node = _output(["node", "--version"])
    return Installed(
        "portkey", f"{PORTKEY_PACKAGE} {version} (@hono/node-server {hono_version}, node {node})",
        [str(c) for c in marker.get("commands", [])], reused, {"dir": str(directory)},  # type: ignore[union-attr]
    )  # fmt: skip


INSTALLERS: dict[str, Callable[[Path, Callable[[str], None]], Installed]] = {
    "nginx": install_nginx,
    "litellm": install_litellm,
    "portkey": install_portkey,
}


# --------------------------------------------------------------------------------------------------
# configuration and launch


@dataclass
class Launch:
    """How to start one gateway and reach each route through it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ports: dict[str, int]  # route -> port
    headers: dict[str, list[tuple[str, str]]]  # route -> extra request headers
    models: dict[str, str]  # route -> model name in the request body
    ready_path: str | None  # GET path that answers 200 once ready (None: accepting TCP is enough)
    config_files: dict[str, str] = field(default_factory=dict)  # file name -> text (for --keep-logs)
    notes: str = ""

    @property
    def command(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items() if k in _SHOWN_ENV)
        return (env + " " if env else "") + _quote(self.argv)


_SHOWN_ENV = (
    "NODE_ENV", "LITELLM_LOG", "LITELLM_MODE", "LITELLM_LOCAL_MODEL_COST_MAP",
    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY",
)  # fmt: skip


def _base_env() -> dict[str, str]:
    drop = ("OPENAI_", "LITELLM_", "PORTKEY_", "OMEN_", "NODE_OPTIONS", "DATABASE_URL", "REDIS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def nginx_conf(workdir: Path, listen: dict[str, int], upstreams: dict[str, int]) -> str:
    """nginx as a plain reverse proxy: one worker per core, keep-alive to the upstream, no buffering (so
    SSE events pass through as they come), no access log, one server block per route."""
    temp = workdir / "nginx-temp"
    blocks = []
    for route in ROUTES:
        blocks.append(f"""
    upstream up_{route} {{
        server 127.0.0.1:{upstreams[route]};
        keepalive 256;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }}
    server {{
        listen 127.0.0.1:{listen[route]} reuseport backlog=4096;
        location / {{
            proxy_pass http://up_{route};
        }}
    }}""")
    return f"""# written by bench/peers.py
worker_processes auto;
worker_rlimit_nofile 16384;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_buffer_size 64k;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    proxy_request_buffering off;
    proxy_read_timeout 300s;
{"".join(blocks)}
}}
"""


def nginx_launch(inst: Installed, workdir: Path, listen: dict[str, int], upstreams: dict[str, int]) -> Launch:
    conf = workdir / "nginx.conf"
    text = nginx_conf(workdir, listen, upstreams)
    conf.write_text(text)
    (workdir / "nginx-temp").mkdir(exist_ok=True)
    prefix = workdir / "nginx-prefix"
    prefix.mkdir(exist_ok=True)
    argv = [inst.paths["binary"], "-p", str(prefix), "-e", str(workdir / "nginx-error.log"), "-c", str(conf),
            "-g", "daemon off;"]  # fmt: skip
    return Launch(
        "nginx", argv, _base_env(), dict(listen), {r: [] for r in ROUTES}, {r: "bench-model" for r in ROUTES},
        None, {"nginx.conf": text},
        "worker_processes auto (2 here), keepalive upstream, proxy_buffering off, access_log off",
    )  # fmt: skip


def litellm_yaml(upstreams: dict[str, int]) -> str:
    entries = "".join(
        f"""  - model_name: {MODELS[route]}
    litellm_params:
      model: openai/bench-model
      api_base: http://127.0.0.1:{upstreams[route]}/v1
      api_key: x
"""
        for route in ROUTES
    )
    return f"""# written by bench/peers.py (settings from LiteLLM's "Production Best Practices" page)
model_list:
{entries}
general_settings:
  master_key: {MASTER_KEY}
  disable_spend_logs: true
  disable_error_logs: true
litellm_settings:
  set_verbose: false
  request_timeout: 600
  callbacks: []  # as in LiteLLM's own benchmark config ("Benchmarks" page)
  num_retries: 0
"""


def litellm_launch(inst: Installed, workdir: Path, port: int, workers: int, upstreams: dict[str, int]) -> Launch:
    name = f"litellm {workers}w"
    conf = workdir / f"litellm-{workers}w.yaml"
    text = litellm_yaml(upstreams)
    conf.write_text(text)
    env = _base_env() | {
        "LITELLM_LOG": "ERROR",  # documented: turns off the per-request INFO logs (uvicorn's access log too)
        "LITELLM_MODE": "PRODUCTION",  # documented: no load_dotenv()
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # the bundled cost map, not a download at start
    }
    argv = [inst.paths["exe"], "--config", str(conf), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", str(workers)]  # fmt: skip
    return Launch(
        name, argv, env, {r: port for r in ROUTES}, {r: [] for r in ROUTES}, dict(MODELS), "/health/liveliness",
        {conf.name: text},
        f"uvicorn, {workers} worker process(es), master key set, spend/error logs off, LITELLM_LOG=ERROR",
    )  # fmt: skip


def portkey_launch(inst: Installed, port: int, upstreams: dict[str, int]) -> Launch:
    directory = Path(inst.paths["dir"])
    headers = {
        route: [("x-portkey-provider", "openai"), ("x-portkey-custom-host", f"http://127.0.0.1:{upstreams[route]}/v1")]
        for route in ROUTES
    }
    env = _base_env() | {"NODE_ENV": "production"}
    argv = ["node", str(directory / "start.mjs"), f"--port={port}", "--headless"]
    return Launch(
        "portkey", argv, env, {r: port for r in ROUTES}, headers, {r: "bench-model" for r in ROUTES}, "/",
        {}, "one node process (the gateway has no documented multi-process mode), NODE_ENV=production, --headless "
        "(no console UI / log streaming), routed with x-portkey-provider + x-portkey-custom-host",
    )  # fmt: skip
