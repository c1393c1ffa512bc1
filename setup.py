"""Builds the optional Cython accelerators in omen/_fast.

Every compiled module has a pure-Python twin (``<name>_py.py``) with identical behaviour, so a failed
compile degrades to the twin instead of failing the install. ``OMEN_NO_EXT=1`` skips compiling.
"""

import glob
import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("OMEN_NO_EXT"):
    from Cython.Build import cythonize

    sources = sorted(glob.glob("omen/_fast/*.pyx"))
    ext_modules = cythonize(
        [Extension(f"omen._fast.{os.path.basename(s)[:-4]}", [s]) for s in sources],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )
    for ext in ext_modules:
        # cythonize() drops Extension(optional=True); set it afterwards so a failed build falls back.
        ext.optional = True

setup(ext_modules=ext_modules)
