"""Per-worker counts kept in plain ints on the hot path (no Prometheus call per event).

A :class:`WorkerMeters` lives in ``ServerState.metrics`` when metrics are on; the hot
path increments its fields and :mod:`.export` copies them into Prometheus about once a
second. Every label value comes from the app or from this module, never from a client:
an endpoint name a client sends that the app does not define is counted as ``unknown``.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable

OUTCOMES = ("ok", "rejected", "error", "dropped")
OK, REJECTED, ERROR, DROPPED = range(len(OUTCOMES))
UNKNOWN = "unknown"
# seconds; the last bucket (+Inf) is implicit
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyCounts:
    """A histogram in plain numbers: ``counts[i]`` observations ≤ ``LATENCY_BUCKETS[i]``
    (and above the bucket before it), the last one above every bound; ``total`` their sum.

    >>> latency = LatencyCounts(); latency.observe(0.003); latency.counts[5]
    1
    """

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float, times: int = 1) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += times
        self.total += seconds * times


class EndpointMeter:
    """Calls of one endpoint: a count per outcome (indexed like :data:`OUTCOMES`) and
    the latency of those the executor ran."""

    __slots__ = ("outcomes", "latency")

    def __init__(self) -> None:
        self.outcomes = [0] * len(OUTCOMES)
        self.latency = LatencyCounts()

    def record(self, outcome: int, started: float) -> None:
        self.outcomes[outcome] += 1
        self.latency.observe(time.perf_counter() - started)


class BackendOpMeter:
    """Round trips of one backend operation (get, range, commit...) and those that failed."""

    __slots__ = ("calls", "errors")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0


class WorkerMeters:
    """Everything one worker counts itself; the rest (systems, subscriptions, the change
    feed, future calls) :mod:`.export` reads from where it is kept anyway."""

    def __init__(self, endpoint_names: Iterable[str]) -> None:
        self.endpoints: dict[str, EndpointMeter] = {name: EndpointMeter() for name in endpoint_names}
        self.unknown = EndpointMeter()
        self.connections = 0
        self.pushes = 0
        self.push_latency = LatencyCounts()
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.backend_ops: dict[tuple[str, str], BackendOpMeter] = {}

    def endpoint(self, name: object) -> EndpointMeter:
        """The meter of an endpoint named by a client: ``unknown`` unless the app has it."""
        return self.endpoints.get(name, self.unknown) if isinstance(name, str) else self.unknown

    def call_dropped(self, message: list) -> None:
        """A message was refused before it ran (client send limits exceeded, a malformed
        rpc): counted as ``dropped`` when it was an rpc."""
        if message and message[0] == "rpc":
            self.endpoint(message[1] if len(message) > 1 else None).outcomes[DROPPED] += 1

    def call_refused(self, name: str) -> None:
        """An rpc refused by the connection itself (its login was taken over)."""
        self.endpoint(name).outcomes[REJECTED] += 1

    def pushed(self, since: float | None) -> None:
        """A change was pushed (an ``updt`` frame written or queued); ``since``: when the
        change event that caused it reached the worker (``time.perf_counter()``)."""
        self.pushes += 1
        if since is not None:
            self.push_latency.observe(time.perf_counter() - since)

    def backend_op(self, backend: str, op: str) -> BackendOpMeter:
        meter = self.backend_ops.get((backend, op))
        if meter is None:
            meter = self.backend_ops[(backend, op)] = BackendOpMeter()
        return meter
