"""Hostile input against live servers (issue #9, point 3).

Two release-mode server processes of two workers each (one Redis), and for the debug
answers one debug-mode server, get random bytes, broken hellos, wrong auth keys,
messages with a wrong type in every field, unknown tags, huge and deeply nested
arguments, compression bombs, bogus subscriptions, replayed, reordered, foreign,
truncated and tampered ciphertext, and a sustained attack of thousands of connections.
Each input must be answered as docs/protocol.md says or cost only the offending
connection; afterwards no worker died or was replaced, the logs show no error but the
failures of app systems, bystanders on every worker are still served (a call, and a
push to their live subscription), no connection ever received another user's OWNER row,
and the workers' memory did not grow with the number of attacks.

``pytest -s`` prints the figures quoted in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hetu.client import ConnectionClosed, HeTuClient
from hetu.server.pipeline.crypto import SIGNED_HELLO_LEN, keypair, signed_hello
from hetu.server.pipeline.jsonb import JSONBinaryLayer
from hetu.server.pipeline.zlib import ZlibContext
from tests.conftest import redis_server
from tests.reliability.conftest import APP, NAMESPACE, Cluster, start_cluster
from tests.reliability.hostile import (
    BIG,
    COMPONENTS,
    INDEXES,
    LoopThread,
    PeakSampler,
    RawClient,
    ServerWatch,
    messages,
    packable,
    raw_attempt,
    reply_problem,
    secret_rows,
    values,
)
from tests.server.conftest import AUTH_KEY, ServerProcess
from tests.waiting import wait_until

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
MAX_FRAME = 2**20  # WEBSOCKET_MAX_SIZE of the servers (the default)
BYSTANDER_KEY = 9_000_001
DEBUG_DB = 5  # the debug server's Redis database (the release cluster flushes db 0)


def worker_of(connection_id: int) -> int:
    """The worker id inside a snowflake id."""
    return (connection_id >> 12) & 1023


class Arena:
    """The servers under attack, the loop the tests run on, and one bystander client per
    worker, each with a live subscription to a counter."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.loop = LoopThread()
        self.watches = [ServerWatch(srv) for srv in cluster.servers]
        self.bystanders: dict[int, HeTuClient] = {}
        self.counter = 0
        self.figures: dict[str, list[int]] = {}  # kind -> [inputs, connections dropped]
        self.owner_rows = [0, 0]  # OWNER rows shown to the attacker: its own, anyone else's
        self.run(self._place_bystanders())

    def tally(self, kind: str, outcome) -> None:
        tried, dropped = self.figures.setdefault(kind, [0, 0])
        self.figures[kind] = [tried + 1, dropped + (outcome.dropped or outcome.close_code is not None)]

    def run(self, coro, timeout: float = 60):
        return self.loop.run(coro, timeout)

    def url(self, i: int = 0) -> str:
        return self.cluster.servers[i % len(self.cluster.servers)].url

    async def _place_bystanders(self) -> None:
        """Connect until every worker of both servers serves one bystander."""
        wanted = sum(len(w.workers) for w in self.watches)
        for attempt in range(200):
            client = await self.cluster.connect(attempt)
            worker = worker_of((await client.call("whoami"))[0])
            if worker in self.bystanders:
                await client.close()
                continue
            self.bystanders[worker] = client
            await client.subscribe_range("Counter", "key", BYSTANDER_KEY, BYSTANDER_KEY, 1)
            if len(self.bystanders) == wanted:
                return
        raise RuntimeError(f"bystanders reached workers {sorted(self.bystanders)} only")

    async def _bystanders_served(self) -> None:
        clients = list(self.bystanders.values())
        await clients[self.counter % len(clients)].call("increment", BYSTANDER_KEY)
        self.counter += 1
        for worker, client in self.bystanders.items():
            deadline = time.monotonic() + 5
            while True:
                push = await client.next_update(max(deadline - time.monotonic(), 0.01))
                assert push is not None, f"the bystander on worker {worker} got no push"
                if any(row and row["value"] >= self.counter for row in push[1].values()):
                    break
            assert (await client.call("whoami"))[1] == 0

    def problems(self) -> list[str]:
        return [f"server {i}: {p}" for i, watch in enumerate(self.watches) for p in watch.problems()]

    def assert_unharmed(self) -> None:
        """No worker died or was replaced, no log record shows a defect, and every
        bystander is served: its call answered, its live subscription pushed."""
        assert self.problems() == []
        self.run(self._bystanders_served())

    def close(self) -> None:
        if self.figures:
            print("\nhostile input (inputs tried, connections dropped):")
            for kind, (tried, dropped) in self.figures.items():
                print(f"  {kind}: {tried:,}, {dropped:,}")
            if "owner-row queries" in self.figures:
                print(f"OWNER rows shown to user A: {self.owner_rows[0]:,} of its own, "
                      f"{self.owner_rows[1]} of others")

        async def close_all():
            for client in self.bystanders.values():
                await client.close()

        self.run(close_all())
        self.loop.stop()


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("hostile"), debug=False)
    found = None
    try:
        found = Arena(cluster)
        yield found
    finally:
        if found is not None:
            found.close()
        for srv in cluster.servers:
            srv.stop()


