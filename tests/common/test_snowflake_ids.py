"""Snowflake ids: layout, ordering, worker separation and the clock-rollback guard."""

from __future__ import annotations

import pytest

from hetu.common import snowflake_id as sf
from hetu.common.snowflake_id import TW_EPOCH, SnowflakeID, id_timestamp_ms, id_worker


@pytest.fixture
def clock(monkeypatch):
    now = [TW_EPOCH + 1_000_000]
    monkeypatch.setattr(sf, "now_ms", lambda: now[0])
    return now


def test_layout_time_worker_sequence(clock):
    gen = SnowflakeID()
    gen.init(37, 0)
    first, second = gen.next_id(), gen.next_id()
    assert first >> 22 == 1_000_000 and id_timestamp_ms(first) == clock[0]
    assert id_worker(first) == 37 and (first >> 12) & 1023 == 37
    assert first & 4095 == 0 and second & 4095 == 1
    clock[0] += 1
    assert gen.next_id() & 4095 == 0


def test_ids_increase_strictly():
    gen = SnowflakeID()
    gen.init(1, 0)
    ids = [gen.next_id() for _ in range(20_000)]
    assert ids == sorted(set(ids))


def test_worker_ids_out_of_range_are_refused():
    for bad in (-1, 1024):
        with pytest.raises(ValueError, match="out of range"):
            SnowflakeID().init(bad)


def test_two_workers_never_collide_in_one_millisecond(clock):
    gen = SnowflakeID()
    gen.init(1, 0)
    a = {gen.next_id() for _ in range(100)}
    gen.init(2, 0)
    b = {gen.next_id() for _ in range(100)}
    assert not a & b


def test_a_clock_going_back_never_reissues_ids(clock, monkeypatch):
    gen = SnowflakeID()
    gen.init(3, 0)
    before = [gen.next_id() for _ in range(10)]
    clock[0] -= 5_000  # the wall clock jumps back 5 s
    sleeps = []

    def wait(_):
        sleeps.append(1)
        clock[0] += 1_000 if len(sleeps) > 2 else 0  # eventually the clock catches up

    monkeypatch.setattr(sf.time, "sleep", wait)
    after = [gen.next_id() for _ in range(5000)]  # more than one millisecond's worth
    all_ids = before + after
    assert all_ids == sorted(set(all_ids))
    assert sleeps  # generation waited instead of reusing a sequence number


async def test_the_async_variant_waits_without_blocking(clock, monkeypatch):
    gen = SnowflakeID()
    gen.init(4, 0)
    gen.next_id()
    clock[0] -= 10
    slept = []

    async def fake_sleep(_):
        slept.append(1)
        clock[0] += 20

    monkeypatch.setattr(sf.asyncio, "sleep", fake_sleep)
    ids = [await gen.next_id_async() for _ in range(4100)]
    assert ids == sorted(set(ids)) and slept


def test_ids_continue_after_a_future_last_timestamp(clock):
    gen = SnowflakeID()
    gen.init(5, clock[0] + 60_000)  # the lease says this worker id was used until then
    assert id_timestamp_ms(gen.next_id()) == clock[0] + 60_000


def test_using_it_before_init_is_a_clear_error():
    gen = SnowflakeID()
    saved = gen.worker_id
    gen.worker_id = None
    try:
        with pytest.raises(RuntimeError, match="not initialised"):
            gen.next_id()
    finally:
        gen.worker_id = saved
