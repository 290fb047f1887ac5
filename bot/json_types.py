"""JSON-shaped data, typed: what sessions, events, exports and stored rows are made of.

A leaf module (it imports nothing from ``bot``) so every layer, the engine included, may name
these types. Values read back from storage or the wire are JSON the program wrote itself, but
still checked where read: the ``as_*`` helpers narrow one value the way the code used to
coerce it (``int(...)``, ``dict(...) or {}``), without pretending it has a shape it may lack.
"""

from __future__ import annotations

import json
from typing import TypeAlias

JsonScalar: TypeAlias = str | int | float | bool | None
#: A JSON value. ``list``/``dict`` (not ``Sequence``/``Mapping``) so that
#: ``isinstance(value, dict)`` narrows to ``dict[str, JsonValue]``, not to an untyped ``dict``.
JsonValue: TypeAlias = JsonScalar | list["JsonValue"] | dict[str, "JsonValue"]
#: A JSON object.
JsonObject: TypeAlias = dict[str, JsonValue]


def loads(data: object) -> JsonValue:
    """``json.loads`` of a text or bytes (a stored column, a body): a JSON value by
    construction. Anything but text is a ``TypeError``, as ``json.loads`` itself raises."""
    if not isinstance(data, str | bytes | bytearray):
        raise TypeError(f"expected JSON text, got {type(data).__name__}")
    value: JsonValue = json.loads(data)
    return value


def loads_object(data: object) -> JsonObject:
    """:func:`loads` of a text that must hold an object (a stored session, a payload)."""
    value = loads(data)
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def at(value: JsonValue, *path: str | int) -> JsonValue:
    """The value at ``path`` (object keys, array indexes) inside ``value``: ``at(export,
    "session", "node")``. A missing key or index raises, as indexing would."""
    for step in path:
        if isinstance(value, list) and isinstance(step, int):
            value = value[step]
            continue
        if not isinstance(value, dict) or not isinstance(step, str):
            raise TypeError(f"cannot take {step!r} of {type(value).__name__}")
        value = value[step]
    return value


def as_object(value: object) -> JsonObject:
    """A copy of ``value`` if it is an object, else an empty one (missing or damaged state)."""
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def as_list(value: object) -> list[JsonValue]:
    """``value`` as a list if it is an array, else an empty one."""
    return list(value) if isinstance(value, list | tuple) else []


def as_int(value: object) -> int:
    """``int(value)`` for a number or a numeric string; anything else is a ``TypeError``, as
    ``int()`` itself would raise."""
    if isinstance(value, int | float | str):
        return int(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def as_float(value: object) -> float:
    """``float(value)`` for a number or a numeric string, else a ``TypeError``."""
    if isinstance(value, int | float | str):
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def as_text(value: object) -> str | None:
    """``value`` if it is a string, else ``None`` (a missing optional field)."""
    return value if isinstance(value, str) else None
