"""The benchmark runner end to end, with tiny settings: it starts its own Redis, HeTu
server and echo server, and prints sane numbers. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.servers import find_redis_binary

ROOT = Path(__file__).parents[2]


def _has_redis() -> bool:
    try:
        find_redis_binary()
    except RuntimeError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _has_redis(), reason="no redis-server or valkey-server binary")

SUBSCRIBERS, INSERTS, IDLE = 5, 4, 20


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark", "all", "--connections", "1", "--duration", "1",
         "--workloads", "hello_world,just_get,upsert", "--floors", "--keys", "50", "--idle-seconds", "0.5",
         "--subscribers", str(SUBSCRIBERS), "--inserts", str(INSERTS), "--interval", "0.05",
         "--idle-connections", str(IDLE), "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, json.loads(out.read_text())


def test_every_workload_and_baseline_makes_calls(report):
    _, data = report
    rows = {row["workload"]: row for row in data["load"]}
    assert set(rows) == {"echo", "redis", "floor1", "floor2", "hello_world", "just_get", "upsert"}
    for row in rows.values():
        assert row["rate"] > 0 and row["errors"] == 0
        assert 0 < row["latencies_ms"]["p50"] <= row["latencies_ms"]["p99"]


def test_ratios_to_echo_are_reported(report):
    stdout, data = report
    for row in data["load"]:
        assert row["ratio_to_echo"] > 0
    assert "x echo" in stdout


def test_systems_report_their_race_counts(report):
    _, data = report
    for row in data["load"]:
        if row["workload"] in ("just_get", "upsert"):
            assert sum(row["races"].values()) == row["calls"]


def test_redis_round_trips_are_measured(report):
    _, data = report
    rows = {row["workload"]: row for row in data["load"]}
    # background traffic is included, so only lower bounds hold exactly
    assert rows["redis"]["round_trips_per_call"] >= 1
    assert rows["just_get"]["round_trips_per_call"] >= 1
    assert rows["upsert"]["round_trips_per_call"] >= 2
    assert rows["echo"]["round_trips_per_call"] is None
    # the floors make exactly 1 and 2 Redis round trips per call, plus the background
    assert rows["floor1"]["round_trips_per_call"] >= 1
    assert rows["floor2"]["round_trips_per_call"] >= 2


def test_every_push_reaches_every_subscriber(report):
    stdout, data = report
    push = data["push"]
    assert push["measured"] == SUBSCRIBERS * INSERTS and push["missed"] == 0
    assert f"measured {SUBSCRIBERS * INSERTS} of {SUBSCRIBERS * INSERTS}" in stdout


def test_memory_per_connection_is_printed(report):
    stdout, data = report
    assert data["memory"]["connections"] == IDLE
    assert data["memory"]["rss_after"] > 0
    assert "per connection" in stdout


@pytest.mark.parametrize("pattern", ["chat", "room"])
def test_the_chat_room_and_room_size_patterns_reach_every_subscriber(tmp_path, pattern):
    out = tmp_path / "push.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark", "push", "--pattern", pattern, "--room-rows", "30",
         "--subscribers", "1,3", "--inserts", "3", "--interval", "0.05", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())["push"]
    assert [r["subscribers"] for r in results] == [1, 3]
    for r in results:
        assert r["pattern"] == pattern and r["missed"] == 0 and r["measured"] == r["subscribers"] * 3
        assert r["server_cpu_per_frame_us"] is not None and r["server_cpu_per_frame_us"] >= 0
        assert r["client_cpu_per_frame_us"] is not None and r["client_cpu_per_frame_us"] > 0
    assert "server CPU" in proc.stdout and "subscribers' CPU" in proc.stdout
    assert ("chat room (newest 100 of 200)" in proc.stdout) == (pattern == "chat")


def test_inproc_measures_every_workload_at_every_task_count(tmp_path):
    out = tmp_path / "inproc.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark", "inproc", "--calls", "120", "--tasks", "1,3", "--keys", "30",
         "--workloads", "hello_world,just_get,just_get_user,upsert,exchange_data", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # a failed call fails the command
    results = json.loads(out.read_text())["inproc"]
    seen = {(r["workload"], r["tasks"]) for r in results}
    assert seen == {(w, t) for w in ("hello_world", "just_get", "just_get_user", "upsert", "exchange_data")
                    for t in (1, 3)}
    for r in results:
        assert r["calls"] == 120 and r["calls_per_s"] > 0
        assert r["cpu_us_per_call"] > 0
        assert abs(r["user_us_per_call"] + r["system_us_per_call"] - r["cpu_us_per_call"]) < 0.01
    assert "| just_get | 3 |" in proc.stdout
