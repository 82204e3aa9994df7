"""Metered variants of the hot-path pieces, used instead of the plain ones when metrics
are on (so a server without metrics runs exactly the code it ran before).

* :class:`MeteredExecutor` counts every call by endpoint and outcome and times it;
* :class:`MeteredPipeline` counts frames and bytes in and out (message payloads after
  compression and encryption, as written to the websocket; frame headers not included);
* :func:`meter_backend` counts the round trips and errors of a backend's clients.
"""

from __future__ import annotations

import time
from typing import Any

from ...data.backend import Backend, RaceCondition, UniqueViolation
from ...endpoint.executor import EndpointExecutor
from ...endpoint.response import RejectResponse
from ..pipeline import MessagePipeline
from .meters import ERROR, OK, REJECTED, BackendOpMeter, WorkerMeters

# the backend client methods that each cost one round trip
BACKEND_OPS = ("get", "get_many", "first", "range", "range_ids", "find_unique", "commit")


class MeteredExecutor(EndpointExecutor):
    """An :class:`EndpointExecutor` that counts each call's outcome and latency:
    ``ok`` (ran and returned), ``rejected`` (unknown endpoint, permission, arguments,
    kicked, or a guard's ``ClientReject``), ``error`` (the endpoint or a guard raised).
    The latency runs from the executor receiving the call to its result."""

    def __init__(self, namespace: str, tbl_mgr, context, login_watched: bool = False, *,
                 meters: WorkerMeters) -> None:
        super().__init__(namespace, tbl_mgr, context, login_watched)
        self._endpoints = meters.endpoints
        self._unknown = meters.unknown

    async def execute(self, endpoint: str, *args: Any) -> tuple[bool, Any]:
        meter = self._endpoints.get(endpoint, self._unknown)
        started = time.perf_counter()
        try:
            ok, result = await EndpointExecutor.execute(self, endpoint, *args)
        except Exception:
            meter.record(ERROR, started)
            raise
        if ok:
            meter.record(REJECTED if isinstance(result, RejectResponse) else OK, started)
        else:  # the executor's refusals come without a message, failures with one
            meter.record(REJECTED if result is None else ERROR, started)
        return ok, result


class MeteredPipeline(MessagePipeline):
    """The server's :class:`MessagePipeline`, counting every message through it (the
    handshake's hello and reply included)."""

    def __init__(self, pipeline: MessagePipeline, meters: WorkerMeters) -> None:
        super().__init__(pipeline.layers)
        self.meters = meters

    def encode(self, ctxs: list | None, message: Any) -> bytes:
        data = MessagePipeline.encode(self, ctxs, message)
        meters = self.meters
        meters.frames_out += 1
        meters.bytes_out += len(data)
        return data

    def decode(self, ctxs: list | None, data: bytes) -> Any:
        meters = self.meters
        meters.frames_in += 1
        meters.bytes_in += len(data)
        return MessagePipeline.decode(self, ctxs, data)


def meter_backend(meters: WorkerMeters, name: str, backend: Backend) -> None:
    """Count the round trips of ``backend``'s master and replicas as backend ``name``
    (the key of ``BACKENDS``). A conflict (``RaceCondition``) or a duplicate unique
    value is an answer, not an error."""
    clients = {id(client): client for client in (backend.master, *backend.servants)}
    for client in clients.values():
        for op in BACKEND_OPS:
            setattr(client, op, _metered(getattr(client, op), meters.backend_op(name, op)))


def _metered(method, meter: BackendOpMeter):
    async def metered(*args: Any, **kwargs: Any) -> Any:
        meter.calls += 1
        try:
            return await method(*args, **kwargs)
        except (RaceCondition, UniqueViolation):
            raise
        except Exception:
            meter.errors += 1
            raise

    metered.__name__ = getattr(method, "__name__", "metered")
    return metered
