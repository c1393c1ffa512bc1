"""Hot-path accelerators: each compiled module ``<name>`` has a pure-Python twin ``<name>_py``.

``load(name)`` picks the compiled module unless ``OMEN_PURE_PYTHON=1`` or it is not built. Both twins
behave identically; tests run against both (see tests/fast/).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

FORCE_PURE = os.environ.get("OMEN_PURE_PYTHON", "") not in ("", "0")


def load(name: str) -> ModuleType:
    if not FORCE_PURE:
        try:
            return importlib.import_module(f"omen._fast.{name}")
        except ImportError:
            pass
    return importlib.import_module(f"omen._fast.{name}_py")


def backend(name: str) -> str:
    """'compiled' or 'pure' for the module ``load(name)`` returns."""
    module = load(name)
    return "pure" if module.__name__.endswith("_py") else "compiled"
