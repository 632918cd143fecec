"""The compiled hot path as installed (``make install`` builds it where a C compiler is at
hand): what runs is what the build made, a module edited since runs from its source,
and the real server answers the same, compiled or from source (README, "Compiled hot
modules")."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from resolver import compiled
from tests.fakes.upstream import FakeUpstream
from tests.peers.aiwall import Aiwall, query
from tests.peers.ports import free_port

ROOT = compiled.PACKAGE.parent
BUILT = [path for path in ROOT.glob("resolver/**/*.so")]

needs_build = pytest.mark.skipif(
    not BUILT, reason="this checkout was built without a C compiler: nothing compiled to check"
)


def _where(code: str, pythonpath: Path, **env: str) -> list[str]:
    """Run ``code`` in a fresh interpreter importing resolver from ``pythonpath``."""
    clean = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(pythonpath), **env}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=pythonpath,
        env=clean,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


FILES = (
    "import resolver.compiled as c\n"
    "print(c.STATUS)\n"
    "import importlib\n"
    "for path in c.MODULES:\n"
    "    print(importlib.import_module(c.module_name(path)).__file__)\n"
)


@needs_build
def test_this_checkout_runs_the_modules_its_build_compiled() -> None:
    """What the test suite itself runs: a failure here after an edit means the build is
    stale (``make compile``), and the suite would test the source, not the build."""
    status, *files = _where(FILES, ROOT)
    assert status == f"compiled: {len(compiled.MODULES)} modules"
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    assert all(file.endswith(suffixes) for file in files), files
    # And so does the suite, unless it was asked to run from source.
    assert compiled.COMPILED or os.environ.get(compiled.PURE_ENV, "") not in ("", "0")


@needs_build
def test_a_module_edited_after_the_build_runs_from_source_with_all_the_others(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "checkout"
    shutil.copytree(
        ROOT / "resolver", copy / "resolver", ignore=shutil.ignore_patterns("__pycache__")
    )
    for shared in ROOT.glob("resolver__mypyc*.so"):
        shutil.copy(shared, copy)
    with (copy / "resolver/dns/wire.py").open("a") as source:
        source.write("\nEDITED = 'after the build'\n")
    status, *files = _where(FILES + "import resolver.dns.wire as w\nprint(w.EDITED)\n", copy)
    assert status == "pure Python: source changed since the build: dns/wire.py"
    assert files[-1] == "after the build"
    assert all(file.endswith(".py") for file in files[:-1]), files
    # Without the edit, the same copy runs compiled.
    shutil.copy(ROOT / "resolver/dns/wire.py", copy / "resolver/dns/wire.py")
    assert _where(FILES, copy)[0] == f"compiled: {len(compiled.MODULES)} modules"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        fake.set_records("www.example.test", "CNAME", ["edge.banned.test."])
        fake.set_records("edge.banned.test", "A", ["192.0.2.7"])
        fake.set_records("docs.example.test", "A", ["192.0.2.8"])
        yield fake


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "source"])
def test_the_server_blocks_and_forwards_the_same_compiled_or_from_source(
    pure: bool,
    upstream: FakeUpstream,
    tmp_path: Path,
    catalog_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if pure:
        monkeypatch.setenv("AIWALL_PURE", "1")
    elif not compiled.COMPILED:
        pytest.skip(f"not compiled here ({compiled.STATUS})")
    else:
        monkeypatch.delenv("AIWALL_PURE", raising=False)
    (tmp_path / "banned.txt").write_text("banned.test\n")
    config = {
        "listen": {"dns": [f"127.0.0.1:{free_port()}"], "http": f"127.0.0.1:{free_port()}"},
        "upstream": {"servers": [upstream.server_spec], "timeout": 0.5},
        "blocking": {"lists": [str(tmp_path / "banned.txt")]},
        "state": {"directory": str(tmp_path / "state")},
    }
    server = Aiwall(config, tmp_path, catalog_dir=catalog_dir)
    try:
        server.wait_serving()
        host, port = server.address
        # A banned name, twice (the second from the fast path), a name whose CNAME
        # leads to it (found in the upstream's answer), and a name to forward, twice
        # (the second from the cache).
        for _ in range(2):
            assert query(host, port, "api.banned.test").rcode() == dns.rcode.NXDOMAIN
            assert query(host, port, "www.example.test").rcode() == dns.rcode.NXDOMAIN
            answer = query(host, port, "docs.example.test")
            assert answer.rcode() == dns.rcode.NOERROR
            assert [str(item) for rrset in answer.answer for item in rrset] == ["192.0.2.8"]
        assert server.metric("aiwall_build_info", compiled="no" if pure else "yes") == 1
        assert upstream.answer_count("docs.example.test") == 1
        assert server.metric("aiwall_cache_hits_total") >= 1
    finally:
        server.stop()
