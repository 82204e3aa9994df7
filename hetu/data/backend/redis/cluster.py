"""Redis Cluster mode: how the backend client connects and routes its calls.

Every row and index key of one system cluster carries the hash tag ``{CLU<id>}``, so a
commit (one EVALSHA) and a range (one script call) touch a single slot and run on the
primary that owns it. Meta keys carry no tag; they are plain single-key commands that
redis-py routes to whichever node owns them. Change events use classic pub/sub, which a
Redis 7 cluster broadcasts to every node: one subscriber connection per worker, on any
node, receives the events of every slot.

Cluster mode is chosen by the backend config (``cluster: true``, or HeTu's
``raw_clustering: true``) or by the URL scheme ``redis+cluster://`` (``rediss+cluster://``
with TLS, ``valkey+cluster://``)::

    BACKENDS:
      default:
        type: redis
        master: redis+cluster://10.0.0.1:7000/0
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.cluster import LoadBalancingStrategy
from redis.crc import key_slot

CLUSTER_SCHEME_SUFFIX = "+cluster"
CLUSTER_OPTION_NAMES = ("cluster", "raw_clustering")
_PLAIN_SCHEMES = {"redis": "redis", "valkey": "redis", "rediss": "rediss", "valkeys": "rediss"}


def split_cluster_url(url: str) -> tuple[str, bool]:
    """``(url redis-py understands, whether the scheme asked for cluster mode)``.

    >>> split_cluster_url("redis+cluster://127.0.0.1:7000/0")
    ('redis://127.0.0.1:7000/0', True)
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme.endswith(CLUSTER_SCHEME_SUFFIX):
        return url, False
    base = scheme[: -len(CLUSTER_SCHEME_SUFFIX)]
    if base not in _PLAIN_SCHEMES:
        raise ValueError(
            f"unsupported Redis Cluster URL {url!r}: use redis+cluster://host:port "
            f"or rediss+cluster://host:port"
        )
    return urlunsplit(parts._replace(scheme=_PLAIN_SCHEMES[base])), True


def pop_cluster_option(options: dict[str, Any]) -> bool:
    """Remove the cluster switches from the client options; True if one is on."""
    enabled = False
    for name in CLUSTER_OPTION_NAMES:
        value = options.pop(name, False)
        if isinstance(value, str):
            value = value.strip().lower() in ("1", "true", "yes", "on")
        enabled = enabled or bool(value)
    return enabled


def connect_cluster(url: str, is_servant: bool, options: dict[str, Any]) -> RedisCluster:
    """A cluster client; a servant reads plain keys from replicas when there are any."""
    options = dict(options)
    if is_servant:
        options.setdefault("load_balancing_strategy", LoadBalancingStrategy.ROUND_ROBIN_REPLICAS)
    return RedisCluster.from_url(url, **options)


def slot_of(key: str) -> int:
    """The cluster slot of ``key`` (its ``{...}`` hash tag decides)."""
    return key_slot(key.encode())


def check_single_slot(keys_: list[str]) -> None:
    """Raise if ``keys_`` span several slots: a commit is one script on one node."""
    slots = {slot_of(k): k for k in keys_}
    if len(slots) > 1:
        listed = ", ".join(f"{k} (slot {s})" for s, k in sorted(slots.items()))
        raise ValueError(
            f"a commit must stay within one Redis Cluster slot, but it touches {listed}; "
            f"every table of a transaction must belong to the same system cluster "
            f"(the {{CLU<id>}} hash tag of its keys)"
        )


async def server_versions(r: aioredis.Redis | RedisCluster) -> dict[str, str]:
    """``redis_version`` of every server behind ``r`` (every primary of a cluster)."""
    if isinstance(r, RedisCluster):
        infos = await r.info("server", target_nodes=RedisCluster.PRIMARIES)
        if "redis_version" in infos:  # a single primary answers without the node map
            return {"cluster": str(infos["redis_version"])}
        return {node: str(info.get("redis_version", "0.0")) for node, info in infos.items()}
    info = await r.info("server")
    return {"server": str(info.get("redis_version", "0.0"))}
