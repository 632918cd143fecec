"""The README is a contract: every config example in it and in deploy/ loads.

Each fenced ``yaml`` block of README.md and deploy/README.md, and every shipped config
file, goes through the same strict loader as ``aiwall serve`` (so an unquoted date, a
duplicated section or a misspelled key fails here before a user meets it), and its
policy is built against the shipped catalog.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from resolver import yamltext
from resolver.config import Config, config_from_mapping, load_config
from resolver.policy.loading import load_policy
from tests.peers.tlsca import TestCA

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "deploy" / "README.md"]
CONFIG_FILES = [
    ROOT / "deploy" / "aiwall.yaml",
    ROOT / "deploy" / "container.yaml",
    ROOT / "deploy" / "systemd" / "aiwall.yaml",
    ROOT / "deploy" / "kubernetes" / "aiwall.yaml",
]
_FENCE = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def yaml_blocks() -> list[tuple[str, str]]:
    blocks = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((f"{document.relative_to(ROOT)}:{line}", match.group(1)))
    return blocks


def loads_and_builds(config: Config) -> None:
    # List files named in examples are placeholders; everything else must build.
    blocking = dataclasses.replace(config.blocking, lists=(), remote_lists=())
    load_policy(dataclasses.replace(config, blocking=blocking))


BLOCKS = yaml_blocks()


@pytest.mark.parametrize(("where", "text"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_every_yaml_example_in_the_docs_is_a_valid_config(where, text, tmp_path):
    documents = yamltext.load_all(text)
    assert documents, where
    # Examples with DoT/DoH name tls/aiwall.pem and tls/aiwall.key: the certificate is
    # loaded with the config, so they get real files, made by the test's own CA.
    if "tls:" in text:
        issued = TestCA(tmp_path / "tls").issue(["dns.corp.example"], stem="aiwall")
        assert issued.certificate == tmp_path / "tls" / "aiwall.pem"
    for document in documents:
        config = config_from_mapping(document, base_dir=tmp_path)
        loads_and_builds(config)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_file_loads(path):
    loads_and_builds(load_config(path))


def test_the_docs_have_examples_to_check():
    assert len(BLOCKS) >= 3


def test_every_test_the_readme_names_exists():
    """The security section names the test behind each promise: each must exist."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tests = {
        path.name: path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("test_*.py")
    }
    every = "\n".join(tests.values())
    named = re.findall(r"`((?:test_\w+\.py)?(?:::)?(?:test_\w+\*?)?)`", readme)
    checked = 0
    for reference in named:
        module, _, function = reference.rpartition("::")
        if reference.endswith(".py"):
            module, function = reference, ""
        if module:
            assert module in tests, f"README names {module}, which does not exist"
        if function:
            source = tests[module] if module else every
            pattern = rf"def {function.rstrip('*')}" + ("" if function.endswith("*") else r"\(")
            assert re.search(pattern, source), f"README names {reference}, which does not exist"
        checked += 1
    assert checked > 30
