"""The package docstrings say what each package may import; this holds them to it.

Imports only go downward: ``dns`` imports nothing of ours, ``policy`` never imports
``serve``, and so on. A newcomer can trust the folders.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "resolver"
FOUNDATIONS = {
    "resolver.yamltext",
    "resolver.metrics",
    "resolver.logs",
    "resolver.storage",
    "resolver.shared",
    "resolver.memory",
    "resolver.background",
}
ALLOWED: dict[str, set[str]] = {
    "dns": set(),
    "config": {"resolver.dns", "resolver.yamltext"},
    "clients": set(),
    "shared": set(),
    "memory": set(),
    "background": set(),
    "collectors": set(),
    # Which modules run compiled: the package's first import, so it imports nothing.
    "compiled": set(),
    "metrics": {"resolver.dns", "resolver.collectors", "resolver.compiled"},
    "policy": {"resolver.dns", "resolver.config", "resolver.clients", *FOUNDATIONS},
    "upstream": {"resolver.dns", "resolver.config", "resolver.metrics", "resolver.shared"},
    "audit": {
        "resolver.dns",
        "resolver.config",
        "resolver.metrics",
        "resolver.logs",
        "resolver.background",
    },
    "handlers": {
        "resolver.dns",
        "resolver.config",
        "resolver.clients",
        "resolver.policy",
        "resolver.upstream",
        *FOUNDATIONS,
    },
}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "resolver":
            # from resolver import wire: the module named, not the package.
            found.update(f"resolver.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("resolver."):
            found.add(str(node.module))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("resolver"))
    return found


def layer_of(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def allowed(module: str, own: str, permitted: set[str]) -> bool:
    if module == "resolver.__version__":
        return True  # the package's version string, from its __init__
    if module == f"resolver.{own}" or module.startswith(f"resolver.{own}."):
        return True
    return any(module == p or module.startswith(p + ".") for p in permitted)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_only_go_downward(layer: str) -> None:
    files = [p for p in ROOT.rglob("*.py") if layer_of(p) == layer]
    assert files, layer
    wrong = [
        f"{path.relative_to(ROOT.parent)} imports {module}"
        for path in files
        for module in sorted(imports_of(path))
        if not allowed(module, layer, ALLOWED[layer])
    ]
    assert wrong == []


def test_nothing_imports_the_command_line_or_the_server_from_below() -> None:
    for path in ROOT.rglob("*.py"):
        layer = layer_of(path)
        # launch: the entry point, above the command line it imports.
        if layer in ("launch", "cli", "__main__", "serve"):
            continue
        assert not any(
            m in ("resolver.cli", "resolver.serve") or m.startswith("resolver.serve.")
            for m in imports_of(path)
        ), path


def test_every_package_says_what_it_owns_and_may_import() -> None:
    for init in ROOT.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert len(doc) > 80, init
        assert "import" in doc.lower(), init
