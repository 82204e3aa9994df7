"""A terminal client for the chat example, built on ``hetu.client``.

Start the server (``hetu start --config=examples/chat/server/config.yml``), then, in as
many terminals as you like::

    python examples/chat/client.py --name Alice

It shows the recent messages, then every message as the server pushes it; a line you
type is sent to the room. ``/users`` lists who is online, ``/help`` the commands,
``/quit`` (or end of input) leaves. The session reconnects by itself when the server
restarts, and logs in again.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from hetu.client import (
    CallFailed,
    CallRejected,
    ConnectionClosed,
    HandshakeRefused,
    HeTuClient,
    HeTuSession,
    LiveRange,
)

DEFAULT_URL = "ws://127.0.0.1:2466/hetu/dev"
DEFAULT_AUTH_KEY = "password123"
MAX_INT64 = 2**63 - 1
HISTORY = 20  # messages shown on start: the live range holds the newest ones
MAX_USERS = 1024
MAX_NAME = 32  # OnlineUser.name and ChatMessage.name are U32
MAX_TEXT = 256  # ChatMessage.text is U256
CALL_TIMEOUT = 10.0

HELP = """\
-- commands:
--   /users   who is online
--   /help    this list
--   /quit    leave the chat (end of input does the same)
--   any other line is sent to the room; start it with // to send a line beginning with /"""


def user_id_of(name: str) -> int:
    """The user id a chat name logs in as: the same for the same name, everywhere.

    It is the 32-bit FNV-1a hash of the name's UTF-8 bytes with the top bit cleared
    (0 becomes 1), the rule of the web page's ``user-id.js``, so a name is one user
    whether it logs in from a terminal or a browser. ``user_id_of("Alice")`` is
    always the same positive number below 2**31.
    """
    value = 0x811C9DC5
    for byte in name.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return (value & 0x7FFFFFFF) or 1


def show(line: str) -> None:
    """One line on stdout, flushed at once (stdout may be a pipe)."""
    print(line, flush=True)


def clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


def format_message(row: dict) -> str:
    """``[12:00:01] Alice: hello``; system messages (joins, leaves) have a ``*`` instead
    of a name."""
    if row.get("kind") == "system":
        return f"[{clock(row['created_at_ms'])}] * {row['text']}"
    return f"[{clock(row['created_at_ms'])}] {row['name']}: {row['text']}"