@pytest.fixture(autouse=True)
def own_log_only(request):
    """Each test judges the log records of its own attacks (a failed test leaves its
    records behind; they must not fail the next one too)."""
    for name in ("arena", "debug_arena"):
        if name in request.fixturenames:
            request.getfixturevalue(name).problems()


# -- before the handshake ------------------------------------------------------------------------

def expected_hello_answer(frame: bytes | str) -> list:
    """What the server answers a hello: ``90`` when it is an array of two entries (the
    crypto layer refuses whatever the second is), nothing when it is not binary, not
    msgpack, not an array or of another length."""
    if isinstance(frame, str) or not frame:
        return []
    try:
        hello = JSONBinaryLayer().decode(None, frame)
    except ValueError:
        return []
    return [b"\x90"] if isinstance(hello, list) and len(hello) == 2 else []


def valid_hello() -> bytes:
    _, public = keypair()
    return msgpack.packb([b"", signed_hello(public, AUTH_KEY)], use_bin_type=True)


hello_garbage = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=50),
    values.map(packable).filter(lambda b: b is not None),
    st.tuples(values, values).map(lambda pair: packable(list(pair))).filter(lambda b: b is not None),
    st.integers(0, 96).map(lambda cut: valid_hello()[:cut]),  # the 97-byte hello cut short
)


@FUZZ
@given(frame=hello_garbage, server=st.integers(0, 1))
def test_garbage_instead_of_a_hello_is_closed_without_a_handshake(arena, frame, server):
    outcome = arena.run(raw_attempt(arena.url(server), frame))
    arena.tally("garbage hello", outcome)
    assert outcome.dropped
    assert outcome.frames == expected_hello_answer(frame)
    assert arena.problems() == []


SAMPLE_HELLOS = [b"", b"\x00" * 64, "text", b"\x92\x01\x02", b"\xc1", valid_hello()[:50]]


def test_after_garbage_hellos_the_servers_are_unharmed(arena):
    """Self-contained: a fixed sample of the garbage above on both servers (the fuzz test
    sends far more when the module runs whole), then every bystander is served."""
    for server in (0, 1):
        for frame in SAMPLE_HELLOS:
            assert arena.run(raw_attempt(arena.url(server), frame)).dropped
    arena.assert_unharmed()


@pytest.mark.parametrize("size", [MAX_FRAME + 1, 3 * MAX_FRAME])
def test_an_oversize_hello_is_closed_with_code_1009(arena, size):
    outcome = arena.run(raw_attempt(arena.url(), os.urandom(size)))
    arena.tally("oversize hello", outcome)
    assert outcome.closed and outcome.close_code == 1009
    assert outcome.frames == []
    arena.assert_unharmed()


def _hello_with(crypto_hello: bytes) -> bytes:
    return msgpack.packb([b"", crypto_hello], use_bin_type=True)


def _low_order_hello() -> bytes:
    """Signed with the right key, but the public key is the all-zero point: the key
    exchange itself fails."""
    return _hello_with(signed_hello(bytes(32), AUTH_KEY))


REFUSED_HELLOS = {
    "wrong auth key": lambda: _hello_with(signed_hello(keypair()[1], "not the key")),
    "unsigned key": lambda: _hello_with(keypair()[1]),
    "forged signature": lambda: _hello_with(signed_hello(keypair()[1], AUTH_KEY)[:60] + bytes(32)),
    "no magic": lambda: _hello_with(b"X" + signed_hello(keypair()[1], AUTH_KEY)[1:]),
    "low-order key": _low_order_hello,
    "empty": lambda: _hello_with(b""),
    "str instead of bytes": lambda: msgpack.packb(["", "x" * SIGNED_HELLO_LEN]),
    "signed hello too long": lambda: _hello_with(signed_hello(keypair()[1], AUTH_KEY) + b"\x00"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED_HELLOS))
def test_a_hello_the_crypto_layer_refuses_gets_the_empty_reply_then_close(arena, kind):
    outcome = arena.run(raw_attempt(arena.url(), REFUSED_HELLOS[kind]()))
    arena.tally("refused hello", outcome)
    assert outcome.frames == [b"\x90"]
    assert outcome.dropped
    arena.assert_unharmed()


# -- after the handshake: broken messages ----------------------------------------------------------

def non_push(frames: list) -> list:
    return [f for f in frames if not (isinstance(f, list) and f[:1] == ["updt"])]


