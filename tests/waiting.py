"""Waiting for an observable condition in tests, with a deadline (instead of a fixed sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "the condition",
                     pause: float = 0.01) -> Any:
    """Call ``predicate`` (a function, or one returning a coroutine) every ``pause``
    seconds until it returns something true, and return that; fail the test naming
    ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(pause)
