"""``aiwall catalog keygen``, ``bundle`` and ``diff`` as a publisher and an admin use them."""

from __future__ import annotations

from pathlib import Path

import yaml

from resolver.cli import main
from tests.peers.catalogfeed import Publisher, write_catalog

SHIPPED = {"alpha": ["alpha-ai.example"], "beta": ["beta-ai.example", "api.beta-ai.example"]}


def test_keygen_never_replaces_a_key(tmp_path, capsys):
    assert main(["catalog", "keygen", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    public = (tmp_path / "catalog-signing.pub").read_text().strip()
    assert f"public_key: {public}" in out
    assert (tmp_path / "catalog-signing.key").stat().st_mode & 0o777 == 0o600
    assert main(["catalog", "keygen", "--output", str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err


def test_a_bundle_needs_a_higher_serial_than_the_one_it_replaces(tmp_path, capsys):
    publisher = Publisher(tmp_path)
    catalog = write_catalog(tmp_path / "catalog", SHIPPED)
    argv = ["catalog", "bundle", "--key", str(publisher.key), "--output", str(tmp_path / "out")]
    argv += ["--catalog", str(catalog)]
    assert main([*argv, "--serial", "10"]) == 0
    assert "serial 10, 2 services, 3 domains" in capsys.readouterr().out
    assert main([*argv, "--serial", "10"]) == 1
    assert "has serial 10" in capsys.readouterr().err
    assert main(argv) == 0  # the default serial, the time, is higher


def test_diff_shows_what_a_bundle_adds_and_removes_and_whether_it_would_apply(tmp_path, capsys):
    publisher = Publisher(tmp_path / "publisher")
    shipped = write_catalog(tmp_path / "shipped", SHIPPED)
    update = {"alpha": ["alpha-ai.example", "new.alpha-ai.example"], "gamma": ["gamma.example"]}
    bundle, signature = publisher.build(update, serial=3)
    path = tmp_path / "catalog.json"
    path.write_text(bundle)
    (tmp_path / "catalog.json.sig").write_text(signature)
    config = tmp_path / "aiwall.yaml"
    source = {"url": "https://mirror.example/catalog.json", "public_key": publisher.public_key}
    config.write_text(yaml.safe_dump({"catalog": {"sources": [source]}}))

    argv = ["catalog", "diff", "--config", str(config), "--catalog", str(shipped)]
    assert main([*argv, "--source", str(path)]) == 0
    out = capsys.readouterr().out
    assert "serial 3" in out
    assert "+ gamma: Gamma AI (Gamma Inc., US): gamma.example" in out
    assert "- beta: Beta AI: beta-ai.example, api.beta-ai.example" in out
    assert "~ alpha: +new.alpha-ai.example" in out
    assert "names the config's policy blocks: +2 -2" in out
    assert out.rstrip().endswith("would be applied")

    bundle, signature = publisher.build({"alpha": ["alpha-ai.example"]}, serial=4)
    path.write_text(bundle)
    (tmp_path / "catalog.json.sig").write_text(signature)
    assert main([*argv, "--source", str(path)]) == 0
    assert "would be rejected (shrink): 2 services down to 1" in capsys.readouterr().out

    (tmp_path / "catalog.json.sig").write_text(Publisher(tmp_path / "other").build(update, 3)[1])
    assert main([*argv, "--source", str(path)]) == 1
    assert "cannot be used (signature)" in capsys.readouterr().out


def test_diff_without_a_configured_source_needs_a_key(tmp_path, capsys):
    bundle = Path(tmp_path / "catalog.json")
    bundle.write_text("{}")
    assert main(["catalog", "diff", "--source", str(bundle)]) == 1
    assert "--public-key is needed" in capsys.readouterr().err
