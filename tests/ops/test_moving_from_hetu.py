"""A HeTu deployment moves over as it is: `hetu start` serves a Redis that HeTu wrote,
without migration, and writes what HeTu writes.

``fixtures/hetu-9d054b5-chat-redis.json`` is every key of a Redis that the reference
server (commit 9d054b5) wrote while serving the chat example (instance ``dev``): Alice
(1001) and a user with a Cyrillic/Chinese/emoji name (1002) logged in, three chat lines
(one of 300 characters, cut to 256 by the ``U256`` column), 1002 quit, both connections
closed. Every test runs on a single Redis and on a 3-master Redis Cluster.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import redis
import yaml

from hetu.data.backend.redis.keys import sortable
from tests.backend.test_redis_cluster import redis_cluster, stop_redis_cluster
from tests.conftest import RedisServer, redis_binary
from tests.ops.test_upgrade_command import hetu_cmd
from tests.server.conftest import CHAT_APP, ServerProcess, connect
from tests.waiting import wait_until

FIXTURE = Path(__file__).parent / "fixtures" / "hetu-9d054b5-chat-redis.json"
INSTANCE = "dev"
ALICE, BOB = (1001, "Alice"), (1002, "Бob 鲍勃 🎲")
LINES = [(ALICE, "Hello, world!"), (BOB, "你好 — ünïcödé and emoji 🚀"), (ALICE, "x" * 300)]
# values that differ between any two runs, whoever writes them
TIMESTAMP_FIELDS = {"created_at_ms", "last_seen_ms", "expires_at", "last_timestamp"}
NODE_FIELDS = {"node_id"}
# a worker lease is renewed every few seconds and released at shutdown: how often it
# was written depends on how long the server ran
RENEWED_TABLES = {"WorkerLease"}


def hetu_keys() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def _raw(value: dict) -> bytes:
    return value["utf8"].encode("utf-8") if "utf8" in value else base64.b64decode(value["base64"])


# -- the two kinds of Redis ------------------------------------------------------------------


class SingleRedis:
    def __init__(self) -> None:
        self.server = RedisServer(redis_binary())
        self.url = self.server.url()

    def clients(self) -> list[redis.Redis]:
        """One client per node holding data."""
        return [redis.Redis(port=self.server.port)]

    def writer(self):
        return redis.Redis(port=self.server.port)

    def flush(self) -> None:
        with self.writer() as r:
            r.flushall()

    def stop(self) -> None:
        self.server.stop()


class ClusterRedis:
    def __init__(self) -> None:
        self.cluster = redis_cluster()
        self.url = self.cluster.url()

    def clients(self) -> list[redis.Redis]:
        return [redis.Redis(port=n.port) for n in self.cluster.nodes]

    def writer(self):
        return redis.RedisCluster(host="127.0.0.1", port=self.cluster.nodes[0].port)

    def flush(self) -> None:
        self.cluster.flush()

    def stop(self) -> None:
        pass  # the session's cluster, stopped at the end of the session


@pytest.fixture(scope="module", params=["redis", "cluster"])
def store(request):
    db = SingleRedis() if request.param == "redis" else ClusterRedis()
    yield db
    db.stop()


@pytest.fixture(scope="session", autouse=True)
def _stop_cluster_at_session_end():
    yield
    stop_redis_cluster()


def load(db, keys: dict) -> None:
    """Write the fixture's keys into ``db`` as HeTu left them."""
    with db.writer() as r:
        for key, entry in keys.items():
            value = entry["value"]
            if entry["type"] == "hash":
                r.hset(key, mapping={f: _raw(v) for f, v in value.items()})
            elif entry["type"] == "zset":
                r.zadd(key, {_raw(m): score for m, score in value})
            elif entry["type"] == "string":
                r.set(key, _raw(value))
            else:
                raise AssertionError(f"the fixture holds a {entry['type']} key {key}; teach load() it")
            if entry["ttl"] > 0:
                r.expire(key, entry["ttl"])


def dump(db) -> dict:
    """Every key of ``db`` as ``{key: {"type", "ttl", "value"}}`` with raw bytes."""
    out = {}
    for r in db.clients():
        with r:
            for key in r.scan_iter(count=1000):
                kind = r.type(key).decode()
                if kind == "none":
                    continue  # deleted since the scan saw it
                if kind == "hash":
                    value = r.hgetall(key)
                elif kind == "zset":
                    value = r.zrange(key, 0, -1, withscores=True)
                elif kind == "string":
                    value = r.get(key)
                else:
                    raise AssertionError(f"unexpected {kind} key {key!r}")
                out[key.decode()] = {"type": kind, "ttl": r.ttl(key), "value": value}
    return out


def fixture_as_dump(keys: dict) -> dict:
    out = {}
    for key, entry in keys.items():
        value = entry["value"]
        if entry["type"] == "hash":
            value = {f.encode(): _raw(v) for f, v in value.items()}
        elif entry["type"] == "zset":
            value = [(_raw(m), float(s)) for m, s in value]
        out[key] = {"type": entry["type"], "ttl": entry["ttl"], "value": value}
    return out


