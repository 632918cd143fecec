"""The build's one step beyond pyproject.toml: the hot path's modules compiled with mypyc.

Every module listed in ``resolver/compiled.py`` is compiled to a C extension when mypyc
(from the build requirement mypy) and a C compiler are at hand; the build records each
module's source SHA-256 in ``resolver/compiled.json``, which the package checks at import
(a compiled module never runs once its source has changed). Without a compiler, or with
``AIWALL_PURE=1`` in the build's environment, the package is built as plain Python: the
same modules, run by the interpreter. Either way the install succeeds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "resolver"
MANIFEST = PACKAGE / "compiled.json"


def _guard() -> ModuleType:
    """resolver/compiled.py, loaded on its own (it imports nothing but the standard
    library): its list of modules and its digests, without importing the package, whose
    dependencies need not be installed to build it."""
    spec = importlib.util.spec_from_file_location("_aiwall_compiled", PACKAGE / "compiled.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _say(message: str) -> None:
    print(f"aiwall build: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """A compiler error leaves a plain-Python package, never a failed install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # no compiler, no Python headers...
            _say(f"not compiled ({error}); the modules run as plain Python")
            MANIFEST.unlink(missing_ok=True)


def extensions() -> list[Any]:
    if os.environ.get("AIWALL_PURE", "") not in ("", "0"):
        _say("AIWALL_PURE is set: not compiled")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _say("mypyc is not installed: not compiled")
        return []
    guard = _guard()
    modules: tuple[str, ...] = guard.MODULES
    digests: dict[str, str] = guard.digests(PACKAGE)
    MANIFEST.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    # Checked as `make lint` checks the package (pyproject.toml's [tool.mypy], strict,
    # the dependencies' own types: the build requires them), with a cache of its own so
    # that nothing left by an earlier check of another version is read.
    options = ["--cache-dir", str(ROOT / "build" / "mypyc-cache")]
    return list(
        mypycify(
            options + [f"resolver/{path}" for path in modules],
            opt_level="3",
            group_name="resolver",
        )
    )


os.chdir(ROOT)
setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
