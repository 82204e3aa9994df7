"""Parsing and validating a client's ``sub`` message.

``["sub", component, "get", index, value]`` and
``["sub", component, "range", index, left[, right, limit, desc, force]]``. A malformed
message is a :class:`~.protocol.ProtocolViolation` (the connection is dropped); a
well-formed one that cannot match anything is answered with no subscription.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.backend.base import Bounds
from ..data.backend.bounds import int_limits, normalize_bounds
from .protocol import ProtocolViolation

INT64 = np.iinfo(np.int64)
# A string value or bound of a subscription may be this long, or one longer than its
# column's width: a range subscription keeps its bounds (and its id, which spells them
# out) while it lasts, so megabyte bounds times the subscription cap would pin a lot of
# memory per connection.
MAX_BOUND_LENGTH = 1024

NO_ROW = ["sub", None, None]
NO_ROWS = ["sub", None, []]


class UnknownComponent(Exception):
    """The ``sub`` names a component the app does not have (rejected, see BAD_SUBS)."""


@dataclass(frozen=True)
class GetRequest:
    """``sub get``: one row, by id (``row_id``) or by another index (``bounds``)."""

    table: Any
    index: str
    row_id: int | None
    bounds: Bounds | None


@dataclass(frozen=True)
class RangeRequest:
    """``sub range``: the first ``limit`` rows of an index range."""

    table: Any
    index: str
    left: Any
    right: Any
    bounds: Bounds
    limit: int
    desc: bool
    force: bool

    @property
    def sub_id(self) -> str:
        """The id the reference gives it: it spells out the bounds as the client sent them."""
        name = self.table.comp_cls.name_
        return f"{name}.{self.index}[{self.left}:{self.right}:{-1 if self.desc else 1}][:{self.limit}]"


def parse_sub(message: list, find_table: Callable[[Any], Any],
              readable: Callable[[Any], bool]) -> GetRequest | RangeRequest | list:
    """The request, or the reply that ends it without a subscription.

    Raises :class:`ProtocolViolation` for a malformed message and
    :class:`UnknownComponent` for a component the app does not define.
    """
    if len(message) < 3:
        raise ProtocolViolation("sub needs a component and an operation")
    table = find_table(message[1]) if isinstance(message[1], str) else None
    if table is None:
        raise UnknownComponent(message[1])
    op = message[2]
    if op == "get":
        if len(message) != 5 or not isinstance(message[3], str):
            raise ProtocolViolation("sub get takes: component, 'get', index, value")
        return _parse_get(table, message[3], message[4], readable)
    if op == "range":
        if not 5 <= len(message) <= 9 or not isinstance(message[3], str):
            raise ProtocolViolation("sub range takes: component, 'range', index, left[, right, limit, desc, force]")
        args = message[4:] + [None, 10, False, True][len(message) - 5:]
        return _parse_range(table, message[3], *args, readable=readable)
    if op == "logic_query":
        return NO_ROW
    raise ProtocolViolation(f"unknown sub operation {op!r:.40}")


def _parse_get(table, index: str, value: Any, readable) -> GetRequest | list:
    comp = table.comp_cls
    if index not in comp.indexes_:
        raise ProtocolViolation(f"{comp.name_} has no index {index!r:.40}")
    if not readable(comp):
        return NO_ROW
    _check_length(comp, index, value)
    try:
        if index == "id":
            row_id, bounds = int(value), None
            beyond = not INT64.min <= row_id <= INT64.max
        else:
            row_id, bounds = None, normalize_bounds(comp, index, value)
            beyond = _beyond_column(comp.dtype_map_[index], value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ProtocolViolation(f"bad sub get: {exc}") from None
    if beyond:  # no row holds a value its column cannot hold
        return NO_ROW
    return GetRequest(table, index, row_id, bounds)


def _parse_range(table, index, left, right, limit, desc, force, readable) -> RangeRequest | list:
    comp = table.comp_cls
    if not isinstance(limit, int) or isinstance(limit, bool) or not isinstance(desc, bool):
        raise ProtocolViolation("sub range: limit must be an int and desc a bool")
    if not INT64.min <= limit <= INT64.max:
        raise ProtocolViolation(f"sub range: limit {limit} does not fit 64 bits")
    _check_length(comp, index, left)
    _check_length(comp, index, right)
    try:
        bounds = normalize_bounds(comp, index, left, right)
    except (ValueError, TypeError) as exc:
        raise ProtocolViolation(f"bad sub range: {exc}") from None
    if not readable(comp):
        return NO_ROWS
    return RangeRequest(table, index, left, right, bounds, limit, desc, bool(force))


def _check_length(comp, index: str, value: Any) -> None:
    """A string value or bound longer than ``MAX_BOUND_LENGTH`` (and its column) is a
    protocol violation."""
    if not isinstance(value, (str, bytes)) or len(value) <= MAX_BOUND_LENGTH:
        return
    dt = comp.dtype_map_.get(index)
    width = dt.itemsize // (4 if dt.kind == "U" else 1) if dt is not None and dt.kind in "US" else 0
    if len(value) > width + 1:  # one more for a leading "(" or "["
        raise ProtocolViolation(f"sub: a bound of {comp.name_}.{index} is {len(value)} long")


def _beyond_column(dt: np.dtype, value: Any) -> bool:
    """``value`` is a number an integer column cannot hold (range bounds are clamped to
    the column, an equality must not be)."""
    if dt.kind not in "iu" or isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    lowest, highest = int_limits(dt)
    return not lowest <= value <= highest
