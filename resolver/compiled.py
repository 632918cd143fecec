"""Which modules run compiled, and the guard that never lets a stale build run.

The modules every answer passes through (``MODULES``) are compiled to C extensions with
mypyc when the package is built on a machine with a C compiler (``setup.py``; the code
is mypy-strict clean, which is what mypyc needs). They are the same source: where no
compiler is at hand, or with ``AIWALL_PURE=1`` in the environment, the same modules run
as plain Python, answer for answer the same, only slower (README, "Compiled hot
modules").

A compiled module is used only while it matches the source next to it. The build
records each module's SHA-256 in ``compiled.json``; at import, any difference (a source
edited in a development checkout since the last build, a partial upgrade) makes every
listed module load from its source instead. All of them or none: compiled modules call
each other directly, so an edited module next to compiled callers would not be called.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# The hot path's modules, by package-relative path (as the build takes them).
MODULES: tuple[str, ...] = (
    "clients.py",
    "collectors.py",
    "dns/codec.py",
    "dns/edns.py",
    "dns/model.py",
    "dns/pending.py",
    "dns/responses.py",
    "dns/wire.py",
    "handlers/access.py",
    "handlers/blocking.py",
    "handlers/cache.py",
    "handlers/cache_entry.py",
    "handlers/ddr.py",
    "handlers/forwarding.py",
    "handlers/metrics.py",
    "handlers/minimal_any.py",
    "handlers/sanity.py",
    "policy/nametable.py",
    "serve/fastpath.py",
    "serve/kept.py",
    "serve/relay.py",  # its runner is a QueryRunner: compiled, a class's subclasses must be
    "serve/transport.py",
    "upstream/deadlines.py",
    "upstream/exchanges.py",
    "upstream/forwarder.py",
    "upstream/health.py",
    "upstream/idents.py",
    "upstream/messages.py",
    "upstream/udp.py",
)
MANIFEST = "compiled.json"
# Set to any non-empty value but "0": run every module from its source.
PURE_ENV = "AIWALL_PURE"

PACKAGE = Path(__file__).resolve().parent


def module_name(path: str) -> str:
    """``dns/wire.py`` -> ``resolver.dns.wire``."""
    return "resolver." + path.removesuffix(".py").replace("/", ".")


def digests(package: Path = PACKAGE) -> dict[str, str]:
    """Each listed module's source SHA-256, as the build records it."""
    return {path: hashlib.sha256((package / path).read_bytes()).hexdigest() for path in MODULES}


def _extension(package: Path, path: str) -> Path | None:
    """The compiled module built for this interpreter next to ``path``, if any."""
    stem = package / path.removesuffix(".py")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.exists():
            return candidate
    return None


def decide(package: Path = PACKAGE, environ: dict[str, str] | None = None) -> tuple[bool, str]:
    """(whether the compiled modules are to be used, why in words)."""
    environ = dict(os.environ) if environ is None else environ
    if environ.get(PURE_ENV, "") not in ("", "0"):
        return False, f"pure Python: {PURE_ENV} is set"
    built = [path for path in MODULES if _extension(package, path) is not None]
    if not built:
        return False, "pure Python: not compiled (no C compiler at build time)"
    try:
        recorded = json.loads((package / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, f"pure Python: compiled modules without a readable {MANIFEST}"
    if len(built) != len(MODULES):
        missing = sorted(set(MODULES) - set(built))
        return False, f"pure Python: compiled modules missing: {', '.join(missing)}"
    changed = sorted(
        path for path, digest in digests(package).items() if recorded.get(path) != digest
    )
    if changed:
        return False, f"pure Python: source changed since the build: {', '.join(changed)}"
    return True, f"compiled: {len(MODULES)} modules"


class _FromSource(importlib.abc.MetaPathFinder):
    """Loads the listed modules from their ``.py``, ahead of the compiled files."""

    def __init__(self, package: Path) -> None:
        self._paths = {module_name(path): package / path for path in MODULES}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self._paths.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


COMPILED = False
STATUS = "pure Python"


def install(package: Path = PACKAGE) -> None:
    """Decide once, at the package's import, before any listed module is imported."""
    global COMPILED, STATUS
    COMPILED, STATUS = decide(package)
    if not COMPILED:
        sys.meta_path.insert(0, _FromSource(package))
