"""Asking a Redis server where it stands in replication: ``INFO`` and ``CLIENT LIST``.

A probe sends ``INFO server replication persistence`` and ``CLIENT LIST TYPE master``
in one write and reads from them what :class:`~..replica_health.ReplicationStatus`
needs: ``run_id`` (changes on a restart), ``role``, ``master_link_status``,
``master_sync_in_progress`` and ``loading`` / ``async_loading``, ``master_replid`` and
``master_repl_offset``, and the id of the replica's connection from its master (a new
id means the link was re-established, so a resync happened, even if it fitted between
two probes). ``CLIENT LIST`` may be denied by an ACL; the probe then goes without it.
"""

from __future__ import annotations

import asyncio

from ..replica_health import ReplicationStatus
from .pipelined import PipelinedRedis

INFO_COMMAND = ("INFO", "server", "replication", "persistence")
LINK_COMMAND = ("CLIENT", "LIST", "TYPE", "master")
REPLICA_ROLES = ("slave", "replica")


def parse_info(text: bytes | str) -> dict[str, str]:
    """The ``field:value`` lines of an ``INFO`` reply.

    >>> parse_info(b"# Replication\\r\\nrole:slave\\r\\nmaster_link_status:up\\r\\n")
    {'role': 'slave', 'master_link_status': 'up'}
    """
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    fields = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
    return fields


def master_link_id(client_list: bytes | str) -> str | None:
    """The client id of the connection from the master in a ``CLIENT LIST`` reply."""
    if isinstance(client_list, bytes):
        client_list = client_list.decode(errors="replace")
    for line in client_list.splitlines():
        for item in line.split():
            if item.startswith("id="):
                return item[3:]
    return None


def status_from_info(info: dict[str, str], link_id: str | None) -> ReplicationStatus:
    """A :class:`ReplicationStatus` from parsed ``INFO`` fields."""
    loading = info.get("loading", "0") != "0" or info.get("async_loading", "0") != "0"
    return ReplicationStatus(
        server_id=info.get("run_id", ""),
        is_replica=info.get("role") in REPLICA_ROLES,
        link_up=info.get("master_link_status") == "up",
        syncing=loading or info.get("master_sync_in_progress", "0") != "0",
        replid=info.get("master_replid", ""),
        offset=int(info.get("master_repl_offset", "0") or 0),
        link_id=link_id,
    )


async def probe(conn: PipelinedRedis, with_link: bool = True) -> ReplicationStatus:
    """Probe the server behind ``conn`` (one round trip)."""
    if not with_link:
        return status_from_info(parse_info(await conn.execute(*INFO_COMMAND, retry=True)), None)
    info, link = await asyncio.gather(conn.execute(*INFO_COMMAND, retry=True),
                                      conn.execute(*LINK_COMMAND, retry=True), return_exceptions=True)
    if isinstance(info, BaseException):
        raise info
    return status_from_info(parse_info(info), None if isinstance(link, BaseException) else master_link_id(link))
