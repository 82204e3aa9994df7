"""Tools of the hostile-input suite (test_hostile_input.py).

* :class:`LoopThread`: one event loop in a background thread, so hypothesis tests (which
  are synchronous) and long-lived bystander clients share it.
* :class:`RawClient`: a websocket that speaks the protocol by hand, to send what
  :class:`hetu.client.HeTuClient` never would (garbage, replays, foreign ciphertext).
* :class:`ServerWatch`: what "the server is unharmed" means for a live server process:
  its worker processes are the ones it started with, and its log has no error other than
  the failures of app systems that the protocol reports to the caller.
* :func:`rss_kib` and :class:`PeakSampler`: worker memory, read from ``/proc``.
* Hypothesis strategies of bad values and broken messages.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import websockets
from hypothesis import strategies as st

from hetu.client import default_pipeline
from tests.server.conftest import AUTH_KEY, ServerProcess

BIG = 2**63 - 1


class LoopThread:
    """An event loop running in a daemon thread; :meth:`run` a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hostile-loop", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


# -- raw connections -------------------------------------------------------------------------

@dataclass
class Outcome:
    """What came back: decoded frames (a ``str`` for a text frame, ``bytes`` before the
    handshake), and how the connection ended. ``dropped`` means the server closed the
    TCP connection without a close frame (the protocol's way of dropping a client)."""

    frames: list = field(default_factory=list)
    closed: bool = False
    close_code: int | None = None
    undecodable: list = field(default_factory=list)

    @property
    def dropped(self) -> bool:
        return self.closed and self.close_code is None


class RawClient:
    """One websocket, the pipeline state of a handshake made by hand."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.pipeline = default_pipeline(AUTH_KEY)
        self.ctxs: list | None = None
        self.outcome = Outcome()

    @classmethod
    async def open(cls, url: str) -> RawClient:
        ws = await websockets.connect(url, max_size=None, open_timeout=10, close_timeout=1,
                                      ping_interval=None)
        return cls(ws)

    @classmethod
    async def ready(cls, url: str) -> RawClient:
        """Opened and handshaken with the right auth key."""
        client = await cls.open(url)
        await client.handshake()
        return client

    async def handshake(self, auth_key: str = AUTH_KEY) -> None:
        self.pipeline = default_pipeline(auth_key)
        pending, hello = self.pipeline.client_hello()
        await self.ws.send(hello)
        self.ctxs = self.pipeline.client_handshake(pending, await asyncio.wait_for(self.ws.recv(), 10))

    def encode(self, message: Any) -> bytes:
        """``message`` through msgpack, zlib and crypto with this connection's state."""
        return self.pipeline.encode(self.ctxs, message)

    def encode_packed(self, packed: bytes) -> bytes:
        """msgpack bytes made by hand (what msgpack itself would refuse to pack, e.g.
        10,000 levels of nesting) through zlib and crypto."""
        data = packed
        for layer, ctx in list(zip(self.pipeline.layers, self.ctxs))[1:]:
            data = layer.encode(ctx, data)
        return data

    async def send(self, data: bytes | str) -> bool:
        """Send one frame; False when the connection is already gone."""
        try:
            await self.ws.send(data)
            return True
        except websockets.ConnectionClosed as exc:
            self._ended(exc)
            return False

    async def read(self, until=None, wait: float = 5.0) -> Outcome:
        """Collect frames until the connection ends, ``until(frames)`` holds, or nothing
        arrives for ``wait`` seconds."""
        out = self.outcome
        while not out.closed and not (until is not None and until(out.frames)):
            try:
                raw = await asyncio.wait_for(self.ws.recv(), wait)
            except TimeoutError:
                break
            except websockets.ConnectionClosed as exc:
                self._ended(exc)
                break
            if isinstance(raw, str) or self.ctxs is None:
                out.frames.append(raw)
                continue
            try:
                out.frames.append(self.pipeline.decode(self.ctxs, raw))
            except ValueError:
                out.undecodable.append(raw)
        return out

    def _ended(self, exc: websockets.ConnectionClosed) -> None:
        self.outcome.closed = True
        self.outcome.close_code = exc.rcvd.code if exc.rcvd is not None else None

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 2)
        except (TimeoutError, OSError):
            pass


