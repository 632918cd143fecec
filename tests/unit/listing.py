"""A whole list text read into entries and rejected lines, for tests that check what a
list (or an export read back as a list) holds."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from resolver.policy.listfile import Entry, scan_list


@dataclass
class Parsed:
    entries: list[Entry] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def parse_list(text: str) -> Parsed:
    parsed = Parsed()
    parsed.entries.extend(scan_list(io.StringIO(text), parsed.rejected))
    return parsed
