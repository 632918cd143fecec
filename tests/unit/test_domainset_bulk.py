"""Large lists kept as a shared table of name keys: same answers as exact entries, most
specific still wins, the first list to claim a name keeps it."""

from __future__ import annotations

import os
import subprocess
import sys
from array import array
from pathlib import Path

from resolver.dns import wire
from resolver.policy.domainset import DomainSet
from resolver.policy.nametable import NameTable, build_table, table_key


def keys(*names: str) -> array[int]:
    return array("Q", sorted({table_key(n.encode()) for n in names}))


def with_lists(*lists: tuple[str, tuple[str, ...]]) -> DomainSet[str]:
    domains: DomainSet[str] = DomainSet()
    groups = [(keys(*names), index) for index, (_, names) in enumerate(lists)]
    table = NameTable(build_table(groups, sum(len(g) for g, _ in groups)))
    domains.attach_table(table, [value for value, _ in lists])
    return domains


def match(domains: DomainSet[str], name: str):
    key = wire.text_to_name(name)
    return domains.match(key, wire.label_starts(key))


def test_table_names_cover_their_subdomains_only():
    domains = with_lists(("list", ("deepseek.com", "x.y.example", "deepseek.com")))
    assert match(domains, "deepseek.com").value == "list"
    assert match(domains, "a.b.deepseek.com").label == 2
    assert match(domains, "notdeepseek.com") is None
    assert match(domains, "y.example") is None
    assert match(domains, "com") is None
    assert len(domains) == 2


def test_exact_entries_win_at_the_same_label_and_deeper_entries_win_over_the_table():
    domains = with_lists(("list", ("deepseek.com", "platform.deepseek.com")))
    domains.add(wire.text_to_name("deepseek.com"), "catalog")
    domains.add(wire.text_to_name("api.platform.deepseek.com"), "allow")
    assert match(domains, "chat.deepseek.com").value == "catalog"
    assert match(domains, "x.platform.deepseek.com").value == "list"
    assert match(domains, "v1.api.platform.deepseek.com").value == "allow"


def test_the_first_list_to_claim_a_name_keeps_it():
    domains = with_lists(
        ("first", ("shared.example",)), ("second", ("shared.example", "other.example"))
    )
    assert match(domains, "a.shared.example").value == "first"
    assert match(domains, "other.example").value == "second"


def test_a_million_names_fit_in_about_twenty_megabytes_and_all_are_found():
    names = [f"n{i}.bulk.example" for i in range(1_000_000)]
    table = NameTable(build_table([(keys(*names), 0)], len(names)))
    assert table.nbytes < 22 * 1024 * 1024
    assert all(table.get(table_key(n.encode())) == 0 for n in names[::997])
    misses = sum(table.get(table_key(f"m{i}.bulk.example".encode())) >= 0 for i in range(10_000))
    assert misses == 0


def test_a_table_written_to_a_file_is_read_in_place_by_another_process_with_the_hash_secret(
    tmp_path: Path,
):
    names = ("deepseek.com", "kimi.ai")
    path = tmp_path / "table.bin"
    # Keys are Python's hash(): only processes with the same hash secret agree on them,
    # which is why workers are forked from the process that builds the table.
    env = {**os.environ, "PYTHONHASHSEED": "1234"}
    write = (
        "import sys; from array import array; from resolver.policy.nametable import *;"
        "k = array('Q', sorted(table_key(n.encode()) for n in sys.argv[2:]));"
        "open(sys.argv[1], 'wb').write(build_table([(k, 7)], len(k)))"
    )
    subprocess.run([sys.executable, "-c", write, str(path), *names], check=True, env=env)
    read = (
        "import sys; from pathlib import Path; from resolver.policy.nametable import *;"
        "t = NameTable.map_file(Path(sys.argv[1]));"
        "print([t.get(table_key(n.encode())) for n in sys.argv[2:]])"
    )
    same = subprocess.run(
        [sys.executable, "-c", read, str(path), *names, "other.ai"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    assert same.stdout.strip() == "[7, 7, -1]"


def test_a_pickled_set_keeps_its_exceptions_over_the_table():
    """Policies reach the workers pickled (``policy.published``): the entries that win
    over the table (an allow below a listed name) must still be found after."""
    import pickle

    domains = with_lists(("list", ("example-ai.net", "other.example")))
    domains.add(wire.text_to_name("ok.example-ai.net"), "allow")
    copy: DomainSet[str] = pickle.loads(pickle.dumps(domains))
    assert domains.table is not None
    copy.reattach(domains.table)
    assert match(copy, "x.ok.example-ai.net").value == "allow"
    assert match(copy, "x.example-ai.net").value == "list"
    assert match(copy, "a.other.example").label == 1


def test_the_table_is_probed_from_the_most_specific_label_whatever_the_entries():
    domains = with_lists(("list", ("b.example-ai.net", "a.b.example-ai.net")))
    domains.add(wire.text_to_name("example-ai.net"), "catalog")
    assert match(domains, "x.a.b.example-ai.net").value == "list"
    assert match(domains, "x.a.b.example-ai.net").label == 1
    assert match(domains, "c.example-ai.net").value == "catalog"
    assert match(domains, "example-ai.net").value == "catalog"
    assert match(domains, "net") is None
