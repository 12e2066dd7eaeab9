"""The sizing core's records are frozen dataclasses: bounds checked on construction, JSON with camelCase keys.

Not pydantic models: `vramgate plan` starts a process per call, and importing pydantic and building a
schema per model cost more than the planning. Untrusted input is validated before it gets here (the CRD
spec's pydantic models, the CLI's option types, the config.json reader); these checks keep the same
bounds, and pydantic's wording, for whatever else constructs a record.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from vramgate.sizing.errors import OutOfBoundsError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


def bounded(
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    pattern: str | None = None,
    alias: str | None = None,
) -> dict[str, Any]:
    """Field metadata: the limits `check` enforces, and the JSON key when camelCase would not do."""
    return {"gt": gt, "ge": ge, "le": le, "pattern": pattern and re.compile(pattern), "alias": alias}


@cache
def _limits(record_type: type) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    return tuple(
        (f.name, f.metadata)
        for f in dataclasses.fields(record_type)
        if any(f.metadata.get(key) is not None for key in ("gt", "ge", "le", "pattern"))
    )


def check(record: DataclassInstance) -> None:
    """Raise OutOfBoundsError naming the first field (in declaration order) outside its bounds."""
    for name, limit in _limits(type(record)):
        value = getattr(record, name)
        if value is None:
            continue
        if (pattern := limit["pattern"]) is not None and not pattern.fullmatch(value):
            raise OutOfBoundsError(name, f"String should match pattern '{pattern.pattern}'")
        if (gt := limit["gt"]) is not None and not value > gt:
            raise OutOfBoundsError(name, f"Input should be greater than {gt}")
        if (ge := limit["ge"]) is not None and not value >= ge:
            raise OutOfBoundsError(name, f"Input should be greater than or equal to {ge}")
        if (le := limit["le"]) is not None and not value <= le:
            raise OutOfBoundsError(name, f"Input should be less than or equal to {le}")


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


@cache
def _keys(record_type: type) -> tuple[tuple[str, str], ...]:
    return tuple((f.name, f.metadata.get("alias") or _camel(f.name)) for f in dataclasses.fields(record_type))


def to_json(value: Any) -> Any:
    """A record as JSON data: camelCase keys (or the field's alias) in declaration order, enums as values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {key: to_json(getattr(value, name)) for name, key in _keys(type(value))}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    return value


def from_json(record_type: type[R], data: Mapping[str, Any]) -> R:
    """A record from JSON data keyed by the fields' JSON keys (or their names); other keys are ignored."""
    names = {key: name for name, key in _keys(record_type)} | {name: name for name, _ in _keys(record_type)}
    return record_type(**{names[key]: value for key, value in data.items() if key in names})
