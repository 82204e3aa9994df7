"""Stopping background tasks reliably.

``task.cancel()`` asks once. A library that catches the ``CancelledError`` while it
(re)connects and raises its own error instead (redis-py does this) turns the request
into an ordinary exception; a loop that survives ordinary errors then runs on and
``await task`` never returns. :func:`cancel_and_wait` asks again until the task ends,
and loops use :func:`cancel_requested` to stop on a swallowed request.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger("HeTu.root")


def cancel_requested() -> bool:
    """True when the running task was asked to stop (even if the request got lost)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def cancel_and_wait(task: asyncio.Task | None, *, every: float = 0.05, give_up: float = 10.0) -> None:
    """Cancel ``task`` and wait until it has ended; never raises the task's error."""
    if task is None or task.done():
        if task is not None and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" warning
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=every)
        if loop.time() > deadline and not task.done():
            logger.error("background task %s does not stop; leaving it", task.get_name())
            return
    if not task.cancelled():
        task.exception()
