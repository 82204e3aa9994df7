"""Background tasks stop even when a library swallows the cancellation."""

from __future__ import annotations

import asyncio

from hetu.common.tasks import cancel_and_wait, cancel_requested


async def _library_call(swallow: list[int]):
    """Like redis-py while reconnecting: a cancellation comes out as its own error
    (``swallow[0]`` times; after that the cancellation passes through)."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        if swallow[0] > 0:
            swallow[0] -= 1
            raise ConnectionError("connection lost") from None
        raise


async def test_a_loop_that_swallows_the_first_cancellation_is_stopped():
    rounds = 0
    swallow = [3]

    async def stubborn():
        nonlocal rounds
        while True:
            rounds += 1
            try:
                await _library_call(swallow)
            except Exception:
                pass  # a loop that survives errors, without checking for cancellation

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0.01)
    await asyncio.wait_for(cancel_and_wait(task, every=0.01), 5)
    assert task.done()
    assert swallow == [0] and rounds == 4  # three requests were swallowed, the fourth ended it


async def test_cancel_requested_lets_a_loop_notice_a_swallowed_request():
    seen = []
    swallow = [1]

    async def careful():
        while True:
            try:
                await _library_call(swallow)
            except Exception:
                seen.append(cancel_requested())
                if cancel_requested():
                    raise asyncio.CancelledError from None

    task = asyncio.create_task(careful())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    assert task.cancelled()
    assert seen == [True]


async def test_finished_and_failed_tasks_are_fine():
    async def boom():
        raise ValueError("x")

    task = asyncio.create_task(boom())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # the error is retrieved, not raised
    await cancel_and_wait(None)
    assert isinstance(task.exception(), ValueError)
