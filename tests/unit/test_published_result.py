"""What the server takes from a builder process (``policy.published``): a whole policy
built with its own hash secret, or a PolicyError; never something half-read."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from resolver.config import Config
from resolver.metrics import Metrics
from resolver.policy.loading import BuiltPolicy, PolicyError
from resolver.policy.nametable import table_key
from resolver.policy.published import (
    HASH_PROBE,
    RESULT_NAME,
    BuildRequest,
    BuildResult,
    KnownCatalog,
    Published,
    build_published,
    catalog_digest,
    take_result,
)
from resolver.policy.source import PolicySource
from tests.support import make_config

LISTED = 2_000


@pytest.fixture
def config(tmp_path: Path) -> Config:
    listed = tmp_path / "listed.txt"
    listed.write_text("".join(f"n{index}.listed.test\n" for index in range(LISTED)))
    return make_config(
        "127.0.0.1:53",
        base_dir=tmp_path,
        blocking={"lists": [str(listed)]},
        state={"directory": str(tmp_path / "state")},
    )


def request_in(config: Config, catalog_dir: Path, folder: Path) -> BuildRequest:
    folder.mkdir()
    return BuildRequest(config, catalog_dir, folder, 2)


def source_of(config: Config, catalog_dir: Path) -> tuple[PolicySource, Metrics]:
    metrics = Metrics()
    return PolicySource(config, metrics, catalog_dir), metrics


def blocked(name: str, built: BuiltPolicy) -> bool:
    return built.groups.default.blocklist.decide(name).blocked


def test_a_build_published_here_is_taken_whole_and_blocks_its_names(
    config: Config, catalog_dir: Path, tmp_path: Path
) -> None:
    request = request_in(config, catalog_dir, tmp_path / "build")
    build_published(request)
    source, _ = source_of(config, catalog_dir)
    built, known = take_result(request, source)
    assert known is not None
    assert known.catalog is built.catalog
    assert all(blocked(f"n{index}.listed.test", built) for index in range(0, LISTED, 97))
    assert not blocked("n1.unlisted.test", built)
    assert built.fingerprint == source.build(starting=True).fingerprint


def test_a_catalog_held_already_is_kept_rather_than_loaded_again(
    config: Config, catalog_dir: Path, tmp_path: Path
) -> None:
    """Most reloads change lists, not the catalog: the server keeps the catalog object it
    has (unpickling and freeing it stalled the event loop for 10-25 ms), but only the
    one whose published form is the same, byte for byte."""
    source, _ = source_of(config, catalog_dir)
    at_start = source.build(starting=True).catalog
    assert at_start is not None
    same = KnownCatalog(catalog_digest(at_start)[0], at_start)
    other = KnownCatalog("0" * 64, at_start)
    for known, kept in ((same, True), (other, False)):
        request = request_in(config, catalog_dir, tmp_path / f"build-{kept}")
        build_published(request)
        built, now_known = take_result(request, source, known)
        assert (built.catalog is at_start) is kept
        assert built.catalog == at_start
        assert now_known is not None
        assert now_known.digest == same.digest


def write_result(request: BuildRequest, result: object) -> None:
    (request.directory / RESULT_NAME).write_bytes(pickle.dumps(result))


def test_a_failed_build_says_why_and_its_rejected_lists_are_counted_here(
    config: Config, catalog_dir: Path, tmp_path: Path
) -> None:
    request = request_in(config, catalog_dir, tmp_path / "build")
    failed = BuildResult(None, "listed.txt: 9 entries down to 1", [("list:listed.txt", "shrink")])
    write_result(request, failed)
    source, metrics = source_of(config, catalog_dir)
    with pytest.raises(PolicyError, match="9 entries down to 1"):
        take_result(request, source)
    counted = metrics.registry.get_sample_value(
        "aiwall_list_refresh_failures_total", {"source": "list:listed.txt", "reason": "shrink"}
    )
    assert counted == 1


@pytest.mark.parametrize(
    ("junk", "reason"),
    [
        (b"", "unreadable"),
        (b"\x80\x05garbage", "unreadable"),
        (pickle.dumps({"published": "x"}), "not one"),
        (pickle.dumps(BuildResult(None, "")), "did not say why"),
    ],
)
def test_a_result_that_is_not_one_is_refused(
    config: Config, catalog_dir: Path, tmp_path: Path, junk: bytes, reason: str
) -> None:
    request = request_in(config, catalog_dir, tmp_path / "build")
    (request.directory / RESULT_NAME).write_bytes(junk)
    with pytest.raises(PolicyError, match=reason):
        take_result(request, source_of(config, catalog_dir)[0])


def test_a_missing_result_is_refused(config: Config, catalog_dir: Path, tmp_path: Path) -> None:
    request = request_in(config, catalog_dir, tmp_path / "build")
    with pytest.raises(PolicyError, match="unreadable"):
        take_result(request, source_of(config, catalog_dir)[0])


def test_a_garbled_table_or_policy_file_is_refused(
    config: Config, catalog_dir: Path, tmp_path: Path
) -> None:
    for name in ("table", "pickle"):
        request = request_in(config, catalog_dir, tmp_path / f"build-{name}")
        build_published(request)
        (request.directory / f"policy-2.{name}").write_bytes(b"AIWNT001" + b"\x01" * 64)
        with pytest.raises(PolicyError, match="policy is unreadable"):
            take_result(request, source_of(config, catalog_dir)[0])


def test_files_outside_the_build_folder_are_refused(
    config: Config, catalog_dir: Path, tmp_path: Path
) -> None:
    request = request_in(config, catalog_dir, tmp_path / "build")
    elsewhere = Published(2, None, tmp_path / "policy-2.pickle")
    write_result(request, BuildResult(elsewhere, "", [], table_key(HASH_PROBE)))
    with pytest.raises(PolicyError, match="outside its folder"):
        take_result(request, source_of(config, catalog_dir)[0])


def test_a_builder_with_another_hash_secret_is_refused(
    config: Config, catalog_dir: Path, tmp_path: Path
) -> None:
    """A freshly started interpreter hashes names with its own secret: its table would
    match none of the names this process looks up (every listed name would resolve)."""
    request = request_in(config, catalog_dir, tmp_path / "build")
    (tmp_path / "request.pickle").write_bytes(pickle.dumps(request))
    build = (
        "import pickle, sys; from resolver.policy.published import build_published;"
        "build_published(pickle.load(open(sys.argv[1], 'rb')))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "1234"}
    subprocess.run(
        [sys.executable, "-c", build, str(tmp_path / "request.pickle")], check=True, env=env
    )
    with pytest.raises(PolicyError, match="another hash secret"):
        take_result(request, source_of(config, catalog_dir)[0])
