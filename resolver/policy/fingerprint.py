"""A short digest of what a built policy decides, the same on every replica that
decides alike: for telling replicas that disagree apart (``aiwall_policy_info``).

The policy's version number cannot serve: each server counts its own builds. The
digest covers the policy's inputs once parsed, never paths or times of loading: the
policy settings of the config (the default's and every group's, with the groups'
client networks), the catalog in force, and every list's SHA-256 as stored (hashed in
C, without the interpreter lock held for long). A list read again by a refresh that
yields the same bytes keeps the digest.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from resolver.policy.catalog import Catalog
from resolver.policy.lists import ListPart


def canonical(value: Any) -> Any:
    """``value`` as JSON-ready data that does not depend on the process: sets sorted,
    dataclasses as their fields, anything else by its text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [type(value).__name__] + [
            [field.name, canonical(getattr(value, field.name))]
            for field in dataclasses.fields(value)
        ]
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return sorted([canonical(k), canonical(v)] for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(item) for item in value), key=json.dumps)
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return str(value)


def _text(value: Any) -> bytes:
    return json.dumps(canonical(value), separators=(",", ":")).encode()


def policy_fingerprint(
    settings: Iterable[Any], catalog: Catalog | None, parts: Iterable[ListPart]
) -> str:
    """16 hex digits: equal for equal policies, from any process or machine."""
    digest = hashlib.sha256()
    for item in settings:
        digest.update(_text(item))
    digest.update(_text(catalog.services if catalog is not None else None))
    for part in parts:
        # The stored list, not its parse: the compact table keys are salted per process.
        digest.update(_text([part.source, part.digest]))
    return digest.hexdigest()[:16]
