"""examples/chat/client.py: the terminal chat client, driven through pipes against a real
chat server."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.server.conftest import AUTH_KEY, CHAT_APP, ServerProcess, chat_server_process

ROOT = Path(__file__).parents[2]
CLIENT = ROOT / "examples" / "chat" / "client.py"
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
DEADLINE = 10.0  # seconds to wait for an expected line


class ChatProcess:
    """One client process: lines go in through stdin, stdout is read with deadlines."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CLIENT), "--auth-key", AUTH_KEY, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", bufsize=1, env=ENV,
        )
        self.output: list[str] = []  # stdout lines read so far
        self.errors: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._drain_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()

    @classmethod
    def join(cls, url: str, name: str) -> ChatProcess:
        """A client logged in as ``name`` (returns once it says so)."""
        chat = cls("--url", url, "--name", name)
        chat.expect(rf"^-- logged in as {name} ")
        return chat

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.errors.append(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float = DEADLINE) -> str:
        """The next stdout line matching the regex ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout}s\n{self.transcript()}") from None
            if line is None:
                self._lines.put(None)
                raise AssertionError(f"the client ended before a line matching {pattern!r}\n{self.transcript()}")
            self.output.append(line)
            if re.search(pattern, line):
                return line

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def users(self) -> list[str]:
        """The names ``/users`` lists."""
        self.send("/users")
        line = self.expect(r"^-- \d+ online:")
        return [name for name in line.split(":", 1)[1].strip().split(", ") if name]

    def wait(self, timeout: float = DEADLINE) -> int:
        """The exit status, once the process has ended and its output is read."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the client did not exit within {timeout}s\n{self.transcript()}") from None
        for reader in self._readers:
            reader.join(timeout)
        return status

    def transcript(self) -> str:
        return "stdout:\n" + "\n".join(self.output) + "\nstderr:\n" + "\n".join(self.errors)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()


def run_client(*args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLIENT), *args], input="", capture_output=True,
                          text=True, timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("terminal-chat")
    srv = chat_server_process(tmp)
    yield srv
    srv.stop()


@pytest.fixture
def clients():
    """Starts clients for one test and stops what is left of them afterwards."""
    started: list[ChatProcess] = []

    def start(make, *args) -> ChatProcess:
        chat = make(*args)
        started.append(chat)
        return chat

    yield start
    for chat in started:
        chat.stop()


def test_a_message_reaches_the_other_user(chat_server, clients):
    alice = clients(ChatProcess.join, chat_server.url, "Alice")
    bob = clients(ChatProcess.join, chat_server.url, "Bob")
    alice.expect(r"\] \* Bob joined the chat$")
    alice.send("hello, Bob")
    bob.expect(r"^\[\d\d:\d\d:\d\d\] Alice: hello, Bob$")
    alice.expect(r"\] Alice: hello, Bob$")  # the sender sees it as the room does


def test_users_lists_everyone_online(chat_server, clients):
    carol = clients(ChatProcess.join, chat_server.url, "Carol")
    dave = clients(ChatProcess.join, chat_server.url, "Dave")
    carol.expect(r"\] \* Dave joined the chat$")
    assert {"Carol", "Dave"} <= set(dave.users())


def test_quit_leaves_the_room_and_exits_with_status_0(chat_server, clients):
    erin = clients(ChatProcess.join, chat_server.url, "Erin")
    frank = clients(ChatProcess.join, chat_server.url, "Frank")
    erin.expect(r"\] \* Frank joined the chat$")
    assert "Erin" in frank.users()

    erin.send("/quit")
    assert erin.wait() == 0
    frank.expect(r"^\[\d\d:\d\d:\d\d\] \* Erin left the chat$")
    # the OnlineUser push may trail the message's by a moment: ask again until it is there
    deadline = time.monotonic() + DEADLINE
    while "Erin" in frank.users():
        assert time.monotonic() < deadline, frank.transcript()
    assert "Frank" in frank.users()


