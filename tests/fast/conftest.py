"""Fixtures that run every hot-path test against both twins of each ``omen._fast`` module.

The compiled param is skipped (with the reason) when the extension is not built, except under
``CI=true`` where a missing or stale build fails: CI must test what it ships.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def compiled_or_skip(name: str) -> ModuleType:
    """The compiled ``omen._fast.<name>``; skip (fail under CI=true) if it is missing or stale."""
    try:
        module = importlib.import_module(f"omen._fast.{name}")
    except ImportError as exc:
        reason = f"compiled omen._fast.{name} is not built ({exc}); run `pip install -e .`"
        if IN_CI:
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    so, pyx = Path(module.__file__ or ""), Path(__file__).parents[2] / "omen" / "_fast" / f"{name}.pyx"
    if so.suffix != ".py" and pyx.exists() and so.stat().st_mtime < pyx.stat().st_mtime:
        pytest.fail(f"{so.name} is older than {pyx.name}: stale build, re-run `pip install -e .`")
    return module


def _twin(name: str, kind: str) -> ModuleType:
    if kind == "compiled":
        return compiled_or_skip(name)
    return importlib.import_module(f"omen._fast.{name}_py")


# Session scope: hypothesis refuses function-scoped fixtures inside @given tests.
@pytest.fixture(scope="session", params=["compiled", "pure"])
def sse(request: pytest.FixtureRequest) -> ModuleType:
    return _twin("sse", request.param)


@pytest.fixture(scope="session", params=["compiled", "pure"])
def bpe(request: pytest.FixtureRequest) -> ModuleType:
    return _twin("bpe", request.param)


@pytest.fixture(scope="session")
def both_sse() -> tuple[ModuleType, ModuleType]:
    return compiled_or_skip("sse"), importlib.import_module("omen._fast.sse_py")


@pytest.fixture(scope="session")
def both_bpe() -> tuple[ModuleType, ModuleType]:
    return compiled_or_skip("bpe"), importlib.import_module("omen._fast.bpe_py")
