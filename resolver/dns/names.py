"""Host names as administrators write them, in the one form the server compares.

Lowercase ASCII, no trailing dot; labels of letters, digits, ``-`` and ``_`` (lists carry
``_dmarc``-style names), at most 63 characters each and 253 in all.

A name with non-ASCII letters becomes the ASCII name a browser would look up: UTS 46
processing, non-transitional as current browsers do (``faß.de`` is ``xn--fa-hia.de``,
not ``fass.de`` as with Python's own IDNA 2003 codec), with the URL Standard's
settings: no STD3 rule (``_`` stays allowed) and no hyphen check, but each non-ASCII
label held to IDNA 2008's rules for joiners, combining marks and right-to-left text.
"""

from __future__ import annotations

import re

import idna

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_JOINERS = "\u200c\u200d"


def _ascii_label(label: str) -> str:
    """One label, already mapped by UTS 46, as it goes on the wire; raises IDNAError."""
    if label.isascii():
        return label
    idna.check_initial_combiner(label)
    for position, character in enumerate(label):
        if character in _JOINERS and not idna.valid_contextj(label, position):
            raise idna.IDNAError(f"joiner not allowed at position {position}")
    idna.check_bidi(label)
    return "xn--" + label.encode("punycode").decode("ascii")


def to_ascii(name: str) -> str | None:
    """The ASCII form of a name written with non-ASCII letters; None when browsers
    would refuse it (a disallowed code point, a misplaced joiner, mixed directions)."""
    try:
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
        return ".".join(_ascii_label(label) for label in mapped.split("."))
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def normalise_name(text: str) -> str | None:
    """Lowercase ASCII form of a hostname, or None when it is not one."""
    name = text.strip().rstrip(".")
    if not name:
        return None
    if name.isascii():
        name = name.lower()
    else:
        converted = to_ascii(name)
        if converted is None:
            return None
        name = converted.rstrip(".")
    # Checked after IDNA, which lengthens names: a longer one does not fit the wire format.
    if len(name) > 253:
        return None
    labels = name.split(".")
    if len(labels) < 1 or not all(_LABEL.match(label) for label in labels):
        return None
    return name
