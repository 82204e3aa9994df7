"""What the Redis server did during a measurement, from its ``INFO``.

*Round trips* are the server's read events (``total_reads_processed``): one per request
a client sends and waits for, however many commands a Lua script runs inside it.
*Commands* are the ``INFO commandstats`` call counts, which do include the commands
run inside scripts (an ``EVALSHA`` that reads two keys counts as three). The probe's
own ``INFO`` is left out of both; everything else, including the server's background
traffic (worker-lease renewals, the future-call poller), is in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis


@dataclass
class RedisSnapshot:
    reads: int
    commands: dict[str, int] = field(default_factory=dict)
    clients: int = 0


@dataclass
class RedisDelta:
    round_trips: int
    commands: dict[str, int]

    @property
    def total_commands(self) -> int:
        return sum(self.commands.values())


class RedisProbe:
    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url)

    def snapshot(self) -> RedisSnapshot:
        info = self.redis.execute_command("INFO", "stats", "commandstats", "clients")
        commands = {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in info.items()
            if key.startswith("cmdstat_") and key != "cmdstat_info"
        }
        return RedisSnapshot(int(info["total_reads_processed"]), commands, int(info["connected_clients"]))

    @staticmethod
    def delta(before: RedisSnapshot, after: RedisSnapshot) -> RedisDelta:
        commands = {
            name: calls - before.commands.get(name, 0)
            for name, calls in after.commands.items()
            if calls != before.commands.get(name, 0)
        }
        # the later snapshot's INFO request is one read event of the window
        return RedisDelta(after.reads - before.reads - 1, commands)

    def idle_rates(self, seconds: float) -> tuple[float, float]:
        """Round trips/s and commands/s while nothing but the servers' own tasks runs."""
        before = self.snapshot()
        time.sleep(seconds)
        delta = self.delta(before, self.snapshot())
        return delta.round_trips / seconds, delta.total_commands / seconds

    def close(self) -> None:
        self.redis.close()
