"""What a probe of a read replica says, and the health state machine judging it.

Pure logic, no I/O: :mod:`.replica_monitor` probes the servers and feeds the answers
in. A replica is *usable* only while it follows the master (``master_link_status`` up,
no sync or load in progress) and is not far behind it. Each time it becomes usable the
health's ``epoch`` grows, so whoever read through it knows that changes may have been
missed meanwhile (see :meth:`hetu.server.broker.SubscriptionBroker.follow_replicas`)::

    health = ReplicaHealth("redis://10.0.0.2:6379/0")
    health.state                      # ReplicaState.UNKNOWN: no reads yet
    problem = health.problem(status, lag_floor=None)
    if problem is None and not health.broke_continuity(status):
        ...                           # still the same healthy replica
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicationStatus:
    """One probe's view of a server's replication (``INFO`` on Redis).

    ``server_id`` changes when the server restarts (Redis: ``run_id``); ``link_id``
    changes when a replica reconnects to its master (Redis: the id of the master's
    client connection), so a resynchronisation that fits between two probes is still
    seen; ``replid`` and ``offset`` place the server in the master's replication stream.
    """

    server_id: str
    is_replica: bool
    link_up: bool
    syncing: bool  # a sync or a dataset load is in progress
    replid: str
    offset: int
    link_id: str | None = None

    def unfollowing_reason(self) -> str | None:
        """Why this server is not a replica following its master, or None."""
        if not self.is_replica:
            return "it is not a replica any more (REPLICAOF NO ONE?)"
        if self.syncing:
            return "a sync with the master or a dataset load is in progress"
        if not self.link_up:
            return "its link to the master is down"
        return None


class ReplicaState(enum.Enum):
    """Where a read replica stands; only ``USABLE`` serves reads."""

    UNKNOWN = "unknown"  # not probed yet
    SYNCING = "syncing"  # reachable, but has not completed a sync since we know it
    USABLE = "usable"
    UNUSABLE = "unusable"  # was usable; now unreachable, detached, resyncing or lagging


class ReplicaHealth:
    """The health of one read replica, as judged from successive probes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = ReplicaState.UNKNOWN
        self.reason = "not probed yet"
        self.epoch = 0  # grows each time the replica becomes usable
        self._known: ReplicationStatus | None = None  # the last status seen while usable

    @property
    def usable(self) -> bool:
        return self.state is ReplicaState.USABLE

    def problem(self, status: ReplicationStatus, master: ReplicationStatus | None,
                lag_floor: int | None) -> str | None:
        """Why ``status`` makes the replica unfit to read from, or None.

        ``master`` is the master's status of the same round (None when it could not be
        probed: then only the replica's own view counts); ``lag_floor`` is the master's
        offset ``max_lag`` seconds ago: a replica below it is lagging.
        """
        reason = status.unfollowing_reason()
        if reason is not None:
            return reason
        if master is not None and status.replid != master.replid:
            return "it follows another replication history than the master's (a resync is due)"
        if lag_floor is not None and status.offset < lag_floor:
            return f"it lags: offset {status.offset}, the master had {lag_floor} a while ago"
        return None

    def broke_continuity(self, status: ReplicationStatus) -> str | None:
        """How the replica's stream broke since the last usable probe (a restart, a
        reconnection to the master, a new replication id, an offset going back), or None."""
        known = self._known
        if known is None:
            return None
        if status.server_id != known.server_id:
            return "it restarted"
        if status.link_id is not None and known.link_id is not None and status.link_id != known.link_id:
            return "it reconnected to the master"
        if status.replid != known.replid:
            return "its replication id changed"
        if status.offset < known.offset:
            return "its replication offset went back"
        return None

    def confirm(self, status: ReplicationStatus) -> None:
        """Remember ``status`` of a probe that found the replica usable."""
        self._known = status

    def move(self, state: ReplicaState, reason: str) -> bool:
        """Enter ``state``; True if that is a change (the caller logs and tells)."""
        if state is self.state:
            self.reason = reason
            return False
        if state is ReplicaState.USABLE:
            self.epoch += 1
        else:
            self._known = None
        self.state, self.reason = state, reason
        return True

    def fault_state(self) -> ReplicaState:
        """The state a problem puts the replica in: it never was usable, or it was."""
        return ReplicaState.SYNCING if self.epoch == 0 else ReplicaState.UNUSABLE
