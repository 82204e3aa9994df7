"""Every private part of Sanic the server relies on, named, with the effect it is used for.

Sanic has no public API for these; each workaround is switched off silently (a
``getattr`` guard) when an upgrade renames a part. These tests fail instead, so CI
catches it. The direct write and read paths have their own tests
(tests/server/test_ws_writer.py); a killed worker being replaced is tested end to end
in tests/reliability/test_faults.py.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path

import sanic
import websockets
from sanic.worker.manager import WorkerManager
from sanic.worker.process import ProcessState

import hetu.server.client_connection as client_connection_module
import hetu.server.watchdog as watchdog_module
from tests.server.test_ws_writer import _serve
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_sanic_is_a_version_the_pin_admits():
    pin = re.search(r'"sanic(>=[^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    low, high = re.fullmatch(r">=([\d.]+),<([\d.]+)", pin).groups()

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split(".")[:2])

    assert version(low) <= version(sanic.__version__) < version(high), (sanic.__version__, pin)


async def test_the_http_timeout_timer_of_a_websocket_is_there_and_cancelling_it_holds():
    """ClientConnection._cancel_http_timeout_check: Sanic's HTTP timeout timer keeps a
    closed websocket's objects for up to 30 s unless cancelled."""
    seen: dict = {}
    done = asyncio.Event()

    async def handler(request, ws):
        timer = getattr(ws.io_proto, "_callback_check_timeouts", None)
        seen["timer"] = isinstance(timer, asyncio.TimerHandle)
        timer.cancel()
        await ws.send(b"cancelled")
        seen["echo"] = await ws.recv()  # traffic after the cancel did not re-arm another one
        seen["still cancelled"] = ws.io_proto._callback_check_timeouts is timer and timer.cancelled()
        done.set()

    server, url = await _serve(handler)
    try:
        async with websockets.connect(url) as client:
            await client.send(await asyncio.wait_for(client.recv(), 5))
            await asyncio.wait_for(done.wait(), 5)
        assert seen == {"timer": True, "echo": b"cancelled", "still cancelled": True}
    finally:
        server.close()
        await server.wait_closed()


async def test_unread_frames_wait_in_the_assembler_where_the_connection_releases_them():
    """ClientConnection._release_unread_frames reads out frames that arrived after the
    one that ended a connection: the assembler's get(0) and its locks must exist."""
    seen: dict = {}
    done = asyncio.Event()

    async def handler(request, ws):
        seen["first"] = await ws.recv()
        assembler = ws.assembler
        await wait_until(assembler.message_complete.is_set, 5, "the second frame to wait in the assembler")
        seen["locks"] = (isinstance(assembler.write_mutex, asyncio.Lock)
                         and isinstance(ws.process_event_mutex, asyncio.Lock))
        seen["unread"] = await assembler.get(0)
        done.set()

    server, url = await _serve(handler)
    try:
        async with websockets.connect(url) as client:
            await client.send(b"one")
            await client.send(b"two")
            await asyncio.wait_for(done.wait(), 5)
        assert seen == {"first": b"one", "locks": True, "unread": b"two"}
    finally:
        server.close()
        await server.wait_closed()


def test_the_worker_manager_has_what_the_watchdog_uses():
    """hetu/server/watchdog.py: failed workers are found in ``transient_processes`` by
    their state, not while ``_shutting_down``, and restarted by a ``"<name>:"``
    message on ``monitor_publisher``, which the manager's monitor loop turns into
    ``restart(process_names=[name])``."""
    assert isinstance(inspect.getattr_static(WorkerManager, "transient_processes"), property)
    init = inspect.getsource(WorkerManager.__init__)
    assert "self._shutting_down = False" in init and "self.monitor_publisher" in init
    assert ProcessState.FAILED.name == "FAILED"
    restarted: list = []

    class Manager:
        def restart(self, **kwargs):
            restarted.append(kwargs)

        def scale(self, n):  # pragma: no cover - not reached
            raise AssertionError

    WorkerManager._handle_message(Manager(), "Sanic-Server-0-0:")
    assert restarted and restarted[0]["process_names"] == ["Sanic-Server-0-0"]
    assert "_shutting_down" in inspect.getsource(watchdog_module)


def test_the_modules_that_reach_into_sanic_are_the_ones_these_tests_cover():
    """A new use of a private Sanic part belongs in a test here (or in test_ws_writer)."""
    source = inspect.getsource(client_connection_module)
    private = set(re.findall(r'"(_[a-z_]+)"', source)) | set(re.findall(r"\bws\.(_[a-z_]+)", source))
    assert private == {"_callback_check_timeouts"}, private