class StdinLines:
    """Lines of stdin, read by a thread so the event loop never blocks on them.

    The thread uses ``os.read`` on the file descriptor: it works for pipes, files and
    terminals on every platform, and a thread stuck in it does not hold up the exit.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._decoder = codecs.getincrementaldecoder(sys.stdin.encoding or "utf-8")(errors="replace")
        self._pending = ""
        self._eof = False
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._pump, args=(loop,), name="stdin", daemon=True).start()

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        fd = sys.stdin.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, chunk)
            except RuntimeError:  # the loop has ended
                return
            if not chunk:
                return

    async def readline(self) -> str | None:
        """The next line without its line ending; None at the end of input."""
        while "\n" not in self._pending:
            if self._eof:
                line, self._pending = self._pending, ""
                return line or None
            chunk = await self._queue.get()
            if chunk:
                self._pending += self._decoder.decode(chunk)
            else:
                self._pending += self._decoder.decode(b"", final=True)
                self._eof = True
        line, self._pending = self._pending.split("\n", 1)
        return line.rstrip("\r")


class TakenOver(Exception):
    """The user logged in elsewhere while this client was disconnected."""


class ChatClient:
    """One user in the chat room: the session, what it shows, the commands it reads."""

    def __init__(self, url: str, auth_key: str, name: str, user_id: int) -> None:
        self.name = name
        self.user_id = user_id
        self.session = HeTuSession(url, auth_key=auth_key, on_connect=self._login,
                                   call_timeout=CALL_TIMEOUT)
        self.messages: LiveRange | None = None
        self.users: LiveRange | None = None
        self.taken_over = asyncio.Event()
        self._logins = 0
        self._login_seen_ms: int | None = None  # OnlineUser.last_seen_ms our last login wrote
        self._unshown: list[dict] = []

    # -- connecting ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.session.start()
        self.users = await self.session.range("OnlineUser", "owner", 0, MAX_INT64, limit=MAX_USERS)
        self.messages = await self.session.range("ChatMessage", "id", 0, MAX_INT64, limit=HISTORY,
                                                 desc=True)
        # the callback and the snapshot are taken in one step: no message falls between
        self.messages.on_insert(self._message_arrived)
        for row in reversed(self.messages.rows_list()):
            show(format_message(row))
        show(f"-- logged in as {self.name} (user id {self.user_id}); type /help for the commands")
        self.show_users()

    async def _login(self, client: HeTuClient) -> None:
        """Runs on every connection of the session: the first one and each reconnect."""
        if self._logins and await self._logged_in_elsewhere(client):
            self.taken_over.set()
            raise TakenOver(f"{self.name} logged in elsewhere")
        await client.call("user_login", self.user_id, self.name)
        self._login_seen_ms = await self._last_seen_ms(client)
        self._logins += 1
        if self._logins > 1:
            show(f"-- reconnected as {self.name}")

    async def _logged_in_elsewhere(self, client: HeTuClient) -> bool:
        """Whether someone logged in as this user after us (the server then closed our
        connection). Logging in again would close theirs, and so on forever."""
        row = await self._own_row(client)
        return bool(row and row["online"] and row["last_seen_ms"] != self._login_seen_ms)

    async def _last_seen_ms(self, client: HeTuClient) -> int | None:
        row = await self._own_row(client)
        return row["last_seen_ms"] if row else None

    async def _own_row(self, client: HeTuClient) -> dict | None:
        """This user's OnlineUser row, read once."""
        live = await client.get("OnlineUser", "owner", self.user_id)
        if live is None:
            return None
        await live.unsubscribe()
        return live.row

    # -- showing ------------------------------------------------------------------------

    def _message_arrived(self, row: dict) -> None:
        # One push may bring several messages, in any order (a reconnect brings all those
        # missed meanwhile): show them sorted once the push has been applied.
        if not self._unshown:
            asyncio.get_running_loop().call_soon(self._show_arrived)
        self._unshown.append(row)

    def _show_arrived(self) -> None:
        rows, self._unshown = self._unshown, []
        for row in sorted(rows, key=lambda r: r["id"]):
            show(format_message(row))

    def online_names(self) -> list[str]:
        rows = self.users.rows.values() if self.users is not None else ()
        return sorted((row["name"] for row in rows if row["online"]), key=str.casefold)

    def show_users(self) -> None:
        names = self.online_names()
        show(f"-- {len(names)} online: {', '.join(names)}")

    # -- commands -----------------------------------------------------------------------

    async def handle(self, line: str) -> bool:
        """Act on one input line; False once the user asked to leave."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/") and not line.startswith("//"):
            command = line.split()[0].lower()
            if command == "/quit":
                return False
            if command == "/users":
                self.show_users()
            elif command == "/help":
                show(HELP)
            else:
                show(f"-- unknown command {command}: type /help for the commands")
            return True
        await self.say(line[1:] if line.startswith("//") else line)
        return True

    async def say(self, text: str) -> None:
        if len(text) > MAX_TEXT:
            show(f"-- not sent: a message holds at most {MAX_TEXT} characters (this one has {len(text)})")
            return
        try:
            await self.session.call("user_chat", text)
        except ConnectionClosed as exc:
            show(f"-- not sent (it may have arrived if the connection dropped during the call): {exc}")
        except (CallFailed, CallRejected) as exc:
            show(f"-- not sent: {exc}")

    async def quit(self) -> None:
        """Leave the room (when connected) and close the session."""
        if self.session.connected:
            try:
                await asyncio.wait_for(self.session.call("user_quit"), CALL_TIMEOUT)
            except (ConnectionClosed, TimeoutError):
                pass  # the server runs on_disconnect, which does the same
        await self.session.close()


async def ask_name(lines: StdinLines) -> str | None:
    sys.stdout.write("Your name: ")
    sys.stdout.flush()
    line = await lines.readline()
    if not sys.stdin.isatty():
        show("")  # a terminal echoed the name and its line end; a pipe did not
    return None if line is None else line.strip()


def check_name(name: str) -> str | None:
    """What is wrong with ``name``, or None."""
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME:
        return f"the name has {len(name)} characters; at most {MAX_NAME} fit"
    if name.startswith("/"):
        return "the name may not start with /"
    return None


STARTUP_ERRORS = (ConnectionClosed, CallFailed, CallRejected, OSError)


def startup_error(exc: Exception, url: str, name: str) -> str:
    """One line saying why joining the chat failed and what to check."""
    if isinstance(exc, HandshakeRefused):
        return f"{url} refused the handshake: check --auth-key (it must equal the server's auth_key)"
    if isinstance(exc, ConnectionClosed) and exc.__cause__ is not None:  # no websocket at all
        return f"{exc} (is the server running there? check --url)"
    return (f"logging in as {name} on {url} failed: {exc} "
            "(is the name taken by another --user-id?)")


async def run(args: argparse.Namespace) -> int:
    lines = StdinLines()
    name = args.name
    if name is None:
        name = await ask_name(lines)
        if name is None:
            print("error: no name given", file=sys.stderr)
            return 1
    if problem := check_name(name):
        print(f"error: {problem}", file=sys.stderr)
        return 1
    user_id = args.user_id if args.user_id is not None else user_id_of(name)

    chat = ChatClient(args.url, args.auth_key, name, user_id)
    try:
        await chat.start()
    except STARTUP_ERRORS as exc:
        await chat.session.close()
        print(f"error: {startup_error(exc, args.url, name)}", file=sys.stderr)
        return 1

    stop = asyncio.Event()  # Ctrl-C or SIGTERM: leave like /quit
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # not on Windows' event loop
            pass

    taken_over = asyncio.create_task(chat.taken_over.wait())
    stopped = asyncio.create_task(stop.wait())
    try:
        while True:
            reading = asyncio.create_task(lines.readline())
            await asyncio.wait({reading, taken_over, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                break
            line = reading.result()
            if line is None or not await chat.handle(line):
                break
    finally:
        taken_over.cancel()
        stopped.cancel()
    if chat.taken_over.is_set():
        await chat.session.close()
        print(f"error: {name} logged in elsewhere; this client stops", file=sys.stderr)
        return 1
    await chat.quit()
    show("-- bye")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Chat in the HeTu chat example from a terminal.",
        epilog="The chat has no accounts: a name stands for a user. The user id is derived "
               "from the name (a 32-bit FNV-1a hash, the same rule as the web page), so the "
               "same name is the same user everywhere, and logging in with it elsewhere "
               "takes over. --user-id overrides the derived id.",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server websocket URL (default: {DEFAULT_URL})")
    parser.add_argument("--auth-key", default=DEFAULT_AUTH_KEY,
                        help=f"the server's crypto auth_key (default: {DEFAULT_AUTH_KEY})")
    parser.add_argument("--name", help="your name in the chat (asked for when absent)")
    parser.add_argument("--user-id", type=int, help="log in as this user id instead of the one derived from the name")
    args = parser.parse_args(argv)
    if args.user_id is not None and not 0 < args.user_id <= MAX_INT64:
        parser.error("--user-id must be a positive 64-bit integer")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="-- %(message)s")  # the session's reconnect notes
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:  # before the signal handlers were in place
        return 130


if __name__ == "__main__":
    sys.exit(main())
