"""SIGTERM/SIGINT stop a server cleanly: open connections get on_disconnect, ids are released."""

from __future__ import annotations

import asyncio
import signal

import pytest

from hetu.client import HeTuClient
from tests.server.conftest import AUTH_KEY, ServerProcess


@pytest.mark.parametrize("sig, workers", [(signal.SIGTERM, 2), (signal.SIGINT, 2), (signal.SIGTERM, 1),
                                          (signal.SIGINT, 1)])
async def test_stopping_runs_on_disconnect_and_releases_worker_ids(tmp_path, sig, workers):
    """Also with one worker: the server then runs in a single process (the chat example)."""
    db = f"sqlite:///{tmp_path / 'stop.db'}"
    srv = ServerProcess(tmp_path, db, workers=workers)
    clients = []
    try:
        for user in (901, 902):
            client = await HeTuClient.connect(srv.url, auth_key=AUTH_KEY)
            await client.call("login", user)
            clients.append(client)
        if workers > 1:
            # Sanic's manager ignores a stop request that arrives while it is still
            # collecting its workers' startup acks (a fraction of a second after they log
            # that they accept connections) and then waits 30 s. Nothing outside the main
            # process shows when the acks are in, so a bounded wait it is; a single
            # process has no manager and no such window.
            await asyncio.sleep(3.0)
        srv.proc.send_signal(sig)
        assert srv.proc.wait(30) == 0
    finally:
        srv.stop()
    logs = srv.logs()
    assert logs.count("released worker id") == workers and "Traceback" not in logs
    for client in clients:
        await client.wait_closed()
        assert client.closed

    # both logged-in connections ran on_disconnect before the workers exited
    again = ServerProcess(tmp_path, db)
    try:
        reader = await HeTuClient.connect(again.url, auth_key=AUTH_KEY)
        for user in (901, 902):
            live = await reader.get("Goodbye", "owner", user)
            assert live is not None and live.row["count"] == 1
        await reader.close()
    finally:
        again.stop()
