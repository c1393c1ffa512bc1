"""``omen`` command line: serve, check-config, version."""

from __future__ import annotations

import argparse
import sys

from omen import __version__


def _version(_: argparse.Namespace) -> int:
    from omen import _fast

    print(f"omen {__version__}")
    for module in ("sse", "bpe"):
        print(f"  {module}: {_fast.backend(module)}")
    print(f"  backend: {'pure-python (OMEN_PURE_PYTHON=1)' if _fast.FORCE_PURE else _overall_backend()}")
    return 0


def _overall_backend() -> str:
    from omen import _fast

    backends = {_fast.backend(m) for m in ("sse", "bpe")}
    return "compiled" if backends == {"compiled"} else "pure-python (extensions not built)"


def _server_overrides(args: argparse.Namespace) -> dict:
    overrides: dict = {}
    if args.host or args.port:
        from omen.config.schema import ServerConfig

        default_host, _, default_port = ServerConfig().bind.rpartition(":")
        overrides["bind"] = f"{args.host or default_host}:{args.port or default_port}"
    for key in ("workers", "certfile", "keyfile"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    return overrides


def _load(args: argparse.Namespace, path: str | None):
    from omen.config.loader import ConfigError, load_config

    try:
        return load_config(path, server_overrides=_server_overrides(args) if hasattr(args, "host") else None)
    except ConfigError as exc:
        print(f"omen: {exc}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    loaded = _load(args, args.config)
    if loaded is None:
        return 2
    from omen.server.serve import run

    return run(loaded.config)


def _check_config(args: argparse.Namespace) -> int:
    loaded = _load(args, args.file or args.config)
    if loaded is None:
        return 1
    from omen.config.report import describe

    print(describe(loaded))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omen", description="OMEN: OpenAI-compatible LLM gateway")
    parser.add_argument("--config", help="config file (default: $OMEN_CONFIG or ./omen.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", dest="config", default=argparse.SUPPRESS)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--certfile")
    serve.add_argument("--keyfile")
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a config file and show what it resolves to")
    check.add_argument("file", nargs="?")
    check.set_defaults(func=_check_config)

    version = sub.add_parser("version", help="print the version and the active hot-path backend")
    version.set_defaults(func=_version)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
