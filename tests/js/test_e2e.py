"""The built SDK in Node against real servers (real sockets, SQLite files), with the
Python client as the other party."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.js.conftest import as_int, bigint
from tests.server.conftest import ServerProcess, connect

pytestmark = pytest.mark.usefixtures("bundle")


async def test_calls_replies_rejections_and_closing(server, scripts):
    script = await scripts("calls.mjs", server.url, f"ws://127.0.0.1:{free_port()}/hetu/test")
    result = await script.result()
    assert result["state"] == "open"
    assert "HeTu" in result["motd"]
    assert result["login"] == {"id": 1001}

    # a snowflake id is beyond 2^53: a bigint, and the row is the one written
    posted = result["posted"]
    assert isinstance(posted, str) and posted.endswith("n")
    reader = await connect(server)
    try:
        row = await reader.get("Board", "id", as_int(posted))
        assert row is not None and row.row["note"] == "from node" and row.row["owner"] == 42
    finally:
        await reader.close()

    assert [r.get("value") for r in result["limited"][:2]] == ["fine", "fine"]
    assert result["limited"][2] == {"error": "CallRejected", "code": "RATE_LIMITED", "endpoint": "limited",
                                    "message": "limited rejected: RATE_LIMITED"}
    assert result["stillOpen"] is True
    assert result["wrongKey"]["error"] == "HandshakeError"
    assert result["unreachable"]["error"] == "ConnectionClosed"
    # release mode: a failing call costs the connection
    assert result["crash"]["error"] == "ConnectionClosed"
    assert result["closedState"] == "closed" and result["closeReason"]
    assert result["afterClose"]["error"] == "ConnectionClosed"


async def test_live_range_and_row_follow_another_clients_writes(server, scripts):
    writer = await connect(server)
    try:
        watched = await writer.call("post", 4242, 1, "watched")
        script = await scripts("live.mjs", server.url, 4242, watched)
        ready = await script.event("ready")
        assert ready["subId"] == "Board.owner[4242:4242:1][:100]"
        assert ready["rowSubId"] == f"Board.id[{watched}:None:1][:1]"
        assert ready["rows"] == [{"id": bigint(watched), "note": "watched", "owner": 4242, "score": 1}]
        assert ready["row"] == ready["rows"][0]  # no _version, though the server sends it here
        assert ready["missing"] is None

        added = await writer.call("post", 4242, 2, "added")
        inserted = await script.event("change")
        assert inserted == {"event": "change", "source": "range", "kind": "insert", "id": bigint(added),
                            "row": {"id": bigint(added), "note": "added", "owner": 4242, "score": 2}}

        await writer.call("edit", watched, 5, "edited")
        updates = [await script.event("change"), await script.event("change")]
        assert sorted(u["source"] for u in updates) == ["range", "row"]
        for update in updates:
            assert update["kind"] == "update" and update["id"] == bigint(watched)
            assert (update["old"]["note"], update["row"]["note"], update["row"]["score"]) == ("watched", "edited", 5)

        await writer.call("remove", added)
        deleted = await script.event("change")
        assert (deleted["source"], deleted["kind"], deleted["old"]["note"]) == ("range", "delete", "added")

        await writer.call("remove", watched)
        result = await script.result()
        last = [e for e in script.events if e["event"] == "change"][-2:]
        assert sorted((e["source"], e["kind"], e["old"]["note"]) for e in last) == [
            ("range", "delete", "edited"), ("row", "delete", "edited")]
        assert not any(e.get("source") == "removed callback" for e in script.events)
        assert result["done"] is True
        assert result["iterated"] == [["insert", bigint(added)], ["update", bigint(watched)],
                                      ["delete", bigint(added)], ["delete", bigint(watched)]]
        assert result["rangeClosed"] is True and result["rowClosed"] is False
        assert result["rowClosedAfterClose"] is True
    finally:
        await writer.close()


async def test_chat_example_debug_errors_and_conversation(chat_server, scripts):
    script = await scripts("chat.mjs", chat_server.url)
    ready = await script.event("ready")
    assert ready["texts"][-1] == "alice joined the chat"
    assert ready["me"]["name"] == "alice" and ready["me"]["online"] == 1
    assert ready["meSubId"] == f"OnlineUser.id[{as_int(ready['me']['id'])}:None:1][:1]"

    bob = await connect(chat_server)
    try:
        history = await bob.range("ChatMessage", "id", 0, 2**63 - 1, limit=1024)
        await bob.call("user_login", 1002, "bob")
        await bob.call("user_chat", "hi alice")
        result = await script.result()
        assert any(row["text"] == "hello bob" and row["owner"] == 1001 for row in history.rows.values())
    finally:
        await bob.close()

    rejected = {"error": "CallFailed", "reason": "server rejected the request."}
    assert {k: result["beforeLogin"][k] for k in rejected} == rejected
    assert result["beforeLogin"]["endpoint"] == "user_chat"
    assert {k: result["missingArgument"][k] for k in rejected} == rejected
    assert result["unknownComponent"]["error"] == "CallFailed"
    assert result["login"] == "ok" and result["chat"] == "ok"
    assert result["sawBob"] is True
    assert result["texts"][-4:] == ["alice joined the chat", "bob joined the chat", "hi alice", "hello bob"]
    assert ["bob", 1] in result["users"] and ["alice", 1] in result["users"]
    assert set(result["idTypes"]) == {"bigint"}


async def test_session_reconnects_after_a_server_restart(server, db_path, scripts):
    first = ServerProcess(db_path.parent, f"sqlite:///{db_path}")  # `server` shares its database
    restarted = None
    writer = await connect(server)
    try:
        script = await scripts("session.mjs", first.url)
        ready = await script.event("ready")
        assert ready["connections"] == 1 and ready["logins"] == [{"id": 801}]

        first.stop()
        await script.event("disconnected")
        await writer.call("remove", as_int(ready["doomed"]))
        await writer.call("post", 800, 4, "meanwhile")
        restarted = ServerProcess(db_path.parent, f"sqlite:///{db_path}", port=first.port)

        result = await script.result(timeout=30)
        assert result["connections"] == 2
        assert result["logins"] == [{"id": 801}, {"id": 801}]  # onConnect ran again
        assert result["notes"] == ["kept", "meanwhile", "queued"]
        assert ["delete", "doomed"] in result["changes"] and ["insert", "meanwhile"] in result["changes"]
        assert result["queuedInRows"] is True and result["laterSeen"] is True
        assert result["liveClosed"] is False and result["subId"] == "Board.owner[800:800:1][:10]"
        assert result["liveClosedAfterClose"] is True
    finally:
        await writer.close()
        first.stop()
        if restarted is not None:
            restarted.stop()


async def test_the_extra_frame_of_a_subscription_over_the_cap_does_not_shift_replies(tmp_path, scripts):
    srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'caps.db'}", debug=True, MAX_ROW_SUBSCRIPTION=1)
    try:
        result = await (await scripts("overflow.mjs", srv.url)).result()
        reader = await connect(srv)
        try:
            notes = {}
            for name in ("nine", "ten"):
                assert "value" in result[name], result[name]
                row = await reader.get("Board", "id", as_int(result[name]["value"]))
                notes[name] = row.row["note"]
        finally:
            await reader.close()
    finally:
        srv.stop()
    assert result["secondRow"]["note"] == "b"
    assert notes == {"nine": "nine", "ten": "ten"}  # each call got its own reply
    assert result["unsolicited"] == [["sub", "fail", [{"id": 0, "info": "DEBUG MODE: server rejected the request."}]]]
