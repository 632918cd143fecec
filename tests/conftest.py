from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import yaml

from resolver.config import load_config
from tests.fakes.upstream import FakeUpstream
from tests.support import RunningServer, make_config

# CI (HYPOTHESIS_PROFILE=ci, set by .ci/run and the Makefile): the same examples every
# run, and no per-example deadline on a busy 2-core machine. Explicit settings win.
hypothesis.settings.register_profile("ci", derandomize=True, deadline=None, max_examples=100)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake
        assert fake.errors == []


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    """A one-service catalog, so integration tests do not depend on the shipped data."""
    directory = tmp_path / "catalog"
    directory.mkdir()
    (directory / "deepseek.yaml").write_text(
        """\
id: deepseek
name: DeepSeek
vendor: Hangzhou DeepSeek Artificial Intelligence Co., Ltd.
vendor_country: CN
data_location:
  country: CN
  source: https://platform.deepseek.com/downloads/DeepSeek%20Privacy%20Policy.html
categories: [chat_assistant, api_developer_platform]
domains:
  - name: deepseek.com
    role: ui
  - name: api.deepseek.com
    role: api
sources: [https://www.deepseek.com/]
verified: 2026-11-22
""",
        encoding="utf-8",
    )
    return directory


@pytest.fixture
def start_server(
    upstream: FakeUpstream, catalog_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., RunningServer]]:
    """Start the real server against the fake upstream; sections override the config."""
    running: list[RunningServer] = []

    def start(upstreams: str | list[str] | None = None, **sections: Any) -> RunningServer:
        config = make_config(upstreams or upstream.server_spec, base_dir=tmp_path, **sections)
        server = RunningServer(config, catalog_dir=catalog_dir).start()
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@pytest.fixture
def start_from_file(
    upstream: FakeUpstream, catalog_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., tuple[RunningServer, Path]]]:
    """Start the real server from a YAML file, as ``aiwall serve --config`` does, so that a
    reload reads the file again. Returns the server and the file (edit it, then reload)."""
    running: list[RunningServer] = []

    def start(**sections: Any) -> tuple[RunningServer, Path]:
        raw: dict[str, Any] = {
            "listen": {"dns": ["127.0.0.1:0"], "http": "127.0.0.1:0"},
            "upstream": {"servers": [upstream.server_spec], "timeout": 0.5},
        }
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        path = tmp_path / "aiwall.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        config = load_config(path)
        server = RunningServer(config, catalog_dir=catalog_dir, config_path=path).start()
        running.append(server)
        return server, path

    yield start
    for server in running:
        server.stop()