async def answer_to(url: str, message, packed: bytes | None = None, debug: bool = False) -> tuple:
    """Send ``message`` (or hand-made msgpack ``packed``) on a fresh connection, then a
    ``motd`` probe; returns (outcome, problem). The frames before the probe's text
    frame answer ``message``; if the connection is dropped instead, whatever came before
    the drop must not be more than one answer. ``problem`` is None when the protocol
    was kept."""
    client = await RawClient.ready(url)
    try:
        data = client.encode_packed(packed) if packed is not None else client.encode(message)
        sent = await client.send(data)
        texts = 1 + (isinstance(message, list) and message[:1] == ["motd"])
        if sent:
            await client.send(client.encode(["motd"]))
        outcome = await client.read(until=lambda frames: sum(isinstance(f, str) for f in frames) >= texts)
    finally:
        await client.close()
    if outcome.undecodable:
        return outcome, f"undecodable frames from the server: {outcome.undecodable!r:.200}"
    if outcome.closed:
        if not outcome.dropped:
            return outcome, f"closed with code {outcome.close_code} instead of dropped"
        if len(non_push(outcome.frames)) > 1:
            return outcome, f"dropped after {outcome.frames!r:.300}"
        return outcome, None
    if sum(isinstance(f, str) for f in outcome.frames) < texts:
        return outcome, f"neither answered nor dropped within 5 s: {outcome.frames!r:.300}"
    replies = non_push(outcome.frames)[:-1]
    return outcome, reply_problem(message, replies, debug)


@FUZZ
@given(message=messages.filter(lambda m: packable(m) is not None), server=st.integers(0, 1))
def test_broken_messages_are_answered_per_protocol_or_dropped(arena, message, server):
    """Wrong msgpack types in every field of rpc/sub/unsub/motd, missing and extra
    fields, unknown tags, maps and scalars where an array belongs."""
    outcome, problem = arena.run(answer_to(arena.url(server), message))
    arena.tally("broken message", outcome)
    assert problem is None
    assert secret_rows(outcome.frames) == []  # anonymous: no OWNER row, ever
    assert arena.problems() == []


bounds = st.one_of(values, st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=40))
subscriptions = st.one_of(
    st.tuples(st.just("sub"), st.sampled_from(COMPONENTS), st.just("get"), st.sampled_from(INDEXES),
              bounds).map(list),
    st.tuples(st.just("sub"), st.sampled_from(COMPONENTS), st.just("range"), st.sampled_from(INDEXES),
              st.lists(bounds, min_size=1, max_size=2),
              st.one_of(st.integers(-(2**63), 2**64 - 1), values), st.one_of(st.booleans(), values),
              st.booleans()).map(lambda t: [*t[:4], *t[4], t[5], t[6], t[7]]),
)


@FUZZ
@given(message=subscriptions.filter(lambda m: packable(m) is not None), server=st.integers(0, 1))
def test_bogus_subscriptions_are_answered_per_protocol_or_dropped(arena, message, server):
    """Bogus component and index names (also ADMIN and internal tables), bounds of any
    type, huge and negative limits, non-bool flags."""
    outcome, problem = arena.run(answer_to(arena.url(server), message))
    arena.tally("bogus subscription", outcome)
    assert problem is None
    assert secret_rows(outcome.frames) == []
    assert arena.problems() == []


SAMPLE_MESSAGES = [["rpc"], ["rpc", 1], ["rpc", "no_such_system", None], ["sub", "Nope", "get", "id", 1],
                   ["sub", "Item", "range", "id", "a", "b", -1, 2, 3], ["unsub"], ["motd", 1], ["zzz"],
                   {"rpc": 1}]


def test_after_broken_messages_the_servers_are_unharmed(arena):
    """Self-contained: a fixed sample of broken messages on both servers (the fuzz tests
    above send far more when the module runs whole), each kept to the protocol, then
    every bystander is served."""
    for server in (0, 1):
        for message in SAMPLE_MESSAGES:
            _, problem = arena.run(answer_to(arena.url(server), message))
            assert problem is None, (message, problem)
    arena.assert_unharmed()


@pytest.fixture(scope="module")
def debug_arena(tmp_path_factory):
    """A debug-mode server of two workers (a failed call is answered with ``err`` and
    the connection kept), on a Redis database of its own."""
    url = redis_server("redis").url(DEBUG_DB)
    redis.Redis.from_url(url).flushdb()
    srv = ServerProcess(tmp_path_factory.mktemp("hostile_debug"), url, debug=True, workers=2,
                        app=APP, namespace=NAMESPACE)
    found = None
    try:
        found = Arena(Cluster([srv]))
        yield found
    finally:
        if found is not None:
            found.close()
        srv.stop()


@FUZZ
@given(message=st.one_of(messages, subscriptions).filter(lambda m: packable(m) is not None),
       server=st.integers(0, 1))
def test_a_debug_server_answers_broken_messages_per_protocol_or_drops_them(debug_arena, message, server):
    outcome, problem = debug_arena.run(answer_to(debug_arena.url(server), message, debug=True))
    debug_arena.tally("broken message, debug server", outcome)
    assert problem is None
    assert secret_rows(outcome.frames) == []
    assert debug_arena.problems() == []


def test_after_broken_messages_the_debug_servers_are_unharmed(debug_arena):
    """Self-contained, as for the release servers."""
    for server in (0, 1):
        for message in SAMPLE_MESSAGES:
            _, problem = debug_arena.run(answer_to(debug_arena.url(server), message, debug=True))
            assert problem is None, (message, problem)
    debug_arena.assert_unharmed()


# -- after the handshake: huge and deep input --------------------------------------------------------

def nested_packed(depth: int, inner: bytes = b"\x01") -> bytes:
    """msgpack of ``depth`` arrays, each holding the next (msgpack's own packer stops at
    512 levels)."""
    return b"\x91" * depth + inner


