"""Subprocess entry for shutdown/launcher tests: the real ``omen.server.serve.run`` with a test app.

``python -m tests.server.serve_script '<OmenConfig as JSON>' [module:app_factory]`` from the repository
root. ``OMEN_TEST_BACKOFF`` shortens the launcher's respawn backoff (test-only knob, set here).
"""

from __future__ import annotations

import os
import sys

import msgspec

from omen.config.schema import OmenConfig
from omen.server import launcher
from omen.server.serve import run


def main() -> int:
    config = msgspec.convert(msgspec.json.decode(sys.argv[1]), OmenConfig)
    factory = sys.argv[2] if len(sys.argv) > 2 else "tests.server.support:create_app"
    if "OMEN_TEST_BACKOFF" in os.environ:
        launcher.BACKOFF_INITIAL = float(os.environ["OMEN_TEST_BACKOFF"])
    return run(config, app_factory=factory)


if __name__ == "__main__":  # guarded: spawned workers re-import the main module
    sys.exit(main())