def chat_server(tmp: Path, db) -> ServerProcess:
    srv = ServerProcess(tmp, db.url, app=CHAT_APP, namespace="Chat", INSTANCES=[INSTANCE])
    srv.url = f"ws://127.0.0.1:{srv.port}/hetu/{INSTANCE}"
    return srv


def fixture_rows(keys: dict, comp: str) -> dict[int, dict[str, str]]:
    """The rows of ``comp`` in the fixture, as clients see them (no ``_version``)."""
    prefix = f"{INSTANCE}:{comp}:{{CLU0}}:id:"
    return {
        int(key[len(prefix):]): {f: v["utf8"] for f, v in entry["value"].items() if f != "_version"}
        for key, entry in keys.items() if key.startswith(prefix)
    }


def as_text(row: dict) -> dict[str, str]:
    """A row received by the client, with every value as Redis stores it."""
    return {k: str(v) for k, v in row.items()}


# -- HeTu's data is served as it is ---------------------------------------------------------


async def test_a_redis_written_by_hetu_is_served_without_migration(store, tmp_path):
    keys = hetu_keys()
    store.flush()
    load(store, keys)
    srv = chat_server(tmp_path, store)
    client = await connect(srv)
    try:
        messages, users = fixture_rows(keys, "ChatMessage"), fixture_rows(keys, "OnlineUser")
        assert len(messages) == 7 and len(users) == 2
        # by id
        for comp, rows in (("ChatMessage", messages), ("OnlineUser", users)):
            for row_id, stored in rows.items():
                _, row = await client.subscribe_get(comp, "id", row_id)
                assert as_text(row) == stored
        # by unique index
        for row_id, stored in users.items():
            _, by_owner = await client.subscribe_get("OnlineUser", "owner", int(stored["owner"]))
            _, by_name = await client.subscribe_get("OnlineUser", "name", stored["name"])
            assert int(by_owner["id"]) == int(by_name["id"]) == row_id
        assert (await client.subscribe_get("OnlineUser", "name", "nobody"))[1] is None
        # by range, on every index, both orders
        _, rows = await client.subscribe_range("ChatMessage", "id", 0, 2**63 - 1, 100)
        assert [as_text(r) for r in rows] == [messages[i] for i in sorted(messages)]
        _, rows = await client.subscribe_range("ChatMessage", "id", 0, 2**63 - 1, 100, desc=True)
        assert [int(r["id"]) for r in rows] == sorted(messages, reverse=True)
        _, rows = await client.subscribe_range("ChatMessage", "owner", ALICE[0], ALICE[0], 100)
        assert [r["text"] for r in rows] == [
            "Alice joined the chat", "Hello, world!", "x" * 256, "Alice left the chat"]
        stamps = sorted(int(m["created_at_ms"]) for m in messages.values())
        _, rows = await client.subscribe_range("ChatMessage", "created_at_ms", stamps[1], stamps[3], 100)
        assert [r["created_at_ms"] for r in rows] == stamps[1:4]
        _, rows = await client.subscribe_range("OnlineUser", "name", "A", "C", 100)
        assert [r["name"] for r in rows] == ["Alice"]
        await client.call("user_login", *BOB)
        # the unique index HeTu wrote is enforced: the login updated 1002's row
        _, rows = await client.subscribe_range("OnlineUser", "id", 0, 2**63 - 1, 100)
        assert len(rows) == 2
        bob = next(r for r in rows if r["owner"] == BOB[0])
        assert bob["online"] == 1 and bob["id"] in users
        await client.call("user_quit")
    finally:
        await client.close()
        srv.stop()
    assert "SchemaMismatch" not in srv.logs()
    after = dump(store)
    bob_key = next(k for k in keys if k.startswith(f"{INSTANCE}:OnlineUser:{{CLU0}}:id:") and
                   keys[k]["value"]["owner"]["utf8"] == str(BOB[0]))
    # HeTu's version counter goes on: 2 (HeTu's) + login + quit
    assert after[bob_key]["value"][b"_version"] == b"4"
    assert after[bob_key]["value"][b"online"] == b"0"
    for key, entry in fixture_as_dump(keys).items():
        if key.endswith(":meta"):
            assert after[key]["value"] == entry["value"], f"{key} was rewritten"