def packed_message(*head, tail: bytes = b"") -> bytes:
    """An array of the msgpack values ``head`` followed by one value packed by hand."""
    count = len(head) + (1 if tail else 0)
    return bytes([0x90 + count]) + b"".join(msgpack.packb(v) for v in head) + tail


def random_text(n: int) -> str:
    """Text zlib barely compresses."""
    alphabet = bytes(range(33, 127))
    return bytes(alphabet[b % len(alphabet)] for b in os.urandom(n)).decode()


# name -> (message as the server decodes it, hand-packed bytes or None, answered?)
HUGE = {
    # the decoder's limit: the message array is level 1, the innermost array level 64
    "motd with 64 levels": (["motd", "nested"], packed_message("motd", tail=nested_packed(63)), True),
    "motd with 65 levels": (["motd", "nested"], packed_message("motd", tail=nested_packed(64)), False),
    "rpc argument of 1,000 levels": (["rpc", "plant_secret"],
                                     packed_message("rpc", "plant_secret", tail=nested_packed(998)), False),
    "rpc argument of 10,000 levels": (["rpc", "plant_secret"],
                                      packed_message("rpc", "plant_secret", tail=nested_packed(9_998)), False),
    "100,000 arguments": (["rpc", "plant_secret", *[0] * 100_000], None, False),
    "a 900 kB endpoint name": (["rpc", "x" * 900_000], None, False),
    "a failing call with a 900 kB argument": (["rpc", "disconnects", "x" * 900_000], None, False),
    "a 1,000,000-character argument": (["rpc", "plant_secret", 1, random_text(1_000_000)], None, True),
    "a message inflating to 1.5 MiB": (["rpc", "plant_secret", 1, "y" * 1_500_000], None, False),
    "a map of 100,000 keys": (["rpc", "plant_secret", {i: i for i in range(100_000)}, "x"], None, False),
}


@pytest.mark.parametrize("name", list(HUGE))
def test_huge_and_deeply_nested_input_is_answered_or_dropped_with_a_short_log(arena, name):
    """Also: nothing of a huge input is copied into the log (a 900 kB name once made
    a 900 kB log line; a 1,000-level argument made logging it raise)."""
    message, packed, answered = HUGE[name]
    before = sum(w.log_size() for w in arena.watches)
    outcome, problem = arena.run(answer_to(arena.url(), message, packed))
    arena.tally("huge or deep", outcome)
    assert problem is None
    assert outcome.closed != answered
    logged = sum(w.log_size() for w in arena.watches) - before
    assert logged < 20_000, f"{logged} bytes logged for one message"
    assert arena.problems() == []


def test_a_frame_above_websocket_max_size_is_refused_with_code_1009(arena):
    async def attack():
        client = await RawClient.ready(arena.url())
        await client.send(os.urandom(MAX_FRAME + 1))
        outcome = await client.read()
        await client.close()
        return outcome

    outcome = arena.run(attack())
    arena.tally("huge or deep", outcome)
    assert outcome.closed and outcome.close_code == 1009
    arena.assert_unharmed()


def test_a_compression_bomb_is_dropped_before_it_costs_memory(arena):
    """66 kB of deflate inflating to 15 million empty msgpack arrays: a worker used to
    build them all (1.3 GB, 7 s of a blocked event loop, a 60 MB log line); now the
    inflated size is capped (1 MiB by default) and the connection dropped at once."""
    count = 15_000_000
    bomb = packed_message("rpc", "login", tail=b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count)
    pids = [pid for watch in arena.watches for pid in watch.workers.values()]
    before = sum(arena.watches[0].rss().values()) + sum(arena.watches[1].rss().values())

    async def attack():
        client = await RawClient.ready(arena.url())
        frame = client.encode_packed(bomb)
        started = time.monotonic()
        await client.send(frame)
        outcome = await client.read()
        await client.close()
        return outcome, len(frame), time.monotonic() - started

    with PeakSampler(pids) as sampler:
        outcome, size, took = arena.run(attack())
    arena.tally("huge or deep", outcome)
    print(f"\ncompression bomb: a {size:,}-byte frame dropped in {took:.2f} s; "
          f"worker RSS {before // 1024} MiB, peak {sampler.peak // 1024} MiB")
    assert outcome.dropped
    assert took < 3
    assert sampler.peak - before < 64 * 1024
    arena.assert_unharmed()


# -- after the handshake: subscription parsing ------------------------------------------------------

