"""The classes made for every answer write their own __init__ (resolver.dns.model, Query):
compiled, the one the dataclass decorator writes runs as bytecode. Each must still take
exactly its fields, in order, with their defaults, as the decorator's would, and an
answer must still pickle."""

from __future__ import annotations

import dataclasses
import importlib
import pickle
from typing import Any

import pytest

from resolver import compiled
from resolver.dns.edns import Edns
from resolver.dns.model import Answer, Outcome, Query
from resolver.dns.wire import ResponseScan
from resolver.upstream.udp import Expected

HOT = (Query, Answer, ResponseScan, Expected, Edns)
# Dataclasses of the compiled modules made only when the configuration is read.
MADE_AT_START = {"resolver.upstream.messages.Upstream"}


# A value for each field, by name (compiled classes check their arguments' types, and
# their fields' annotations are not kept in full): no two alike, none its default.
VALUES: dict[str, Any] = {
    "raw": b"raw",
    "id": 1001,
    "flags": 1002,
    "qdcount": 1003,
    "qname": b"qname",
    "labels": (1, 2),
    "qtype": 1004,
    "qclass": 1005,
    "question_end": 1006,
    "edns": Edns(1007, 0, True),
    "protocol": "protocol",
    "client": "client",
    "problem": "problem",
    "message": b"message",
    "outcome": Outcome.STALE,
    "rcode": 1008,
    "ede": (1009, "ede"),
    "service": "service",
    "category": "category",
    "group": "group",
    "cnames": (b"cname",),
    "ttl_offsets": (3, 4),
    "cache_ttl": 1010,
    "reuse_until": 1011.5,
    "countdown": (1012.5, 1013),
    "min_ttl": 1014,
    "negative_ttl": 1015,
    "opt_start": 1016,
    "opt_end": 1017,
    "huge_ttls": True,
    "ident": 1018,
    "type_class": b"type_class",
    "payload": 1019,
    "version": 1020,
    "do": True,
}


def _distinct_values(cls: type) -> dict[str, Any]:
    names = [field.name for field in dataclasses.fields(cls)]
    for name in names:
        assert name in VALUES, f"{cls.__name__}.{name}: give it a value in VALUES"
    return {name: VALUES[name] for name in names}


@pytest.mark.parametrize("cls", HOT, ids=lambda cls: cls.__name__)
def test_every_field_is_set_from_its_argument_by_name_and_by_position(cls: type) -> None:
    values = _distinct_values(cls)
    by_name = cls(**values)
    by_position = cls(*values.values())
    for name, value in values.items():
        assert getattr(by_name, name) == value
        assert getattr(by_position, name) == value
    assert dataclasses.replace(by_name) == by_name


def test_an_answer_travels_between_workers_whole() -> None:
    # resolver.serve.relay pickles answers; compiled, unpickling runs __init__.
    answer = Answer(**_distinct_values(Answer))
    assert pickle.loads(pickle.dumps(answer)) == answer


@pytest.mark.parametrize("cls", HOT, ids=lambda cls: cls.__name__)
def test_the_defaults_are_the_fields_defaults(cls: type) -> None:
    fields = dataclasses.fields(cls)
    values = _distinct_values(cls)
    required = {f.name: values[f.name] for f in fields if f.default is dataclasses.MISSING}
    made = cls(**required)
    for field in fields:
        if field.name not in required:
            assert getattr(made, field.name) == field.default, field.name
    with pytest.raises(TypeError):
        cls(**required, not_a_field=1)


def test_no_dataclass_of_the_hot_path_runs_the_decorators_init_when_compiled() -> None:
    if not compiled.COMPILED:
        pytest.skip("runs from source (AIWALL_PURE or no build)")
    generated = []
    for path in compiled.MODULES:
        module = importlib.import_module(compiled.module_name(path))
        for value in vars(module).values():
            if not (dataclasses.is_dataclass(value) and value.__module__ == module.__name__):
                continue
            name = f"{module.__name__}.{value.__qualname__}"
            init = vars(value).get("__init__")
            # The decorator's __init__ is a function compiled from a string.
            if getattr(getattr(init, "__code__", None), "co_filename", "") == "<string>":
                generated.append(name)
    assert sorted(generated) == sorted(MADE_AT_START)
