"""The login state of one connection (hetu/server/login.py): each allowed transition as
it happens, illegal ones refused, and a takeover during a call demoting only when the
call ends. The connection, its subscriptions and the watcher are stand-ins that record
what the login asks of them."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from hetu.endpoint.context import Context
from hetu.server.login import (
    ALLOWED,
    ANONYMOUS,
    CHECKING,
    CLOSED,
    KICKED,
    LOGGED_IN,
    TAKEN_OVER,
    ConnectionLogin,
    IllegalLoginTransition,
    LoginState,
)
from hetu.server.state import ServerState

INSTANCE = "test"
CONN_ID = 7
USER = 42


class Watcher:
    """Stands in for the worker's LoginWatcher: the owners of the Connection rows, and
    reads that wait while ``gate`` is closed."""

    def __init__(self) -> None:
        self.owners: dict[int, int] = {}
        self.watched: dict[int, ConnectionLogin] = {}
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.failing = False
        self.stubborn = False  # a cancelled read raises an error instead (redis-py does)

    async def watch(self, login: ConnectionLogin) -> None:
        self.watched[login.conn.ctx.connection_id] = login

    def unwatch(self, login: ConnectionLogin) -> None:
        self.watched.pop(login.conn.ctx.connection_id, None)

    async def owner_of(self, connection_id: int) -> int | None:
        self.reads += 1
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            if self.stubborn:
                raise ConnectionError("the read was interrupted") from None
            raise
        if self.failing:
            raise ConnectionError("the backend is down")
        return self.owners.get(connection_id)


class Subscriptions:
    def __init__(self) -> None:
        self.revalidated = 0

    def revalidate(self) -> None:
        self.revalidated += 1


class Conn:
    """What ConnectionLogin needs of a ClientConnection."""

    def __init__(self, debug: bool = True) -> None:
        self.server = ServerState(config={}, namespace="pytest", pipeline=None, debug=int(debug))
        self.watcher = self.server.login_watchers[INSTANCE] = Watcher()
        self.instance = INSTANCE
        self.ctx = Context(caller=0, connection_id=CONN_ID, address="test", group="guest", user_data={},
                           timestamp=0.0, request=None, systems=None)
        self.ctx.configure([], [], 1000, 1000)
        self.subscriptions = Subscriptions()
        self.closed = 0
        self.login = ConnectionLogin(self)

    def close_now(self) -> None:
        self.closed += 1

    # what the connection's calls do to the login
    async def log_in(self, user: int = USER) -> None:
        """A call that logs in (as elevate does: the row names the user first)."""
        self.watcher.owners[CONN_ID] = self.ctx.caller = user
        await self.login.call_ended(0)

    async def log_out(self) -> None:
        """A call that logs out."""
        before, self.ctx.caller = self.ctx.caller, 0
        self.watcher.owners[CONN_ID] = 0
        await self.login.call_ended(before)

    def take_over(self) -> None:
        """Another connection logs in as the user: the row no longer names it."""
        self.watcher.owners[CONN_ID] = 0
        self.login.changed()


async def logged_in(debug: bool = True) -> Conn:
    conn = Conn(debug)
    await conn.log_in()
    await conn.login.settled()
    assert conn.login.state is LOGGED_IN
    return conn


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


# -- the table ------------------------------------------------------------------------------

ALLOWED_PAIRS = [(old, new) for old, targets in ALLOWED.items() for new in targets]
ILLEGAL_PAIRS = [(old, new) for old, new in itertools.product(LoginState, LoginState)
                 if new not in ALLOWED[old]]


def test_the_table_names_every_state():
    assert set(ALLOWED) == set(LoginState)


@pytest.mark.parametrize("old, new", ALLOWED_PAIRS, ids=lambda s: s.name)
def test_an_allowed_transition_is_made(old, new):
    login = ConnectionLogin(Conn())
    login.state = old
    login._move(new)
    assert login.state is new


@pytest.mark.parametrize("old, new", ILLEGAL_PAIRS, ids=lambda s: s.name)
def test_an_illegal_transition_is_refused_naming_both_states(old, new):
    login = ConnectionLogin(Conn())
    login.state = old
    with pytest.raises(AssertionError, match=f"from {old.name} to {new.name}") as raised:
        login._move(new)
    assert isinstance(raised.value, IllegalLoginTransition)
    assert login.state is old


# -- logging in and out ------------------------------------------------------------------------

async def test_a_new_connection_is_anonymous():
    conn = Conn()
    assert conn.login.state is ANONYMOUS and not conn.login.pending()
    assert conn.login.reader_ctx() is conn.ctx


async def test_a_call_that_logs_in_watches_the_row_and_checks_it_once():
    conn = Conn()
    await conn.log_in()
    assert conn.login.state is CHECKING and conn.login.pending()  # ANONYMOUS -> LOGGED_IN -> CHECKING
    assert conn.watcher.watched == {CONN_ID: conn.login}
    await conn.login.settled()
    assert conn.login.state is LOGGED_IN and not conn.login.pending()
    assert conn.watcher.reads == 1 and conn.ctx.caller == USER


async def test_a_call_that_logs_out_stops_watching_and_revalidates():
    conn = await logged_in()
    await conn.log_out()
    assert conn.login.state is ANONYMOUS
    assert conn.watcher.watched == {} and conn.subscriptions.revalidated == 1


async def test_a_call_that_leaves_the_caller_alone_changes_nothing():
    conn = await logged_in()
    await conn.login.call_ended(USER)
    assert conn.login.state is LOGGED_IN and conn.watcher.reads == 1


# -- the check ----------------------------------------------------------------------------------

async def test_a_changed_row_that_still_names_the_user_keeps_the_login():
    conn = await logged_in()
    conn.login.changed()
    assert conn.login.state is CHECKING
    await conn.login.settled()
    assert conn.login.state is LOGGED_IN and conn.ctx.caller == USER and conn.subscriptions.revalidated == 0


async def test_pushes_wait_while_the_row_is_checked():
    conn = await logged_in()
    conn.watcher.gate.clear()
    conn.login.changed()
    waiting = asyncio.create_task(conn.login.settled())
    await turns()
    assert conn.login.pending() and not waiting.done()
    conn.watcher.gate.set()
    await asyncio.wait_for(waiting, 1)
    assert not conn.login.pending()


async def test_a_row_changed_again_during_the_check_is_read_again():
    conn = await logged_in()
    conn.watcher.gate.clear()
    conn.login.changed()
    await turns()
    conn.login.changed()  # during the read: no second task, one more read
    conn.watcher.gate.set()
    await conn.login.settled()
    assert conn.login.state is LOGGED_IN and conn.watcher.reads == 3


async def test_a_failed_check_keeps_the_login():
    conn = await logged_in()
    conn.watcher.failing = True
    conn.login.changed()
    await conn.login.settled()
    assert conn.login.state is LOGGED_IN and conn.ctx.caller == USER


async def test_a_logout_during_the_check_drops_the_check():
    conn = await logged_in()
    conn.watcher.gate.clear()
    conn.login.changed()
    await turns()
    await conn.log_out()
    assert conn.login.state is ANONYMOUS and not conn.login.pending()
    conn.watcher.gate.set()
    await turns()
    assert conn.login.state is ANONYMOUS and conn.closed == 0


async def test_a_dropped_check_that_ignores_its_cancellation_changes_nothing():
    conn = await logged_in()
    conn.watcher.gate.clear()
    conn.watcher.stubborn = True
    conn.take_over()  # would kick, were the check not dropped
    await turns()
    await conn.log_out()
    await conn.log_in(USER + 1)  # a new login, a new check
    await turns()
    assert conn.login.state is CHECKING
    conn.watcher.gate.set()
    await conn.login.settled()
    assert conn.login.state is LOGGED_IN and conn.ctx.caller == USER + 1 and conn.closed == 0


# -- takeovers ------------------------------------------------------------------------------------

async def test_a_takeover_between_calls_kicks_at_once():
    conn = await logged_in()
    conn.take_over()
    await conn.login.settled()
    assert conn.login.state is KICKED
    assert conn.ctx.caller == 0 and conn.ctx.group == "guest"
    assert conn.watcher.watched == {} and conn.subscriptions.revalidated == 1
    assert conn.closed == 0  # debug mode keeps it open
    conn.login.changed()  # no longer watched: nothing to check
    assert conn.login.state is KICKED


async def test_release_mode_closes_a_kicked_connection():
    conn = await logged_in(debug=False)
    conn.take_over()
    await conn.login.settled()
    assert conn.login.state is KICKED and conn.closed == 1 and conn.subscriptions.revalidated == 0


async def test_a_takeover_during_a_call_demotes_only_when_the_call_ends():
    conn = await logged_in()
    conn.login.in_call = True
    conn.take_over()
    await conn.login.settled()
    assert conn.login.state is TAKEN_OVER
    assert conn.ctx.caller == USER  # the call runs on as the user
    reader = conn.login.reader_ctx()
    assert reader is not conn.ctx and reader.caller == 0  # pushes see an anonymous reader
    assert conn.subscriptions.revalidated == 1 and conn.watcher.watched == {}
    conn.login.in_call = False
    await conn.login.call_ended(USER)
    assert conn.login.state is KICKED and conn.ctx.caller == 0
    assert conn.login.reader_ctx() is conn.ctx


# -- the end of the connection ----------------------------------------------------------------

async def test_an_anonymous_connection_closes():
    conn = Conn()
    await conn.login.close()
    assert conn.login.state is CLOSED and conn.watcher.reads == 0


async def test_a_logged_in_connection_closes_as_its_user():
    conn = await logged_in()
    await conn.login.close()
    assert conn.login.state is CLOSED and conn.ctx.caller == USER and conn.watcher.watched == {}


async def test_a_takeover_not_noticed_yet_is_found_when_the_connection_closes():
    conn = await logged_in()
    conn.watcher.owners[CONN_ID] = 0  # no change event has come yet
    await conn.login.close()
    assert conn.login.state is CLOSED and conn.ctx.caller == 0  # LOGGED_IN -> KICKED -> CLOSED


async def test_a_connection_closing_during_the_check_reads_the_row_itself():
    conn = await logged_in()
    conn.watcher.gate.clear()
    conn.take_over()
    await turns()
    closing = asyncio.create_task(conn.login.close())
    await turns()
    conn.watcher.gate.set()
    await asyncio.wait_for(closing, 1)
    assert conn.login.state is CLOSED and conn.ctx.caller == 0 and conn.watcher.reads == 3


async def test_a_connection_closing_during_a_taken_over_call_closes_as_anonymous():
    conn = await logged_in(debug=False)
    conn.login.in_call = True
    conn.take_over()
    await conn.login.settled()
    assert conn.login.state is TAKEN_OVER and conn.closed == 1
    await conn.login.close()  # the call was cancelled with the connection
    assert conn.login.state is CLOSED and conn.ctx.caller == 0


async def test_a_kicked_connection_closes_as_anonymous():
    conn = await logged_in()
    conn.take_over()
    await conn.login.settled()
    await conn.login.close()
    assert conn.login.state is CLOSED and conn.ctx.caller == 0 and conn.watcher.reads == 2


async def test_every_allowed_transition_is_made_by_some_course_of_events(monkeypatch):
    made = set()
    move = ConnectionLogin._move

    def recording(login, new):
        made.add((login.state, new))
        move(login, new)

    monkeypatch.setattr(ConnectionLogin, "_move", recording)
    for course in (test_a_call_that_logs_out_stops_watching_and_revalidates,
                   test_a_logout_during_the_check_drops_the_check,
                   test_a_takeover_during_a_call_demotes_only_when_the_call_ends,
                   test_a_connection_closing_during_a_taken_over_call_closes_as_anonymous,
                   test_a_kicked_connection_closes_as_anonymous,
                   test_a_takeover_not_noticed_yet_is_found_when_the_connection_closes,
                   test_a_logged_in_connection_closes_as_its_user,
                   test_an_anonymous_connection_closes):
        await course()
    assert made == set(ALLOWED_PAIRS)
