"""YAML as the config and the catalog read it: strict about keys, literal about dates.

Two changes to PyYAML's safe loader:
- a key given twice in one mapping is an error (PyYAML keeps the last one, so a second
  ``blocking:`` section would silently drop the first, bans included);
- dates and times stay text (``until: 2026-12-31`` unquoted, as people write it), so the
  code that knows what the value means parses it and names the key when it is wrong.
"""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's parser when PyYAML was built with it (its wheels are): the catalog is a few
# hundred files, read at every start and reload.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StrictLoader(_Base):  # type: ignore[valid-type,misc]
    """yaml.safe_load with duplicate keys refused and timestamps kept as text."""


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    return loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else node.value


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.Node) -> dict[Any, Any]:
    assert isinstance(node, yaml.MappingNode)
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            continue  # unhashable: construct_mapping reports it with its position
        if key in seen:
            line = key_node.start_mark.line + 1
            first = seen[key].start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} appears twice in one mapping (line {first} and line {line})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=True)


StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def load(text: str) -> Any:
    """Parse one YAML document; raises yaml.YAMLError."""
    return yaml.load(text, Loader=StrictLoader)


def load_all(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=StrictLoader))
