"""The tutorial's chat, end to end: two clients over real sockets (wire-protocol §9.2 A)."""

from __future__ import annotations

import asyncio
import re

import pytest

from hetu.client import ConnectionClosed, HeTuClient
from tests.server.conftest import AUTH_KEY, chat_server_process
from tests.server.test_subscriptions import next_delta
from tests.waiting import wait_until

BIG = 2**63 - 1


# INFO lines on stderr (as without LOGGING), with the replay logger's "[Closed] <connection>"
# line, written once a connection's clean-up (its on_disconnect included) is over
REPLAY_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
}


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chat")
    srv = chat_server_process(tmp, LOGGING=REPLAY_LOGGING)
    yield srv
    srv.stop()


async def test_two_users_chat_and_see_presence(chat_server):
    alice = await HeTuClient.connect(chat_server.url, auth_key=AUTH_KEY)
    bob = await HeTuClient.connect(chat_server.url, auth_key=AUTH_KEY)
    try:
        assert await alice.call("user_login", 1001, "alice") == "ok"
        users_sub, users = await alice.subscribe_range("OnlineUser", "owner", 0, BIG, 512)
        assert users_sub == f"OnlineUser.owner[0:{BIG}:1][:512]"
        assert [(u["name"], u["online"]) for u in users] == [("alice", 1)]
        msgs_sub, msgs = await alice.subscribe_range("ChatMessage", "id", 0, BIG, 1024)
        assert [m["text"] for m in msgs] == ["alice joined the chat"]

        assert await alice.call("user_chat", "hello") == "ok"
        delta = await next_delta(alice, msgs_sub, lambda d: any(v and v["text"] == "hello" for v in d.values()))
        (row,) = [v for v in delta.values() if v and v["text"] == "hello"]
        assert (row["kind"], row["name"], row["owner"]) == ("chat", "alice", 1001)

        await bob.call("user_login", 1002, "bob")
        await next_delta(alice, users_sub, lambda d: any(v and v["name"] == "bob" for v in d.values()))
        await next_delta(alice, msgs_sub, lambda d: any(v and v["text"] == "bob joined the chat" for v in d.values()))

        await bob.close()
        await next_delta(alice, users_sub, lambda d: any(v and v["name"] == "bob" and v["online"] == 0 for v in d.values()))
        await next_delta(alice, msgs_sub, lambda d: any(v and v["text"] == "bob left the chat" for v in d.values()))
    finally:
        await alice.close()


async def test_chat_before_login_closes_the_connection(chat_server):
    client = await HeTuClient.connect(chat_server.url, auth_key=AUTH_KEY)
    with pytest.raises(ConnectionClosed):
        await client.call("user_chat", "x")
    await client.close()


async def test_login_with_a_missing_argument_closes_the_connection(chat_server):
    client = await HeTuClient.connect(chat_server.url, auth_key=AUTH_KEY)
    with pytest.raises(ConnectionClosed):
        await client.call("user_login", 1001)
    await client.close()


async def test_logging_in_again_elsewhere_keeps_the_user_online(chat_server):
    """The old connection is kicked: it is closed, and its on_disconnect runs as anonymous,
    so it does not mark the user (now online on the new connection) offline."""
    old = await HeTuClient.connect(chat_server.url, auth_key=AUTH_KEY)
    new = await HeTuClient.connect(chat_server.url, auth_key=AUTH_KEY)
    try:
        await old.call("user_login", 1010, "carol")
        await new.call("user_login", 1010, "carol")
        await asyncio.wait_for(old.wait_closed(), 5)  # closed at once by the release-mode server
        kicked = re.search(r"\[(\d+)\|[^|\]]*\|1010\] was logged in elsewhere", chat_server.logs())
        assert kicked, chat_server.logs()
        await wait_until(lambda: f"[Closed] [{kicked[1]}|" in chat_server.logs(), 10,
                         "the old connection's clean-up (its on_disconnect) to finish")
        messages = await new.range("ChatMessage", "id", 0, BIG, limit=1024)
        users = await new.range("OnlineUser", "owner", 1010, 1010)
        arrived = asyncio.Event()  # listening before the call: the push may come with its reply
        messages.on_insert(lambda row: row["text"] == "still here" and arrived.set())
        assert await new.call("user_chat", "still here") == "ok"
        await asyncio.wait_for(arrived.wait(), 5)
        assert [(u["name"], u["online"]) for u in users.rows_list()] == [("carol", 1)]
        assert not [m for m in messages.rows_list() if m["text"] == "carol left the chat"]
    finally:
        await old.close()
        await new.close()