def test_hetu_upgrade_finds_nothing_to_migrate_in_hetus_data(store, tmp_path):
    keys = hetu_keys()
    store.flush()
    load(store, keys)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "APP_FILE": str(CHAT_APP), "NAMESPACE": "Chat", "INSTANCES": [INSTANCE],
        "BACKENDS": {"default": {"master": store.url}},
    }))
    result = hetu_cmd("upgrade", f"--config={config}", "-y", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    reported = dict(line.strip().split(": ") for line in result.stdout.splitlines() if line.startswith("   "))
    assert reported == {"ChatMessage": "ok", "Connection": "ok", "FutureCalls": "ok", "OnlineUser": "ok",
                        "WorkerLease": "ok"}, result.stdout
    after = dump(store)
    for key, entry in fixture_as_dump(keys).items():
        if key.endswith(":meta"):
            assert after[key]["value"] == entry["value"], key
        elif not key.startswith(f"{INSTANCE}:WorkerLease:"):  # volatile: upgrade empties it
            assert after[key]["value"] == entry["value"], key


# -- ours writes what HeTu writes ----------------------------------------------------------


async def play_the_fixture_session(srv) -> None:
    """The calls that produced the fixture, in its order."""
    alice, bob = await connect(srv), await connect(srv)
    try:
        await alice.call("user_login", *ALICE)
        await bob.call("user_login", *BOB)
        for (who, _), text in LINES:
            await (alice if who == ALICE[0] else bob).call("user_chat", text)
        await bob.call("user_quit")
    finally:
        await bob.close()
        await alice.close()  # on_disconnect: "Alice left the chat"


def settled(db) -> bool:
    """The server finished with the closed connections: their rows are gone and
    on_disconnect wrote Alice's "left the chat"."""
    found = dump(db)
    return (not any(k.startswith(f"{INSTANCE}:Connection:{{") for k in found)
            and sum(k.startswith(f"{INSTANCE}:ChatMessage:{{CLU0}}:id:") for k in found) == 7)


async def wait_settled(db, timeout: float = 10) -> None:
    try:
        await wait_until(lambda: settled(db), timeout, "the server to settle", pause=0.05)
    except AssertionError:
        raise AssertionError(f"the server did not settle: {sorted(dump(db))}") from None


class Normalizer:
    """Replaces ids and timestamps of one dump by placeholders, so two dumps compare."""

    def __init__(self, dump_: dict) -> None:
        self.ids: dict[str, str] = {}
        by_table: dict[str, list[int]] = {}
        for key in dump_:
            parts = key.split(":")
            if len(parts) == 5 and parts[3] == "id":
                by_table.setdefault(parts[1], []).append(int(parts[4]))
        for table, ids in by_table.items():
            for n, row_id in enumerate(sorted(ids)):  # snowflake ids ascend with time
                self.ids[str(row_id)] = f"<{table}#{n}>"
        self.dump = dump_

    def key(self, key: str) -> str:
        parts = key.split(":")
        if len(parts) == 5 and parts[3] == "id":
            parts[4] = self.ids[parts[4]]
        return ":".join(parts)

    def row(self, fields: dict[bytes, bytes], table: str = "") -> dict[str, str]:
        out = {}
        for f, v in fields.items():
            name, text = f.decode(), v.decode("utf-8")
            if name == "_version" and table in RENEWED_TABLES:
                assert int(text) >= 1
                text = "<renewals>"
            elif name == "id":
                text = self.ids[text]
            elif name in TIMESTAMP_FIELDS:
                assert text.isdigit(), (name, text)
                text = "<ms>"
            elif name in NODE_FIELDS:
                text = "<node>"
            out[name] = text
        return out

    def index(self, key: str, members: list[tuple[bytes, float]]) -> list:
        field = key.rsplit(":", 1)[1]
        table_prefix = key.rsplit(":index:", 1)[0]
        out = []
        for raw, score in members:
            value, _, row_id = raw.rpartition(b"\x00")
            row = self.dump[f"{table_prefix}:id:{row_id.decode()}"]["value"]
            stored = row[field.encode()].decode("utf-8")
            kind = "U" if field == "name" else "i"
            assert value == sortable(stored, kind), f"{key}: {raw!r} does not encode {stored!r}"
            if field == "id" or field in TIMESTAMP_FIELDS:
                stored = self.row({field.encode(): stored.encode()})[field]
            out.append((stored, self.ids[row_id.decode()], score))
        return out

    def all(self) -> dict:
        out = {}
        for key, entry in self.dump.items():
            value = entry["value"]
            if key.endswith(":meta"):
                value = {f.decode(): v.decode() for f, v in value.items()}
            elif entry["type"] == "hash":
                value = self.row(value, key.split(":")[1])
            elif entry["type"] == "zset":
                value = self.index(key, value)
            out[self.key(key)] = (entry["type"], entry["ttl"], value)
        return out


async def test_ours_writes_what_hetu_writes_key_by_key(store, tmp_path):
    store.flush()
    srv = chat_server(tmp_path, store)
    try:
        await play_the_fixture_session(srv)
        await wait_settled(store)
    finally:
        srv.stop()
    ours = Normalizer(dump(store)).all()
    hetus = Normalizer(fixture_as_dump(hetu_keys())).all()
    assert sorted(ours) == sorted(hetus)
    for key in hetus:
        assert ours[key] == hetus[key], key