async def raw_attempt(url: str, frame: bytes | str, wait: float = 5.0) -> Outcome:
    """A connection that sends ``frame`` instead of a hello."""
    try:
        client = await RawClient.open(url)
    except (OSError, websockets.InvalidHandshake) as exc:
        raise AssertionError(f"the server refused a websocket: {exc}") from None
    try:
        await client.send(frame)
        return await client.read(wait=wait)
    finally:
        await client.close()


# -- the server's health ----------------------------------------------------------------------

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) (\S+): ", re.M)
LEASE = re.compile(r"worker id (\d+) leased by [^:\s]+:(\d+):")


def log_problems(text: str) -> list[str]:
    """Records of a server log that show a defect: any ERROR/CRITICAL record or
    traceback, except ``[Failed]`` records (an app system raised: the protocol answers
    the caller with ``err`` or drops it, and the log keeps the traceback for the app's
    developer). Text outside any record (a crash printed by Python itself) counts too."""
    starts = list(RECORD.finditer(text))
    problems = []
    head = text[: starts[0].start()] if starts else text
    if "Traceback" in head or "Error" in head:
        problems.append(head[:2000])
    for m, nxt in zip(starts, starts[1:] + [None]):
        record = text[m.start(): nxt.start() if nxt is not None else len(text)]
        message = record[m.end() - m.start():]
        if message.startswith("[Failed]"):
            continue
        if m.group(1) in ("ERROR", "CRITICAL") or "Traceback" in record:
            problems.append(record[:2000])
    return problems


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def rss_kib(pid: int) -> int:
    """Resident memory of a process (``VmRSS`` in ``/proc/<pid>/status``), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class ServerWatch:
    """A server process under attack: its workers (``{worker id: pid}`` as leased at
    startup) and its log since the last :meth:`problems` call."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.workers = {int(wid): int(pid) for wid, pid in LEASE.findall(server.logs())}
        self._offset = self.log_size()

    def log_size(self) -> int:
        return self.server.log_path.stat().st_size

    def _new_log(self) -> str:
        with open(self.server.log_path, "rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        return data.decode("utf-8", "replace")

    def problems(self) -> list[str]:
        """What went wrong since the last call: a dead or replaced worker, or a log
        record that shows a defect."""
        found = []
        if self.server.proc.poll() is not None:
            found.append(f"the server process exited with {self.server.proc.returncode}")
        for wid, pid in self.workers.items():
            if not pid_alive(pid):
                found.append(f"worker {wid} (pid {pid}) died")
        text = self._new_log()
        found += [f"a worker was started: {m.group(0)}" for m in LEASE.finditer(text)]
        return found + log_problems(text)

    def rss(self) -> dict[int, int]:
        """``{pid: KiB}`` of the workers."""
        return {pid: rss_kib(pid) for pid in self.workers.values()}


class PeakSampler:
    """Samples the RSS of some processes every few milliseconds in a thread; ``peak``
    is the highest sum seen (KiB)."""

    def __init__(self, pids, every: float = 0.005) -> None:
        self.pids = list(pids)
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, sum(rss_kib(pid) for pid in self.pids))
            except OSError:
                pass
            time.sleep(self.every)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- what the protocol allows as an answer ------------------------------------------------------

def reply_problem(message: Any, replies: list, debug: bool) -> str | None:
    """Why ``replies`` (the frames before the next request's reply, ``updt`` pushes left
    out) are not a protocol answer to ``message``; None when they are."""
    tag = message[0] if isinstance(message, list) and message else None
    if tag == "unsub":
        expected = 0
    elif tag == "motd":
        if len(replies) == 1 and isinstance(replies[0], str):
            return None
        return f"motd answered with {replies!r:.200}"
    else:
        expected = 1
    if tag == "sub" and debug and len(replies) == 2 and replies[1][:2] == ["sub", "fail"]:
        replies = replies[:1]  # a debug server adds BAD_SUBS after the reply that broke a cap
    if len(replies) != expected:
        return f"{len(replies)} frames answered {message!r:.200}: {replies!r:.300}"
    if expected == 0:
        return None
    reply = replies[0]
    if not isinstance(reply, list) or not reply:
        return f"the reply {reply!r:.200} is not a message"
    if tag == "rpc":
        if reply[0] == "rsp" and len(reply) == 2:
            return None
        if reply[0] == "rej" and len(reply) == 3 and isinstance(reply[2], str):
            return None
        if reply[0] == "err" and debug and len(reply) == 3 and isinstance(reply[2], str):
            return None
        return f"rpc answered with {reply!r:.200}"
    if tag == "sub" and reply[0] == "sub" and len(reply) == 3:
        sub_id, data = reply[1], reply[2]
        if sub_id == "fail" and debug:
            return None
        if sub_id is None or isinstance(sub_id, str):
            if data is None or isinstance(data, (dict, list)):
                return None
    return f"{tag} answered with {reply!r:.200}"