def test_end_of_input_leaves_like_quit(chat_server, clients):
    gina = clients(ChatProcess.join, chat_server.url, "Gina")
    hal = clients(ChatProcess.join, chat_server.url, "Hal")
    gina.expect(r"\] \* Hal joined the chat$")
    gina.proc.stdin.close()
    assert gina.wait() == 0
    hal.expect(r"\] \* Gina left the chat$")


def test_recent_messages_are_shown_on_joining(chat_server, clients):
    ivan = clients(ChatProcess.join, chat_server.url, "Ivan")
    ivan.send("remember me")
    ivan.expect(r"\] Ivan: remember me$")
    judy = clients(ChatProcess, "--url", chat_server.url, "--name", "Judy")
    judy.expect(r"\] Ivan: remember me$")
    judy.expect(r"^-- logged in as Judy ")  # the history comes first


def test_the_name_is_asked_for_when_not_given(chat_server, clients):
    lou = clients(ChatProcess, "--url", chat_server.url)
    lou.send("Lou")
    lou.expect(r"^-- logged in as Lou \(user id \d+\)")


def test_help_lists_the_commands(chat_server, clients):
    kim = clients(ChatProcess.join, chat_server.url, "Kim")
    kim.send("/help")
    kim.expect(r"^-- commands:$")
    for command in ("/users", "/help", "/quit"):
        kim.expect(rf"^--\s+{command}\s")


def test_an_unknown_command_is_reported_and_not_sent(chat_server, clients):
    leo = clients(ChatProcess.join, chat_server.url, "Leo")
    leo.send("/dance")
    leo.expect(r"^-- unknown command /dance: type /help for the commands$")
    leo.send("after the command")
    line = leo.expect(r"\] Leo: ")
    assert line.endswith("Leo: after the command")  # "/dance" never reached the room


def test_a_line_starting_with_two_slashes_is_sent_with_one(chat_server, clients):
    max_ = clients(ChatProcess.join, chat_server.url, "Max")
    max_.send("//shrug")
    max_.expect(r"\] Max: /shrug$")


def test_a_closed_port_is_a_one_line_error_and_status_1():
    result = run_client("--url", f"ws://127.0.0.1:{free_port()}/hetu/dev", "--name", "Nora")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot connect to ws://127.0.0.1:")
    assert "is the server running" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_wrong_auth_key_is_a_one_line_error_and_status_1(chat_server):
    result = run_client("--url", chat_server.url, "--auth-key", "not-the-key", "--name", "Otto")
    assert result.returncode == 1
    assert "refused the handshake: check --auth-key" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_name_that_does_not_fit_is_refused():
    result = run_client("--url", "ws://127.0.0.1:1/hetu/dev", "--name", "x" * 33)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: the name has 33 characters; at most 32 fit"


def test_logging_in_elsewhere_stops_the_older_client(chat_server, clients):
    """The server closes the older connection; the older client must not log in again
    (it would close the newer one, and so on forever)."""
    older = clients(ChatProcess.join, chat_server.url, "Pia")
    newer = clients(ChatProcess.join, chat_server.url, "Pia")
    assert older.wait() == 1
    assert "error: Pia logged in elsewhere; this client stops" in older.errors
    newer.send("still here")
    newer.expect(r"\] Pia: still here$")


def test_the_session_survives_a_server_restart(tmp_path, clients):
    db = f"sqlite:///{tmp_path / 'chat.db'}"
    server = ServerProcess(tmp_path, db, app=CHAT_APP, namespace="Chat")
    restarted = None
    try:
        quinn = clients(ChatProcess.join, server.url, "Quinn")
        server.stop()
        restarted = ServerProcess(tmp_path, db, app=CHAT_APP, namespace="Chat", port=server.port)
        quinn.expect(r"^-- reconnected as Quinn$")
        quinn.send("back again")
        quinn.expect(r"\] Quinn: back again$")
    finally:
        if server.proc.poll() is None:
            server.stop()
        if restarted is not None:
            restarted.stop()
