"""Future calls: scheduling, the scheduler loop, at-least-once with a single commit."""

from __future__ import annotations

import time

import pytest
import redis

from hetu.system.future import FutureCalls, _build_future_row, _key_to_id, internal_context
from hetu.testing import Sandbox
from tests.conftest import redis_server
from tests.system import future_app
from tests.waiting import wait_until


@pytest.fixture(params=["sqlite", "redis"])
async def sb(request, tmp_path):
    url = None
    if request.param == "redis":
        url = redis_server("redis").url(5)
        redis.Redis.from_url(url).flushdb()
    sandbox = await Sandbox.create(
        future_app.NS, future_app, db_path=tmp_path / "f.db", db_url=url, reload_app=True
    )
    yield sandbox
    await sandbox.aclose()


async def hatched(sb, owner):
    egg = await sb.get("Egg", owner=owner)
    return 0 if egg is None else int(egg.hatched)


async def pending(sb):
    return await sb.range("FutureCalls:eggs", "scheduled", 0, float("inf"), limit=-1)


async def test_create_returns_the_row_id_and_stores_the_call(sb):
    before = time.time()
    call_id = await sb.call("plant", 1, 0.0, caller=1020)
    rows = await pending(sb)
    assert [int(r.id) for r in rows] == [call_id] and call_id > 0
    row = rows[0]
    assert (row.system, row.args, row.timeout, row.recurring, row.owner) == ("hatch", "(1,)", 10, 0, 1020)
    assert before <= row.scheduled <= time.time() + 0.1


async def test_a_due_call_runs_once_and_is_removed(sb):
    await sb.call_system("plant", 2, 0.0)
    assert await sb.tick_future_calls() == 1
    assert await hatched(sb, 2) == 1
    assert len(await pending(sb)) == 0
    assert len(await sb.range("SystemLock:hatch", "called", 0, float("inf"), limit=-1)) == 0
    assert await sb.tick_future_calls() == 0


async def test_a_call_that_is_not_due_waits(sb):
    await sb.call_system("plant", 3, 60.0)
    assert await sb.tick_future_calls() == 0
    assert await hatched(sb, 3) == 0


async def test_the_scheduler_fires_a_call_within_two_seconds(sb):
    sb.start_future_calls()
    started = time.monotonic()
    await sb.call_system("plant", 4, 0.3)
    await wait_until(lambda: hatched(sb, 4), 3, "the future call to fire", pause=0.05)
    assert time.monotonic() - started < 2.5


async def test_a_recurring_call_repeats_every_timeout(sb, monkeypatch):
    clock = [time.time()]
    monkeypatch.setattr("hetu.system.future.time.time", lambda: clock[0])
    await sb.call_system("plant_once", "pulse", 5, 0.0, True)
    assert await sb.tick_future_calls() == 1
    assert await sb.tick_future_calls() == 0  # leased for its period (5 s)
    clock[0] += 5.2
    assert await sb.tick_future_calls() == 1
    assert await hatched(sb, 5) == 2
    assert len(await pending(sb)) == 1  # recurring calls stay


async def test_a_cancelled_call_never_fires(sb):
    call_id = await sb.call_system("plant_once", "k", 6, 0.0, raw=True)
    assert call_id == _key_to_id("k")
    assert await sb.call_system("unplant", "k", raw=True) is True
    assert await sb.call_system("unplant", "k", raw=True) is False
    assert await sb.tick_future_calls() == 0
    assert await hatched(sb, 6) == 0


async def test_ensure_keeps_one_call_per_key_with_the_first_arguments(sb):
    first = await sb.call_system("plant_once", "same", 7, 0.0, raw=True)
    second = await sb.call_system("plant_once", "same", 8, 0.0, raw=True)
    assert first == second
    rows = await pending(sb)
    assert len(rows) == 1 and rows[0].args == "(7,)"


async def test_a_call_whose_lock_exists_commits_only_once(sb):
    # a worker crashed after committing but before deleting the row: the re-run is a no-op
    call_id = await sb.call_system("plant", 9, 0.0, raw=True)
    await sb.call_system("hatch", 9, uuid=str(call_id.message))
    assert await hatched(sb, 9) == 1
    assert await sb.tick_future_calls() == 1
    assert await hatched(sb, 9) == 1


def test_key_ids_are_negative_and_deterministic():
    ids = {_key_to_id(f"key{i}") for i in range(1000)}
    assert len(ids) == 1000 and all(-(2**63) <= i <= -1 for i in ids)
    assert _key_to_id("abc") == _key_to_id("abc")


async def test_invalid_future_calls_are_refused(sb):
    ctx = internal_context()
    with pytest.raises(RuntimeError, match="not a system"):
        _build_future_row(ctx, 0, "nope", ())
    with pytest.raises(RuntimeError, match="call_lock"):
        _build_future_row(ctx, 0, "no_lock", ())
    with pytest.raises(ValueError, match="too long"):
        _build_future_row(ctx, 0, "hatch", ("x" * 2000,))
    with pytest.raises(AssertionError, match="literal_eval"):
        _build_future_row(ctx, 0, "hatch", (object(),))
    with pytest.raises(AssertionError, match="recurring"):
        _build_future_row(ctx, 0, "hatch", (1,), timeout=0, recurring=True)
    with pytest.warns(UserWarning, match="caller 0"):
        _build_future_row(ctx, 0, "hatch_for_users", (1,))
    row = _build_future_row(ctx, 0, "hatch", (1,), timeout=1)
    assert row.timeout == 5 and row.dtype == FutureCalls.dtypes
