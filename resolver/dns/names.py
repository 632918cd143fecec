"""Host names as administrators write them, in the one form the server compares.

Lowercase ASCII, IDNA applied to non-ASCII names, no trailing dot; labels of letters,
digits, ``-`` and ``_`` (lists carry ``_dmarc``-style names), at most 63 characters
each and 253 in all.
"""

from __future__ import annotations

import re

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def normalise_name(text: str) -> str | None:
    """Lowercase ASCII form of a hostname, or None when it is not one."""
    name = text.strip().rstrip(".").lower()
    if not name:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    # Checked after IDNA, which lengthens names: a longer one does not fit the wire format.
    if len(name) > 253:
        return None
    labels = name.split(".")
    if len(labels) < 1 or not all(_LABEL.match(label) for label in labels):
        return None
    return name