NONE = ["sub", None, None]
SUBSCRIPTION_CASES = {
    # a 64-bit limit is answered (Redis used to refuse it: a script turned it into a float)
    "limit 2**63-1": (["sub", "Account", "range", "number", 0, 10, BIG], "answered"),
    "limit -2**63": (["sub", "Account", "range", "number", 0, 10, -BIG - 1], "answered"),
    "limit 2**64-1": (["sub", "Account", "range", "number", 0, 10, 2**64 - 1], "dropped"),
    "get id infinity": (["sub", "Account", "get", "id", float("inf")], "dropped"),
    "get id NaN": (["sub", "Account", "get", "id", float("nan")], "dropped"),
    "get id 2**64-1": (["sub", "Account", "get", "id", 2**64 - 1], NONE),
    "get id -2**63": (["sub", "Account", "get", "id", -BIG - 1], NONE),
    # the column holds 2**63-1 (a row has it): a value beyond must not match it
    "get number 2**64-1": (["sub", "Account", "get", "number", 2**64 - 1], NONE),
    "get number 1e300": (["sub", "Account", "get", "number", 1e300], NONE),
    "get number inf": (["sub", "Account", "get", "number", float("inf")], NONE),
    "range number -1e300..1e300": (["sub", "Account", "range", "number", -1e300, 1e300, 5], "answered"),
    "range name bound of 1,024": (["sub", "NameClaim", "range", "name", "a" * 1024, "z"], "answered"),
    "range name bound of 1,025": (["sub", "NameClaim", "range", "name", "a" * 1025, "z"], "dropped"),
    "get name of 2,000": (["sub", "NameClaim", "get", "name", "a" * 2000], "dropped"),
    "range key bound of 2,000 digits": (["sub", "Counter", "range", "key", "9" * 2000], "dropped"),
    "range reversed": (["sub", "Account", "range", "number", 10, 0], "dropped"),
    "range of a text field": (["sub", "Secret", "range", "text", "a", "b"], "dropped"),
    "unknown component": (["sub", "Nope", "get", "id", 1], "dropped"),
    "internal component": (["sub", "Connection", "range", "id", 0, BIG], ["sub", None, []]),
}


@pytest.mark.parametrize("name", list(SUBSCRIPTION_CASES))
def test_subscription_bounds_and_limits(arena, name):
    message, expected = SUBSCRIPTION_CASES[name]

    async def attack():
        setup = await arena.cluster.connect(1)
        await setup.call("open_account", BIG, 7)  # the largest number the column holds
        await setup.close()
        return await answer_to(arena.url(), message)

    outcome, problem = arena.run(attack())
    arena.tally("subscription bounds", outcome)
    assert problem is None
    if expected == "dropped":
        assert outcome.dropped
    elif expected == "answered":
        assert not outcome.closed and non_push(outcome.frames)[0][1] is not None
    else:
        assert not outcome.closed and non_push(outcome.frames)[0] == expected
    assert arena.problems() == []


def test_logging_in_as_user_0_does_not_lift_the_subscription_cap(arena):
    """``elevate(ctx, 0)`` used to leave the caller anonymous but multiply its caps by
    50 on every call: an anonymous client could hold any number of subscriptions."""

    async def attack():
        client = await HeTuClient.connect(arena.url(), auth_key=AUTH_KEY)
        try:
            assert await client.call("login", 0) == 0
            assert await client.call("login", 0) == 0
            assert (await client.call("whoami"))[1] == 0
            made = 0
            for i in range(60):  # MAX_INDEX_SUBSCRIPTION is 50
                await client.subscribe_range("Account", "number", i, i, 1)
                made += 1
        except ConnectionClosed:
            return made, True
        finally:
            await client.close()
        return made, False

    made, closed = arena.run(attack())
    # the reply to the 51st may come before the connection is dropped (docs/protocol.md)
    assert closed and made in (50, 51)
    assert arena.problems() == []


# -- crypto: replayed, reordered, foreign, truncated and tampered frames ------------------------------

async def planted(checker: HeTuClient, owner: int, texts) -> int:
    """How many of ``owner``'s Secret rows carry one of ``texts`` (read by the owner)."""
    _, rows = await checker.subscribe_range("Secret", "owner", owner, owner, -1)
    return sum(row["text"] in texts for row in rows)


async def owner_client(arena: Arena, owner: int) -> HeTuClient:
    client = await arena.cluster.connect(1)
    assert await client.call("login", owner) == owner
    return client


def test_a_replayed_frame_is_executed_once_and_drops_the_connection(arena):
    owner, text = 810_001, "replayed"

    async def attack():
        checker = await owner_client(arena, owner)
        client = await RawClient.ready(arena.url(0))
        frame = client.encode(["rpc", "plant_secret", owner, text])
        await client.send(frame)
        await client.send(frame)  # the same ciphertext again
        outcome = await client.read()
        await client.close()
        # and on another connection, where it was never valid
        other = await RawClient.ready(arena.url(0))
        await other.send(frame)
        elsewhere = await other.read()
        await other.close()
        count = await planted(checker, owner, {text})
        await checker.close()
        return outcome, elsewhere, count

    outcome, elsewhere, count = arena.run(attack())
    arena.tally("crypto", outcome)
    arena.tally("crypto", elsewhere)
    assert outcome.dropped and [f[0] for f in non_push(outcome.frames)] == ["rsp"]  # the first, answered
    assert elsewhere.dropped and elsewhere.frames == []
    assert count == 1
    arena.assert_unharmed()


