"""The slow log: which systems take long and which ones keep conflicting.

Every system call feeds :class:`SlowLog` with its duration and retry count. When a call
is slower than ``time_threshold`` seconds or needed more than ``retry_threshold``
retries, a warning with the worst systems (by time and by conflicts) is logged, at most
once per ``interval`` seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

logger = logging.getLogger("HeTu.root")

SLOW_LOG_TIME_THRESHOLD = 1.0
SLOW_LOG_RETRY_THRESHOLD = 5


@dataclass
class SystemStats:
    """Calls, time and conflict retries of one system since the worker started."""
    calls: int = 0
    total_time: float = 0.0
    max_time: float = 0.0
    retries: int = 0
    max_retries: int = 0

    @property
    def mean_time(self) -> float:
        return self.total_time / self.calls if self.calls else 0.0


class SlowLog:
    """Per-system call statistics; a call slower than ``time_threshold`` or retried more
    than ``retry_threshold`` times logs them as a table, at most every ``interval``
    seconds."""

    def __init__(
        self,
        time_threshold: float = SLOW_LOG_TIME_THRESHOLD,
        retry_threshold: int = SLOW_LOG_RETRY_THRESHOLD,
        interval: float = 60.0,
    ) -> None:
        self.time_threshold = time_threshold
        self.retry_threshold = retry_threshold
        self.interval = interval
        self.stats: dict[str, SystemStats] = {}
        self._last_report: float | None = None  # the first report is never held back

    def record(self, name: str, elapsed: float, retries: int) -> None:
        stats = self.stats.get(name)
        if stats is None:
            stats = self.stats[name] = SystemStats()
        stats.calls += 1
        stats.total_time += elapsed
        stats.max_time = max(stats.max_time, elapsed)
        stats.retries += retries
        stats.max_retries = max(stats.max_retries, retries)
        if elapsed >= self.time_threshold or retries > self.retry_threshold:
            now = time.monotonic()
            if self._last_report is None or now - self._last_report >= self.interval:
                self._last_report = now
                logger.warning(
                    "slow log: %s took %.3fs with %d conflict retries\n%s", name, elapsed, retries, self.report()
                )

    def report(self, top: int = 10) -> str:
        """The worst systems by mean time and by conflicts, as text."""
        by_time = sorted(self.stats.items(), key=lambda kv: kv[1].mean_time, reverse=True)[:top]
        by_race = sorted(self.stats.items(), key=lambda kv: kv[1].retries, reverse=True)[:top]
        lines = ["  by time:   system | calls | mean s | max s"]
        lines += [f"    {n} | {s.calls} | {s.mean_time:.4f} | {s.max_time:.4f}" for n, s in by_time]
        lines.append("  by conflicts: system | calls | retries | max retries in one call")
        lines += [f"    {n} | {s.calls} | {s.retries} | {s.max_retries}" for n, s in by_race if s.retries]
        return "\n".join(lines)