def secret_rows(frames: list) -> list[dict]:
    """The rows of the OWNER component ``Secret`` (id, owner, text) in ``sub`` replies
    and ``updt`` pushes."""
    rows = []
    for frame in frames:
        if not isinstance(frame, list) or len(frame) != 3 or frame[0] not in ("sub", "updt"):
            continue
        data = frame[2]
        if frame[0] == "updt" and isinstance(data, dict):
            candidates = list(data.values())  # {row id: row or None}
        elif isinstance(data, dict):
            candidates = [data]  # the row of a get
        elif isinstance(data, list):
            candidates = data  # the rows of a range
        else:
            candidates = []
        rows += [r for r in candidates if isinstance(r, dict) and set(r) == {"id", "owner", "text"}]
    return rows


# -- hypothesis strategies --------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, BIG, -BIG - 1, 2**64 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=24), st.binary(max_size=24),
    st.sampled_from(["", "(", "[", "(5", "[-1", "(inf", "1e400", "9" * 50, "\x00", "\ud7ff"]),
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6) | st.integers(), kids, max_size=4),
    max_leaves=12,
)

COMPONENTS = ["Account", "NameClaim", "Counter", "Sequence", "Profile", "Ledger", "Secret", "Disconnect",
              "Connection", "WorkerLease", "Nope", "secret", "Secret:x", ""]
INDEXES = ["id", "number", "name", "key", "client", "owner", "entry", "connection", "balance", "text",
           "Nope", "", "_version"]
ENDPOINTS = ["login", "logout", "whoami", "plant_secret", "rewrite_secret", "open_account", "transfer",
             "claim_name", "increment", "append", "touch_profile", "write_ledger", "disconnects",
             "on_disconnect", "nope", "", "__init__"]
TAGS = ["rpc", "sub", "unsub", "motd", "updt", "rsp", "rej", "err", "RPC", "", "rpc\x00"]

# One well-formed message of each kind: every field of it gets replaced by bad values.
TEMPLATES = [
    ["rpc", "whoami"],
    ["rpc", "plant_secret", 1, "text"],
    ["rpc", "increment", 5],
    ["rpc", "login", 424242],
    ["sub", "Account", "get", "id", 1],
    ["sub", "Secret", "get", "owner", 1],
    ["sub", "NameClaim", "get", "name", "x"],
    ["sub", "Account", "range", "number", 0, 100, 10, False, True],
    ["sub", "Secret", "range", "owner", 0, BIG, -1, True, False],
    ["sub", "NameClaim", "range", "name", "a", "z"],
    ["sub", "Account", "logic_query"],
    ["unsub", "Account.number[0:100:1][:10]"],
    ["motd"],
]

field_values = st.one_of(
    values,
    st.sampled_from(COMPONENTS), st.sampled_from(INDEXES), st.sampled_from(ENDPOINTS),
    st.sampled_from(TAGS), st.sampled_from(["get", "range", "logic_query", "GET", "x"]),
)


@st.composite
def broken_messages(draw) -> list:
    """A well-formed message with one field replaced, cut short or lengthened."""
    message = list(draw(st.sampled_from(TEMPLATES)))
    how = draw(st.sampled_from(["replace", "replace", "replace", "cut", "extend"]))
    if how == "replace":
        message[draw(st.integers(0, len(message) - 1))] = draw(field_values)
    elif how == "cut":
        message = message[: draw(st.integers(0, len(message) - 1))]
    else:
        message += draw(st.lists(values, min_size=1, max_size=4))
    return message


messages = st.one_of(
    broken_messages(),
    st.lists(values, max_size=6),
    st.tuples(st.sampled_from(TAGS), values).map(list),
    st.dictionaries(st.text(max_size=4), values, max_size=3),
)


def packable(message: Any) -> bytes | None:
    """``message`` as msgpack, or None when msgpack cannot carry it (e.g. 2**64)."""
    try:
        return msgpack.packb(message, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return None