def test_reordered_frames_execute_nothing_and_drop_the_connection(arena):
    owner = 810_002

    async def attack():
        checker = await owner_client(arena, owner)
        client = await RawClient.ready(arena.url(0))
        first = client.encode(["rpc", "plant_secret", owner, "first"])
        second = client.encode(["rpc", "plant_secret", owner, "second"])
        await client.send(second)
        await client.send(first)
        outcome = await client.read()
        await client.close()
        count = await planted(checker, owner, {"first", "second"})
        await checker.close()
        return outcome, count

    outcome, count = arena.run(attack())
    arena.tally("crypto", outcome)
    assert outcome.dropped and outcome.frames == []
    assert count == 0
    arena.assert_unharmed()


def test_a_frame_encrypted_for_another_connection_drops_only_the_receiver(arena):
    """The frame is valid on its own connection (it runs there once), never elsewhere."""
    owner, text = 810_003, "foreign"

    async def attack():
        checker = await owner_client(arena, owner)
        victim, thief = await RawClient.ready(arena.url(0)), await RawClient.ready(arena.url(1))
        message = ["rpc", "plant_secret", owner, text]
        zctx, cctx = victim.ctxs[1], victim.ctxs[2]
        copies = [None, ZlibContext(zctx.compressor.copy(), zctx.decompressor.copy(), zctx.max_inflated),
                  dataclasses.replace(cctx)]
        frame = victim.pipeline.encode(copies, message)  # the victim's next frame
        await thief.send(frame)
        stolen = await thief.read()
        await thief.close()
        after_theft = await planted(checker, owner, {text})
        victim.encode(message)  # the victim's own state moves past that frame
        await victim.send(frame)
        await victim.send(victim.encode(["rpc", "whoami"]))
        own = await victim.read(until=lambda frames: len(non_push(frames)) >= 2)
        await victim.close()
        count = await planted(checker, owner, {text})
        await checker.close()
        return stolen, after_theft, own, count

    stolen, after_theft, own, count = arena.run(attack())
    arena.tally("crypto", stolen)
    assert stolen.dropped and stolen.frames == []
    assert after_theft == 0
    assert not own.closed and [f[0] for f in non_push(own.frames)] == ["rsp", "rsp"]
    assert count == 1
    arena.assert_unharmed()


TAMPERED_OWNER = 810_004


