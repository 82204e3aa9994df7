"""Redis backend client: reads in one round trip, commits as one Lua script call."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException

from ..base import BackendClient, Bounds, ChangeEvent, ChangeFeed, TableMaintenance, WriteSet
from ..errors import RaceCondition
from ..replica_health import ReplicationStatus
from ..table import TableReference
from . import keys
from .cluster import (
    check_single_slot,
    connect_cluster,
    pop_cluster_option,
    server_versions,
    split_cluster_url,
)
from .keys import RowCodec
from .pipelined import PipelinedRedis
from .replication import probe as probe_replication

MIN_SERVER_VERSION = (7, 0)


class LuaScript:
    """A script kept beside this module, run by EVALSHA (loaded again on NOSCRIPT)."""

    def __init__(self, filename: str) -> None:
        self.source = (Path(__file__).parent / filename).read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def load(self, r: aioredis.Redis | RedisCluster | PipelinedRedis) -> None:
        if isinstance(r, PipelinedRedis):
            await r.execute("SCRIPT", "LOAD", self.source, retry=True)
            return
        # On a cluster SCRIPT LOAD goes to every primary, the slot's owner among them.
        await r.script_load(self.source)

    async def run(self, r: aioredis.Redis | RedisCluster | PipelinedRedis, keys_: list, args: list,
                  readonly: bool = False) -> Any:
        if isinstance(r, PipelinedRedis):
            # a read-only script may be re-sent after a lost connection; a commit may not
            command = "EVALSHA_RO" if readonly else "EVALSHA"
            try:
                return await r.execute(command, self.sha, len(keys_), *keys_, *args, retry=readonly)
            except NoScriptError:
                await self.load(r)
                return await r.execute(command, self.sha, len(keys_), *keys_, *args, retry=readonly)
        # redis-py routes EVALSHA by its keys without a round trip; EVALSHA_RO would
        # cost a COMMAND GETKEYS per call, so on a cluster read-only scripts (flagged
        # no-writes) run as EVALSHA on the slot's primary.
        command = "EVALSHA_RO" if readonly and not isinstance(r, RedisCluster) else "EVALSHA"
        try:
            return await r.execute_command(command, self.sha, len(keys_), *keys_, *args)
        except NoScriptError:  # the server restarted or flushed its scripts
            await self.load(r)
            return await r.execute_command(command, self.sha, len(keys_), *keys_, *args)


MAX_CONNECTIONS = 256  # per worker and Redis server
POOL_TIMEOUT = 60.0  # seconds a command waits for a free pooled connection

COMMIT_SCRIPT = LuaScript("commit.lua")
RANGE_SCRIPT = LuaScript("range.lua")


def _pairs(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2]))


class RedisBackendClient(BackendClient):
    """One Redis (or Valkey) server, the master or a read replica, or a Redis Cluster.

    Cluster mode: ``cluster=True`` (or ``raw_clustering=True``), or a
    ``redis+cluster://`` URL; see :mod:`.cluster`.
    """

    def __init__(self, url: str, is_servant: bool = False, **options: Any) -> None:
        self.url = url
        self.is_servant = is_servant
        plain_url, cluster_scheme = split_cluster_url(url)
        self.is_cluster = pop_cluster_option(options) or cluster_scheme
        # No read/write timeout by default: redis-py enforces it with asyncio.wait_for,
        # which on Python 3.11 can lose a cancellation (a stopped task then hangs).
        # Dead peers are found by TCP keepalive instead. Both can be set in the URL.
        options.setdefault("socket_timeout", None)
        options.setdefault("socket_keepalive", True)
        self._options = options
        self._redis: aioredis.Redis | RedisCluster | None
        # rows, ranges, unique checks and commits: one auto-pipelined connection (a
        # cluster routes them with redis-py); maintenance and events use redis-py
        self._calls: PipelinedRedis | None = None
        if self.is_cluster:
            self._redis = connect_cluster(plain_url, is_servant, options)
        else:
            self._calls = PipelinedRedis(plain_url, **{k: v for k, v in options.items()
                                                        if k not in ("max_connections", "pool_timeout")})
            # A blocking pool: when every connection is busy (a burst of subscription
            # refreshes, say), callers wait for one instead of failing.
            pool = aioredis.BlockingConnectionPool.from_url(
                plain_url, max_connections=options.pop("max_connections", MAX_CONNECTIONS),
                timeout=options.pop("pool_timeout", POOL_TIMEOUT), **options)
            self._redis = aioredis.Redis(connection_pool=pool)
        self._codecs: dict[type, RowCodec] = {}
        self._opened = False
        self._plain_url = plain_url
        self._probe: PipelinedRedis | None = None  # replication probes, off the call path

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def redis(self) -> aioredis.Redis | RedisCluster:
        if self._redis is None:
            raise ConnectionError(f"the Redis backend {self.url} is closed")
        return self._redis

    async def open(self) -> None:
        if self._opened:
            return
        r = self.redis
        try:
            await r.ping()
            versions = await server_versions(r)
        except (RedisConnectionError, RedisClusterException, OSError) as exc:
            kind = "Redis Cluster" if self.is_cluster else "Redis"
            raise ConnectionError(f"cannot connect to {kind} at {self.url}: {exc}") from exc
        for server, text in versions.items():
            if tuple(int(x) for x in text.split(".")[:2]) < MIN_SERVER_VERSION:
                raise ConnectionError(
                    f"Redis at {self.url} ({server}) is version {text}; 7.0 or newer is needed"
                )
        if not self.is_servant:
            await COMMIT_SCRIPT.load(r)
        await RANGE_SCRIPT.load(r)
        self._opened = True

    @property
    def calls(self) -> aioredis.Redis | RedisCluster | PipelinedRedis:
        """Where the commands of transactions go: the pipelined connection, or the
        cluster client."""
        if self._redis is None:
            raise ConnectionError(f"the Redis backend {self.url} is closed")
        return self._calls or self._redis

    async def close(self) -> None:
        if self._probe is not None:
            await self._probe.close()
        if self._calls is not None:
            await self._calls.close()
        if self._redis is not None:
            r, self._redis = self._redis, None
            await r.aclose()
            if isinstance(r, aioredis.Redis):
                await r.connection_pool.disconnect()  # a pool we made is ours to close

    # -- replication ----------------------------------------------------------------------

    @property
    def probes_replication(self) -> bool:
        # a cluster servant reads from the replicas redis-py picks per slot; see cluster.py
        return self.is_servant and not self.is_cluster

    async def replication_status(self) -> ReplicationStatus:
        if self.is_cluster:
            raise NotImplementedError("replication probes of a Redis Cluster are not supported")
        if self._redis is None:
            raise ConnectionError(f"the Redis backend {self.url} is closed")
        if self._probe is None:
            # its own connection: a probe of a frozen server must not hold up calls
            self._probe = PipelinedRedis(self._plain_url, **{k: v for k, v in self._options.items()
                                                              if k not in ("max_connections", "pool_timeout")})
        return await probe_replication(self._probe, with_link=self.is_servant)

    # -- reads --------------------------------------------------------------------------

    def codec(self, comp) -> RowCodec:
        codec = self._codecs.get(comp)
        if codec is None:
            codec = self._codecs[comp] = RowCodec(comp)
        return codec

    async def get(self, ref: TableReference, row_id: int) -> np.record | None:
        key = keys.row_key(ref, int(row_id))
        r = self.calls
        if isinstance(r, PipelinedRedis):
            flat = await r.execute("HGETALL", key, retry=True)
            fields = _pairs(flat) if flat else None
        else:
            fields = await r.hgetall(key)
        if not fields:
            return None
        return self.codec(ref.comp_cls).decode(fields)

    async def get_many(self, ref: TableReference, row_ids: list[int]) -> list[np.record | None]:
        if not row_ids:
            return []
        row_keys = [keys.row_key(ref, int(row_id)) for row_id in row_ids]
        r = self.calls
        if isinstance(r, PipelinedRedis):
            flats = await r.execute_many([("HGETALL", key) for key in row_keys], retry=True)
            results = [_pairs(flat) if flat else None for flat in flats]
        else:
            async with r.pipeline(transaction=False) as pipe:
                for key in row_keys:
                    pipe.hgetall(key)
                results = await pipe.execute()
        codec = self.codec(ref.comp_cls)
        return [codec.decode(fields) if fields else None for fields in results]

    def range_order_key(self, value: Any, row_id: int) -> tuple:
        # an index member is the sortable value, a NUL, then the id in decimal: equal
        # values are ordered by the id's digits as text ("10" before "9")
        return (value, str(int(row_id)))

    async def _range(self, ref, index, bounds: Bounds, limit, desc, with_rows) -> list:
        if bounds.empty or limit == 0:
            return []
        kind = ref.comp_cls.dtype_map_[index].kind
        low, high = keys.lex_bounds(bounds, kind)
        args = [low, high, b"1" if desc else b"0", int(limit) if limit > 0 else -1,
                keys.row_key(ref, ""), b"1" if with_rows else b"0"]
        return await RANGE_SCRIPT.run(self.calls, [keys.index_key(ref, index)], args, readonly=True)

    async def range(self, ref, index, bounds, limit, desc) -> np.recarray:
        flat_rows = await self._range(ref, index, bounds, limit, desc, True)
        return self.codec(ref.comp_cls).decode_many([_pairs(f) for f in flat_rows])

    async def first(self, ref, index, bounds) -> np.record | None:
        flat_rows = await self._range(ref, index, bounds, 1, False, True)
        return self.codec(ref.comp_cls).decode(_pairs(flat_rows[0])) if flat_rows else None

    async def range_ids(self, ref, index, bounds, limit, desc) -> list[int]:
        return [int(i) for i in await self._range(ref, index, bounds, limit, desc, False)]

    async def find_unique(self, ref, values: list[tuple[str, Any]]) -> list[int | None]:
        if not values:
            return []
        comp = ref.comp_cls
        r = self.calls
        if isinstance(r, PipelinedRedis):
            commands = []
            for field, value in values:
                low, high = keys.unique_bounds(value, comp.dtype_map_[field].kind)
                commands.append(("ZRANGE", keys.index_key(ref, field), low, high, "BYLEX", "LIMIT", 0, 1))
            results = await r.execute_many(commands, retry=True)
        else:
            async with r.pipeline(transaction=False) as pipe:
                for field, value in values:
                    low, high = keys.unique_bounds(value, comp.dtype_map_[field].kind)
                    pipe.zrange(keys.index_key(ref, field), low, high, bylex=True, offset=0, num=1)
                results = await pipe.execute()
        return [keys.member_row_id(hit[0]) if hit else None for hit in results]

    # -- commit ---------------------------------------------------------------------------

    def _build_commit(self, writes: WriteSet) -> tuple[list, list, list, dict]:
        checks: list = []
        pushes: list = []
        publishes: list = []
        freed: dict[str, dict[str, bool]] = {}
        for tw in writes:
            ref, comp = tw.ref, tw.ref.comp_cls
            codec = self.codec(comp)
            kinds = codec.kinds
            for row in tw.deletes:
                rid = int(row["id"])
                key = keys.row_key(ref, rid)
                checks.append(["V", key, str(int(row["_version"]))])
                for field in comp.indexes_:
                    ikey = keys.index_key(ref, field)
                    pushes.append(["ZREM", ikey, keys.member(row[field], kinds[field], rid)])
                    freed.setdefault(ikey, {})[str(rid)] = True
                pushes.append(["DEL", key])
            for old, new, changed in tw.updates:
                rid = int(new["id"])
                key = keys.row_key(ref, rid)
                checks.append(["V", key, str(int(old["_version"]))])
                pushes.append(["HSET", key, "_version", str(int(old["_version"]) + 1),
                               *codec.encode_fields(new, changed)])
                for field in changed:
                    if field not in comp.indexes_:
                        continue
                    ikey = keys.index_key(ref, field)
                    if field in comp.uniques_:
                        checks.append(["U", ikey, *keys.unique_bounds(new[field], kinds[field]), field])
                    pushes.append(["ZREM", ikey, keys.member(old[field], kinds[field], rid)])
                    pushes.append(["ZADD", ikey, "0", keys.member(new[field], kinds[field], rid)])
                    freed.setdefault(ikey, {})[str(rid)] = True
            for row in tw.inserts:
                rid = int(row["id"])
                key = keys.row_key(ref, rid)
                checks.append(["N", key])
                pushes.append(["HSET", key, "_version", "1", *codec.encode_fields(row)])
                for field in comp.indexes_:
                    ikey = keys.index_key(ref, field)
                    if field in comp.uniques_ and field != "id":
                        checks.append(["U", ikey, *keys.unique_bounds(row[field], kinds[field]), field])
                    pushes.append(["ZADD", ikey, "0", keys.member(row[field], kinds[field], rid)])
            for rid, version in tw.reads:
                checks.append(["V", keys.row_key(ref, rid), str(version)])
            if tw.is_dirty():
                channel = keys.change_channel(ref)
                event = ChangeEvent(channel, tuple(tw.touched_rows()), tuple(tw.touched_indexes()))
                publishes.append([channel, event.encode()])
        return checks, pushes, publishes, freed

    async def commit(self, writes: WriteSet) -> None:
        if self.is_servant:
            raise RuntimeError("cannot commit on a read replica")
        if not writes:
            raise ValueError("nothing to commit")
        payload = msgpack.packb(self._build_commit(writes), use_bin_type=False)
        route = keys.cluster_prefix(writes[0].ref)
        if self.is_cluster:
            check_single_slot([keys.cluster_prefix(tw.ref) for tw in writes])
        result = await COMMIT_SCRIPT.run(self.calls, [route], [payload])
        if result == b"OK":
            return
        kind = result[0]
        if kind == b"VER":
            raise RaceCondition(
                f"Version mismatch on {result[1].decode()}: read version {result[3].decode()}, "
                f"now {result[2].decode()} (changed by another transaction)"
            )
        if kind == b"NX":
            raise RaceCondition(f"RACE: key already exists {result[1].decode()}")
        if kind == b"UNIQ":
            raise RaceCondition(
                f"UNIQUE constraint violation on {result[1].decode()}: the value of "
                f"{result[2].decode()} was taken by row {result[3].decode()} meanwhile"
            )
        raise RuntimeError(f"unexpected reply from the commit script: {result!r}")

    # -- events and maintenance ---------------------------------------------------------------

    def change_channel(self, ref: TableReference) -> str:
        return keys.change_channel(ref)

    def change_feed(self) -> ChangeFeed:
        from .events import RedisChangeFeed

        return RedisChangeFeed(self.redis)

    def maintenance(self) -> TableMaintenance:
        from .maint import RedisTableMaintenance

        return RedisTableMaintenance(self)
