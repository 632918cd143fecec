"""A whole list text read into entries and skipped lines, for tests that check what a
list (or an export read back as a list) holds."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from resolver.policy.listfile import Entry, ScanReport, scan_list


@dataclass
class Parsed:
    entries: list[Entry] = field(default_factory=list)
    report: ScanReport = field(default_factory=lambda: ScanReport(keep=1000))

    @property
    def rejected(self) -> list[tuple[int, str]]:
        """Every skipped line, whatever its class, as (number, text), in file order."""
        return sorted(line for shown in self.report.examples.values() for line in shown)

    def skipped(self, kind: str) -> list[int]:
        """The line numbers skipped as ``kind``."""
        return [number for number, _ in self.report.examples.get(kind, [])]

    @property
    def kept(self) -> list[Entry]:
        """The entries, less those that later rules of the list took back."""
        taken = self.report.retracted
        return [e for e in self.entries if (e.name, e.below_only, e.allow) not in taken]


def parse_list(text: str, list_format: str = "auto") -> Parsed:
    parsed = Parsed()
    parsed.entries.extend(scan_list(lambda: io.StringIO(text), parsed.report, list_format))
    return parsed