@settings(FUZZ, max_examples=100)
@given(how=st.sampled_from(["cut", "flip", "append"]), where=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_truncated_or_tampered_ciphertext_drops_the_connection_unexecuted(arena, how, where, bit):
    async def attack():
        client = await RawClient.ready(arena.url(where % 2))
        frame = bytearray(client.encode(["rpc", "plant_secret", TAMPERED_OWNER, "tampered"]))
        if how == "cut":
            frame = frame[: where % len(frame)]
        elif how == "flip":
            frame[where % len(frame)] ^= 1 << bit
        else:
            frame += bytes([where % 256])
        await client.send(bytes(frame))
        outcome = await client.read()
        await client.close()
        return outcome

    outcome = arena.run(attack())
    arena.tally("crypto", outcome)
    assert outcome.dropped and outcome.frames == []
    assert arena.problems() == []


def test_no_tampered_frame_was_executed(arena):
    async def count():
        checker = await owner_client(arena, TAMPERED_OWNER)
        found = await planted(checker, TAMPERED_OWNER, {"tampered"})
        await checker.close()
        return found

    assert arena.run(count()) == 0
    arena.assert_unharmed()


# -- other users' OWNER rows ------------------------------------------------------------------------

USER_A, USER_B = 820_001, 820_002
owner_bounds = st.one_of(
    st.sampled_from([USER_A, USER_B, 0, -1, BIG, -BIG - 1, float("inf"), float("-inf"), 1e300, -1e300]),
    st.sampled_from([f"({USER_A}", f"[{USER_B}", "(-inf", "[inf", "(0", "[1e30"]),
    st.integers(USER_A - 2, USER_B + 2), st.integers(-(2**63), BIG), st.floats(allow_nan=False),
)
owner_queries = st.lists(
    st.one_of(
        st.tuples(st.just("range"), st.sampled_from(["owner", "id"]), owner_bounds, owner_bounds,
                  st.sampled_from([-1, 0, 1, 3, 100, BIG]), st.booleans(), st.booleans()),
        st.tuples(st.just("get"), st.sampled_from(["owner", "id"]), owner_bounds),
        st.tuples(st.just("get b"), st.integers(0, 100)),  # a row of B, by its id
    ),
    min_size=4, max_size=12,
)


async def run_queries(arena: Arena, server: int, user: int | None, queries, b_rows: list[int]) -> dict:
    """Make ``queries`` as ``user`` (None: anonymous), reconnecting (and logging in
    again) whenever one of them gets the connection dropped; returns every frame
    received (``frames``) and how many connections were dropped (``drops``)."""
    seen = {"frames": [], "drops": 0}

    async def connect() -> RawClient:
        client = await RawClient.ready(arena.url(server))
        if user is not None:
            await client.send(client.encode(["rpc", "login", user]))
            await client.read(until=lambda frames: len(non_push(frames)) >= 1)
        return client

    client = await connect()
    for query in queries:
        if query[0] == "get b":
            message = ["sub", "Secret", "get", "id", b_rows[query[1] % len(b_rows)]]
        elif query[0] == "get":
            message = ["sub", "Secret", "get", query[1], query[2]]
        else:
            message = ["sub", "Secret", "range", *query[1:]]
        answered = len(non_push(client.outcome.frames)) + 1
        await client.send(client.encode(message))
        outcome = await client.read(until=lambda frames, n=answered: len(non_push(frames)) >= n)
        if outcome.closed:
            seen["frames"] += outcome.frames
            seen["drops"] += 1
            await client.close()
            client = await connect()
    await asyncio.sleep(0.3)  # pushes of what the writer did meanwhile
    outcome = await client.read(wait=0.2)
    seen["frames"] += outcome.frames
    await client.close()
    return seen


@settings(FUZZ, max_examples=6)
@given(queries=owner_queries)
def test_no_owner_row_of_another_user_reaches_an_attacker(arena, queries):
    """User A (and an anonymous client) subscribe to the OWNER component with odd bounds
    and limits, and ask for B's rows by id, while B's and A's rows are being written
    through the other server process."""

    async def attack():
        writer = await arena.cluster.connect(1)
        b_rows = [await writer.call("plant_secret", USER_B, f"b{i}") for i in range(3)]
        await writer.call("plant_secret", USER_A, "a")

        async def keep_writing():
            for i in range(40):
                owner = USER_B if i % 3 else USER_A
                row = await writer.call("plant_secret", owner, f"w{i}")
                if owner == USER_B:
                    b_rows.append(row)
                    await writer.call("rewrite_secret", row, USER_B, f"w{i} edited")
                await asyncio.sleep(0.01)

        writing = asyncio.ensure_future(keep_writing())
        try:
            as_a, anonymous = await asyncio.gather(run_queries(arena, 0, USER_A, queries, b_rows),
                                                   run_queries(arena, 0, None, queries, b_rows))
        finally:
            await writing
            await writer.close()
        return as_a, anonymous

    as_a, anonymous = arena.run(attack())
    rows = secret_rows(as_a["frames"])
    arena.owner_rows[0] += len(rows)
    arena.owner_rows[1] += len([r for r in rows if r["owner"] != USER_A]) + len(secret_rows(anonymous["frames"]))
    arena.figures.setdefault("owner-row queries", [0, 0])
    arena.figures["owner-row queries"][0] += 2 * len(queries)
    arena.figures["owner-row queries"][1] += as_a["drops"] + anonymous["drops"]
    assert [r for r in rows if r["owner"] != USER_A] == []
    assert secret_rows(anonymous["frames"]) == []
    assert arena.problems() == []


def test_the_owner_attack_could_see_its_own_rows(arena):
    """The attack above is not vacuous: A's subscriptions do show A's rows."""

    async def attack():
        return await run_queries(arena, 0, USER_A, [("range", "owner", 0, BIG, -1, False, True)], [1])

    seen = arena.run(attack())
    assert {r["owner"] for r in secret_rows(seen["frames"])} == {USER_A}
    arena.assert_unharmed()


# -- clean-up of dropped connections ----------------------------------------------------------------

def test_every_dropped_connection_runs_on_disconnect_once(arena):
    """Logged in, subscribed, then dropped for garbage: Sanic cancels the handler as the
    socket closes, which used to cut the clean-up short for about 4 in 10 of them (no
    on_disconnect, the connection kept in the broker and login watcher forever)."""
    users = range(830_000, 830_040)

    async def one(user: int) -> int:
        client = await RawClient.ready(arena.url(user))
        for message in (["rpc", "whoami"], ["rpc", "login", user], ["sub", "Secret", "range", "owner", 0, BIG]):
            await client.send(client.encode(message))
        await client.read(until=lambda frames: len(non_push(frames)) >= 3)
        connection_id = non_push(client.outcome.frames)[0][1][0]
        await client.send(b"\x00garbage")
        await client.send(client.encode(["rpc", "whoami"]))  # pipelined behind the garbage
        outcome = await client.read()
        await client.close()
        assert outcome.dropped
        return connection_id

    async def attack():
        ids = await asyncio.gather(*(one(user) for user in users))
        checker = await arena.cluster.connect(0)

        async def every_one_ran() -> list | None:
            ran = [await checker.call("disconnects", cid) for cid in ids]
            return ran if all(ran) else None

        ran = await wait_until(every_one_ran, 5, "on_disconnect of every dropped connection", pause=0.1)
        await checker.close()
        return ran

    ran = arena.run(attack())
    assert ran == [[user] for user in users]
    arena.assert_unharmed()


# -- memory under a sustained attack --------------------------------------------------------------------

WARM_UP, ATTACK, HELD, CONCURRENCY = 2400, 3000, 400, 48
# What the attack may add to the RSS of the two workers it hits, after a warm-up of the
# same mix. Its connections are all closed when it is measured, so a correct server holds
# none of them: what remains is allocator fragmentation and pools (13-26 MiB in our runs,
# less with every further round). A connection the server kept would cost what an open
# one costs (measured below: 60-100 KiB with two subscriptions), 3,000 of them 180-300 MiB;
# the test checks that keeping every one would break the bound at least twice over.
# Before the two leaks found by this suite were fixed, the attack grew them by ~100 MiB.
RSS_BOUND_KIB = 48 * 1024


async def hostile_connection(url: str, n: int) -> tuple[int, str]:
    """One hostile connection of a mix of nine; returns (frames sent, how it ended)."""
    kind = n % 9
    if kind == 1:  # a hello signed with the wrong key
        outcome = await raw_attempt(url, REFUSED_HELLOS["wrong auth key"]())
        return 1, "dropped" if outcome.dropped and outcome.frames == [b"\x90"] else "other"
    if kind == 0:  # garbage instead of a hello, and more frames behind it
        client = await RawClient.open(url)
        frames = [os.urandom(40), b"more", b"more"]
        sent = 0
    else:
        client = await RawClient.ready(url)
        if kind == 2:  # a replayed frame
            frame = client.encode(["rpc", "whoami"])
            frames = [frame, frame]
        elif kind == 3:  # subscriptions, then an unknown tag, with a frame pipelined behind it
            frames = [client.encode(m) for m in (
                ["sub", "NameClaim", "range", "name", "a" * 1000, "z"],
                ["sub", "Account", "range", "number", 0, BIG, 100], ["sub", "Counter", "get", "key", 1],
                ["bogus"], ["motd"])]
        elif kind == 4:  # logged in and subscribed to OWNER rows, then garbage
            frames = [client.encode(["rpc", "login", 840_000 + n]),
                      client.encode(["sub", "Secret", "range", "owner", 0, BIG, -1]), b"\x00garbage",
                      client.encode(["rpc", "whoami"])]
        elif kind == 5:  # a 100 kB argument to an unknown endpoint
            frames = [client.encode(["rpc", "nope", "z" * 100_000])]
        elif kind == 6:  # truncated ciphertext
            frames = [client.encode(["rpc", "whoami"])[:-3]]
        elif kind == 7:  # 2 MiB of zeros in a 2 kB frame
            frames = [client.encode(["rpc", "whoami", bytes(2 * MAX_FRAME)])]
        else:  # logged in, subscribed, then the client vanishes without closing
            frames = [client.encode(["rpc", "login", 840_000 + n]),
                      client.encode(["sub", "Account", "range", "number", 0, BIG, 10])]
        sent = 1  # the hello
    for frame in frames:
        await client.send(frame)
    sent += len(frames)
    if kind == 8:
        await client.read(until=lambda f: len(non_push(f)) >= 2)
        client.ws.transport.abort()
        return sent, "vanished"
    outcome = await client.read()
    await client.close()
    return sent, "dropped" if outcome.dropped else "other"


async def campaign(url: str, count: int, first: int) -> dict:
    tally = {"frames": 0, "dropped": 0, "vanished": 0, "other": 0}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with gate:
            sent, ended = await hostile_connection(url, n)
        tally["frames"] += sent
        tally[ended] += 1

    await asyncio.gather(*(one(first + n) for n in range(count)))
    return tally


async def held_connection_cost(arena: Arena, watch: ServerWatch) -> float:
    """KiB of worker memory one open connection with two subscriptions costs."""
    before = sum(watch.rss().values())
    clients = [await RawClient.ready(arena.url(0)) for _ in range(HELD)]
    for client in clients:
        await client.send(client.encode(["sub", "Account", "range", "number", 0, BIG, 100]))
        await client.send(client.encode(["sub", "Counter", "get", "key", 1]))
    for client in clients:
        await client.read(until=lambda frames: len(non_push(frames)) >= 2)
    await asyncio.sleep(0.3)  # a measurement settling (the allocator), not a wait for an event
    cost = (sum(watch.rss().values()) - before) / HELD
    for client in clients:
        await client.close()
    return cost


def test_worker_memory_stays_bounded_under_a_sustained_attack(arena):
    watch = arena.watches[0]  # every attack goes to the first server's two workers

    async def attack():
        held = await held_connection_cost(arena, watch)
        await campaign(arena.url(0), WARM_UP, 0)
        await asyncio.sleep(1)  # RSS settles after the warm-up: a measurement, not a wait for an event
        before = watch.rss()
        started = time.monotonic()
        tally = await campaign(arena.url(0), ATTACK, WARM_UP)
        took = time.monotonic() - started
        await asyncio.sleep(1)  # the server finishes closing them
        return held, before, tally, took, watch.rss()

    held, before, tally, took, after = arena.run(attack(), timeout=120)
    growth = sum(after.values()) - sum(before.values())
    arena.figures["sustained attack"] = [ATTACK, tally["dropped"]]
    print(f"\nsustained attack: {ATTACK:,} connections ({tally['frames']:,} frames) in {took:.1f} s after "
          f"{WARM_UP:,} of warm-up: {tally['dropped']:,} dropped by the server, {tally['vanished']:,} "
          f"vanished; worker RSS {[kib // 1024 for kib in before.values()]} -> "
          f"{[kib // 1024 for kib in after.values()]} MiB (growth {growth / 1024:.1f} MiB); "
          f"one held connection costs {held:.0f} KiB")
    assert tally["other"] == 0
    assert held * ATTACK > 2 * RSS_BOUND_KIB  # leaking every connection would break the bound
    assert growth < RSS_BOUND_KIB
    arena.assert_unharmed()
