"""Normalising ``range`` bounds against a column's dtype (shared by all backends).

Bounds are inclusive by default; a string bound may start with ``(`` (exclusive) or
``[`` (inclusive) - also for numeric columns (``"(110"``). ``±inf`` is allowed on
numeric columns; strings only on string columns. ``low > high`` is an error; an empty
interval such as ``("(5", "(5")`` is just empty.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import Bounds


def _peel(value: Any) -> tuple[Any, bool]:
    """Strip an interval marker: returns (value, inclusive)."""
    if isinstance(value, str) and value[:1] in ("(", "["):
        return value[1:], value[0] == "["
    if isinstance(value, bytes) and value[:1] in (b"(", b"["):
        return value[1:], value[:1] == b"["
    return value, True


def _coerce(comp_name: str, index: str, dt: np.dtype, value: Any, is_low: bool) -> tuple[Any, bool]:
    """The bound as the column compares it, and whether it was kept exactly."""
    if isinstance(value, np.generic):
        value = value.item()
    where = f"{comp_name}.{index}"
    if dt.kind in ("U", "S"):
        if not isinstance(value, (str, bytes)):
            raise ValueError(
                f"{where} is a string index: bounds must be str or bytes, got {value!r:.80}"
            )
        if dt.kind == "U" and isinstance(value, bytes):
            return value.decode("utf-8"), True
        if dt.kind == "S" and isinstance(value, str):
            return value.encode("utf-8"), True
        return value, True
    if isinstance(value, (str, bytes)):
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{where} is a numeric index: cannot use bound {value!r:.80}") from None
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, (int, float)):
        raise ValueError(f"{where}: bound {value!r:.80} is not a number")
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{where}: NaN is not a valid bound")
    if dt.kind == "f":
        if math.isinf(value):
            return float(value), True
        return float(dt.type(value)), True  # compare as the column stores it (float32...)
    lowest, highest = int_limits(dt)
    exact = True
    if isinstance(value, float):
        if math.isinf(value):
            return (highest if value > 0 else lowest), True
        if not value.is_integer():
            exact = False
        value = math.ceil(value) if is_low else math.floor(value)
    return min(max(int(value), lowest), highest), exact


_INT_LIMITS: dict[np.dtype, tuple[int, int]] = {}


def int_limits(dt: np.dtype) -> tuple[int, int]:
    """The smallest and largest value of an integer dtype (np.iinfo, once per dtype)."""
    limits = _INT_LIMITS.get(dt)
    if limits is None:
        info = np.iinfo(dt)
        limits = _INT_LIMITS[dt] = (int(info.min), int(info.max))
    return limits


def normalize_bounds(comp, index: str, left: Any, right: Any = None) -> Bounds:
    """Typed, validated bounds of ``range(index, left, right)``.

    ``right=None`` means equality with ``left``.
    """
    if index not in comp.indexes_:
        raise ValueError(
            f"{comp.name_} has no index named {index!r}; indexed fields: "
            f"{', '.join(sorted(comp.indexes_))}"
        )
    dt = comp.dtype_map_[index]
    low_raw, low_inc = _peel(left)
    low, low_exact = _coerce(comp.name_, index, dt, low_raw, True)
    if right is None and low_exact:  # equality (a get): the high bound is the same value
        right, high, high_inc, high_exact = left, low, low_inc, True
    else:
        if right is None:
            right = left
        high_raw, high_inc = _peel(right)
        high, high_exact = _coerce(comp.name_, index, dt, high_raw, False)
    # a fractional bound on an integer column was rounded inwards: it is inclusive now
    low_inc = low_inc or not low_exact
    high_inc = high_inc or not high_exact
    if high < low:
        raise ValueError(
            f"{comp.name_}.{index}: range bounds are reversed (right={right!r:.80} is below "
            f"left={left!r:.80}); pass the low bound first and use desc=True for descending order"
        )
    empty = high == low and not (low_inc and high_inc)
    return Bounds(low, high, low_inc, high_inc, empty)
