"""The tutorial's chat app, driven through the Sandbox as a game developer would."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from hetu.testing import ConnectionClosed, Sandbox

APP_FILE = Path(__file__).parents[2] / "examples" / "chat" / "server" / "src" / "app.py"


def load_chat_app():
    spec = importlib.util.spec_from_file_location("chat_app", APP_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["chat_app"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def sb(tmp_path):
    app = sys.modules.get("chat_app") or load_chat_app()
    sandbox = await Sandbox.create("Chat", app, db_path=tmp_path / "chat.db", reload_app=True)
    yield sandbox
    await sandbox.aclose()


async def messages(sb):
    return await sb.range("ChatMessage", "created_at_ms", 0, 2**62, limit=-1)


async def test_login_marks_user_online_and_announces_it(sb):
    assert await sb.call("user_login", 1001, "Alice") == "ok"
    user = await sb.must_get("OnlineUser", owner=1001)
    assert user.name == "Alice" and user.online == 1
    msgs = await messages(sb)
    assert [(m.kind, m.text) for m in msgs] == [("system", "Alice joined the chat")]


async def test_chat_needs_login(sb):
    with pytest.raises(ConnectionClosed):
        await sb.call("user_chat", "hello")


async def test_chat_after_login_in_the_same_connection(sb):
    user_data = {}  # one connection's user_data, shared by its calls
    await sb.call("user_login", 7, "Bob", user_data=user_data)
    await sb.call("user_chat", "hi all", caller=7, user_data=user_data)
    msgs = await messages(sb)
    assert [(m.owner, m.name, m.kind, m.text) for m in msgs][-1] == (7, "Bob", "chat", "hi all")


async def test_quit_marks_offline_and_announces_it(sb):
    await sb.call("user_login", 3, "Cyd")
    assert await sb.call("user_quit", caller=3) == "ok"
    assert (await sb.must_get("OnlineUser", owner=3)).online == 0
    assert (await messages(sb))[-1].text == "Cyd left the chat"


async def test_leaving_after_quit_announces_nothing_more(sb):
    await sb.call("user_login", 5, "Fay")
    await sb.call("user_quit", caller=5)
    await sb.call_system("on_disconnect", caller=5)
    texts = [m.text for m in await messages(sb)]
    assert texts.count("Fay left the chat") == 1


async def test_on_disconnect_runs_user_quit_through_depends(sb):
    await sb.call("user_login", 4, "Dee")
    await sb.call_system("on_disconnect", caller=4)
    assert (await sb.must_get("OnlineUser", owner=4)).online == 0
    assert (await messages(sb))[-1].text == "Dee left the chat"


async def test_on_disconnect_is_not_client_callable(sb):
    with pytest.raises(ConnectionClosed):
        await sb.call("on_disconnect", caller=4)


async def test_second_user_with_the_same_name_is_refused(sb):
    await sb.call("user_login", 1, "Eve")
    with pytest.raises(ConnectionClosed, match="UniqueViolation"):
        await sb.call("user_login", 2, "Eve")
    assert await sb.get("OnlineUser", owner=2) is None


async def test_login_again_keeps_one_presence_row(sb):
    await sb.call("user_login", 5, "Fay")
    await sb.call("user_login", 5, "Fay")
    rows = await sb.range("OnlineUser", "owner", 5, 5, limit=-1)
    assert len(rows) == 1
    assert [m.text for m in await messages(sb)] == ["Fay joined the chat", "Fay joined the chat"]
