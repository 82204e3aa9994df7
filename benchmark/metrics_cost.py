"""What the metrics add to the hot path, per call, measured in-process (no sockets, no noise
from the load generator): ``python -m benchmark.metrics_cost``.

Each line times one hot-path step plain and metered, in a loop, and prints the
difference per call in microseconds (best of several repeats): the endpoint executor of a
``hello_world`` call, the message pipeline (decode a request, encode a reply; msgpack and
zlib), a backend read, and the bookkeeping of one push. A hello_world call takes one
executor step and one of each pipeline step; a just_get adds one backend read.
"""

from __future__ import annotations

import asyncio
import time

import hetu
from hetu.endpoint.definer import EndpointDefines
from hetu.endpoint.executor import EndpointExecutor
from hetu.server.metrics.hooks import MeteredExecutor, MeteredPipeline, meter_backend
from hetu.server.metrics.meters import WorkerMeters
from hetu.server.pipeline import MessagePipeline
from hetu.system.context import SystemContext

NS = "metrics_cost"
LOOPS = 20000
REPEATS = 7


@hetu.define_endpoint(namespace=NS, permission=hetu.Permission.EVERYBODY, force=True)
async def hello_world(ctx):
    return hetu.ResponseToClient(["hello"])


class _Client:
    """A backend client that answers at once: only the wrapper's own cost is left."""

    async def get(self, ref, row_id):
        return None

    get_many = range = range_ids = find_unique = commit = get


class _Backend:
    def __init__(self) -> None:
        self.master, self.servants = _Client(), []


def _context() -> SystemContext:
    return SystemContext(caller=0, connection_id=1, address="bench", group="guest", user_data={},
                         timestamp=0.0, request=None, systems=None)


async def _best(step, loops: int = LOOPS) -> float:
    """Seconds per call of ``await step()``, best of :data:`REPEATS`."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(loops):
            await step()
        best = min(best, (time.perf_counter() - started) / loops)
    return best


def _best_sync(step, loops: int = LOOPS) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(loops):
            step()
        best = min(best, (time.perf_counter() - started) / loops)
    return best


async def measure() -> list[tuple[str, float, float]]:
    meters = WorkerMeters(EndpointDefines().get_endpoints(NS))
    plain = EndpointExecutor(NS, None, _context(), login_watched=True)
    metered = MeteredExecutor(NS, None, _context(), login_watched=True, meters=meters)
    rows = [("executor (hello_world)", await _best(lambda: plain.execute("hello_world")),
             await _best(lambda: metered.execute("hello_world")))]

    pipeline = MessagePipeline.from_config([{"type": "jsonb"}, {"type": "zlib", "level": 1}])
    metered_pipeline = MeteredPipeline(pipeline, meters)
    request = pipeline.encode(None, ["rpc", "hello_world"])
    reply = ["rsp", ["hello"]]

    def plain_frames():
        pipeline.decode(None, request)
        pipeline.encode(None, reply)

    def metered_frames():
        metered_pipeline.decode(None, request)
        metered_pipeline.encode(None, reply)

    rows.append(("pipeline (decode + encode)", _best_sync(plain_frames), _best_sync(metered_frames)))

    plain_backend, metered_backend = _Backend(), _Backend()
    meter_backend(meters, "default", metered_backend)
    rows.append(("backend read", await _best(lambda: plain_backend.master.get(None, 1)),
                 await _best(lambda: metered_backend.master.get(None, 1))))
    since = time.perf_counter()
    rows.append(("push bookkeeping", _best_sync(lambda: None), _best_sync(lambda: meters.pushed(since))))
    return rows


def main() -> None:
    rows = asyncio.run(measure())
    print(f"{'step':28} {'plain µs':>9} {'metered µs':>11} {'added µs':>9}")
    for name, plain, metered in rows:
        print(f"{name:28} {plain * 1e6:9.2f} {metered * 1e6:11.2f} {(metered - plain) * 1e6:9.2f}")


if __name__ == "__main__":
    main()
