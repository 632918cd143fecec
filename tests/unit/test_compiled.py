"""When the hot path's compiled modules are used, and when their source is (resolver.compiled)."""

from __future__ import annotations

import importlib.machinery
import json
import shutil
from pathlib import Path

import pytest

from resolver import compiled

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def package(tmp_path: Path, *, built: bool = True, manifest: bool = True) -> Path:
    """A copy of the listed modules' source, with (empty) compiled files beside them when
    ``built``, and the build's record of the sources when ``manifest``."""
    root = tmp_path / "resolver"
    for path in compiled.MODULES:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(compiled.PACKAGE / path, target)
        if built:
            target.with_name(target.name.removesuffix(".py") + SUFFIX).write_bytes(b"")
    if manifest:
        (root / compiled.MANIFEST).write_text(json.dumps(compiled.digests(root)))
    return root


def test_a_build_of_this_very_source_is_used(tmp_path: Path) -> None:
    assert compiled.decide(package(tmp_path), {}) == (
        True,
        f"compiled: {len(compiled.MODULES)} modules",
    )


def test_one_edited_module_makes_every_module_run_from_source(tmp_path: Path) -> None:
    root = package(tmp_path)
    with (root / "dns/wire.py").open("a") as source:
        source.write("\n# an edit after the build\n")
    used, why = compiled.decide(root, {})
    assert not used
    assert why == "pure Python: source changed since the build: dns/wire.py"


def test_without_a_compiler_the_source_runs(tmp_path: Path) -> None:
    used, why = compiled.decide(package(tmp_path, built=False, manifest=False), {})
    assert (used, why) == (False, "pure Python: not compiled (no C compiler at build time)")


@pytest.mark.parametrize("value", ["1", "yes"])
def test_aiwall_pure_runs_the_source_whatever_was_built(tmp_path: Path, value: str) -> None:
    used, why = compiled.decide(package(tmp_path), {"AIWALL_PURE": value})
    assert (used, why) == (False, "pure Python: AIWALL_PURE is set")
    assert compiled.decide(package(tmp_path / "zero"), {"AIWALL_PURE": "0"})[0]


def test_compiled_modules_without_the_record_of_their_source_are_not_used(
    tmp_path: Path,
) -> None:
    used, why = compiled.decide(package(tmp_path, manifest=False), {})
    assert not used
    assert "without a readable compiled.json" in why


def test_a_partial_build_is_not_used(tmp_path: Path) -> None:
    root = package(tmp_path)
    (root / f"upstream/udp{SUFFIX}").unlink()
    used, why = compiled.decide(root, {})
    assert (used, why) == (False, "pure Python: compiled modules missing: upstream/udp.py")
