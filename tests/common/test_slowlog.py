"""The slow log: slow or conflict-heavy systems are reported, at most once per interval."""

from __future__ import annotations

import logging

from hetu.common.slowlog import SlowLog


def test_fast_calls_are_recorded_silently(caplog):
    log = SlowLog(time_threshold=1.0, retry_threshold=5, interval=0)
    with caplog.at_level(logging.WARNING, logger="HeTu.root"):
        for _ in range(10):
            log.record("quick", 0.001, 0)
    assert not caplog.records
    stats = log.stats["quick"]
    assert stats.calls == 10 and abs(stats.mean_time - 0.001) < 1e-9


def test_a_slow_call_reports_the_worst_systems(caplog):
    log = SlowLog(time_threshold=0.1, retry_threshold=5, interval=0)
    log.record("fine", 0.01, 0)
    log.record("hot", 0.05, 3)
    with caplog.at_level(logging.WARNING, logger="HeTu.root"):
        log.record("slow", 0.5, 0)
    (record,) = caplog.records
    text = record.getMessage()
    assert "slow log: slow took 0.500s" in text
    assert text.index("slow |") < text.index("hot |") < text.index("fine |")  # by mean time
    assert "hot | 1 | 3 | 3" in text  # by conflicts


def test_many_retries_are_reported_and_reports_are_throttled(caplog):
    log = SlowLog(time_threshold=10, retry_threshold=5, interval=3600)
    with caplog.at_level(logging.WARNING, logger="HeTu.root"):
        log.record("contended", 0.01, 6)
        log.record("contended", 0.01, 9)
    assert len(caplog.records) == 1
    assert log.stats["contended"].retries == 15 and log.stats["contended"].max_retries == 9
