"""The Prometheus metrics, and the copy of a worker's counts into them.

Imported only when metrics are on, in processes started with ``PROMETHEUS_MULTIPROC_DIR``
set (see :mod:`.process`): every value then lives in a file of the worker's own in that
directory, and a scrape sums the files of all workers. Counts are kept in plain ints on
the hot path (:mod:`.meters`) and copied here by :meth:`MetricsExporter.flush`, about
once a second and before a scrape served by the worker itself.

Histograms are copied bucket by bucket: ``prometheus_client`` has no public call to add
many observations at once, so :func:`add_observations` uses the child's ``_buckets`` and
``_sum`` (tests/server/test_metrics.py checks that the result is what ``observe`` gives).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram, multiprocess

from ...system.caller import SLOW_LOG
from .meters import LATENCY_BUCKETS, OUTCOMES, UNKNOWN, LatencyCounts

if TYPE_CHECKING:
    from ..state import ServerState

logger = logging.getLogger("HeTu.root")

FLUSH_SECONDS = 1.0

CALLS = Counter("hetu_calls", "Client rpc calls by endpoint and outcome (ok, rejected, error, dropped)",
                ["endpoint", "outcome"], registry=None)
CALL_SECONDS = Histogram("hetu_call_duration_seconds", "Time from the executor receiving a call to its result",
                         ["endpoint"], buckets=LATENCY_BUCKETS, registry=None)
SYSTEM_CALLS = Counter("hetu_system_calls", "System calls (transactions), from clients and the server",
                       ["system"], registry=None)
SYSTEM_RETRIES = Counter("hetu_system_retries", "Transactions re-run after a conflict (RaceCondition)",
                         ["system"], registry=None)
CONNECTIONS = Gauge("hetu_connections", "Open websocket connections", multiprocess_mode="livesum",
                    registry=None)
LOGGED_IN = Gauge("hetu_logged_in_users", "Connections logged in as a user", multiprocess_mode="livesum",
                  registry=None)
SUBSCRIPTIONS = Gauge("hetu_subscriptions", "Row (get) and range subscriptions", ["kind"],
                      multiprocess_mode="livesum", registry=None)
SHAPES = Gauge("hetu_subscription_shapes", "Distinct subscribed queries, evaluated once per change",
               ["kind"], multiprocess_mode="livesum", registry=None)
PUSHES = Counter("hetu_pushes", "updt frames sent to subscribers", registry=None)
PUSH_SECONDS = Histogram("hetu_push_latency_seconds",
                         "Time from a change event reaching the worker to its updt frame being written",
                         buckets=LATENCY_BUCKETS, registry=None)
FRAMES = Counter("hetu_frames", "Websocket messages through the pipeline", ["direction"], registry=None)
BYTES = Counter("hetu_bytes", "Websocket message bytes (compressed, encrypted)", ["direction"], registry=None)
BACKEND_TRIPS = Counter("hetu_backend_round_trips", "Backend operations, one round trip each",
                        ["backend", "op"], registry=None)
BACKEND_ERRORS = Counter("hetu_backend_errors", "Backend operations that failed (not conflicts)",
                         ["backend", "op"], registry=None)
FEED_GAPS = Counter("hetu_change_feed_gaps", "Change-feed gap events (changes of a channel may be missed)",
                    registry=None)
FEED_RECONNECTS = Counter("hetu_change_feed_reconnects", "Change-feed connections lost and opened again",
                          registry=None)
FUTURE_DUE = Counter("hetu_future_calls_due", "Future calls taken to run", registry=None)
FUTURE_RUN = Counter("hetu_future_calls_run", "Future calls that ran without error", registry=None)
FUTURE_FAILED = Counter("hetu_future_calls_failed", "Future calls that failed", registry=None)
WORKERS = Gauge("hetu_workers", "Worker processes serving", multiprocess_mode="livesum", registry=None)
WORKER_RESTARTS = Counter("hetu_worker_restarts", "Worker processes that died and were restarted",
                          registry=None)


def add_observations(child: Any, counts: list[int], total: float) -> None:
    """Add ``counts[i]`` observations to bucket ``i`` of histogram ``child`` and ``total``
    to its sum, as that many ``observe`` calls would."""
    for bucket, count in zip(child._buckets, counts):
        if count:
            bucket.inc(count)
    child._sum.inc(total)


class MetricsExporter:
    """Copies one worker's counts into the Prometheus metrics (its own files)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.meters = meters = state.metrics
        # children bound once: a label lookup per flush and name, none per call
        self._endpoints = [(meter, [CALLS.labels(name, outcome) for outcome in OUTCOMES], CALL_SECONDS.labels(name))
                           for name, meter in [*meters.endpoints.items(), (UNKNOWN, meters.unknown)]]
        self._children: dict[tuple, Any] = {}
        self._last: dict[Any, Any] = {}
        WORKERS.set(1)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels) if labels else metric
        return child

    def _inc(self, metric: Any, total: float, *labels: str) -> None:
        """Bring counter ``metric{labels}`` up to ``total`` (the worker's count so far)."""
        key = (metric, labels)
        delta = total - self._last.get(key, 0)
        if delta:
            self._last[key] = total
            self._child(metric, *labels).inc(delta)

    def _observe(self, child: Any, latency: LatencyCounts) -> None:
        before = self._last.get(id(latency))
        counts, total = list(latency.counts), latency.total
        if before is None:
            delta_counts, delta_total = counts, total
        else:
            delta_counts = [now - then for now, then in zip(counts, before[0])]
            delta_total = total - before[1]
        if any(delta_counts):
            add_observations(child, delta_counts, delta_total)
        self._last[id(latency)] = (counts, total)

    def flush(self) -> None:
        """Copy everything counted since the last flush."""
        meters, state = self.meters, self.state
        for meter, outcome_children, latency_child in self._endpoints:
            for index, child in enumerate(outcome_children):
                key = (id(meter), index)
                delta = meter.outcomes[index] - self._last.get(key, 0)
                if delta:
                    self._last[key] = meter.outcomes[index]
                    child.inc(delta)
            self._observe(latency_child, meter.latency)
        for name, stats in list(SLOW_LOG.stats.items()):
            self._inc(SYSTEM_CALLS, stats.calls, name)
            self._inc(SYSTEM_RETRIES, stats.retries, name)
        self._inc(PUSHES, meters.pushes)
        self._observe(PUSH_SECONDS, meters.push_latency)
        self._inc(FRAMES, meters.frames_in, "in")
        self._inc(FRAMES, meters.frames_out, "out")
        self._inc(BYTES, meters.bytes_in, "in")
        self._inc(BYTES, meters.bytes_out, "out")
        for (backend, op), meter in list(meters.backend_ops.items()):
            self._inc(BACKEND_TRIPS, meter.calls, backend, op)
            self._inc(BACKEND_ERRORS, meter.errors, backend, op)
        brokers = list(state.brokers.values())
        self._inc(FEED_GAPS, sum(broker.gaps for broker in brokers))
        self._inc(FEED_RECONNECTS, sum(broker.feed_reconnects for broker in brokers))
        runner = state.future_runner
        if runner is not None:
            self._inc(FUTURE_DUE, runner.stats.due)
            self._inc(FUTURE_RUN, runner.stats.ran)
            self._inc(FUTURE_FAILED, runner.stats.failed)
        self._set_gauges(brokers)

    def _set_gauges(self, brokers: list) -> None:
        subscriptions = {"get": 0, "range": 0}
        shapes = {"get": 0, "range": 0}
        for broker in brokers:
            for fanout in list(broker.fanouts.values()):
                for kind, kind_shapes in (("get", fanout.row_shapes), ("range", fanout.range_shapes)):
                    shapes[kind] += len(kind_shapes)
                    subscriptions[kind] += sum(len(shape.subscribers) for shape in list(kind_shapes.values()))
        for kind in subscriptions:
            self._child(SUBSCRIPTIONS, kind).set(subscriptions[kind])
            self._child(SHAPES, kind).set(shapes[kind])
        CONNECTIONS.set(self.meters.connections)
        LOGGED_IN.set(sum(len(watcher.watched) for watcher in self.state.login_watchers.values()))

    async def run_forever(self) -> None:
        """Flush every :data:`FLUSH_SECONDS` until cancelled."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:
                logger.exception("copying the metrics failed")

    def close(self) -> None:
        """The last flush of a stopping worker; its gauges leave the sums."""
        try:
            self.flush()
        finally:
            WORKERS.set(0)
            multiprocess.mark_process_dead(os.getpid())


def worker_died(pid: int) -> None:
    """Main process: a worker died and is being restarted; its gauges leave the sums."""
    WORKER_RESTARTS.inc()
    multiprocess.mark_process_dead(pid)
