"""Sessions: one optimistic transaction over the tables of one system cluster.

::

    async with backend.session("dev", cluster_id=0) as session:
        repo = session.using(Hero)
        hero = await repo.get(name="ada")
        hero.hp -= 1
        await repo.update(hero)
    # leaving the block commits; an exception discards everything

Reads are recorded with the version read; the commit fails with
:class:`RaceCondition` if any row read or written changed meanwhile, so a committed
transaction behaves as if it ran alone.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .errors import RaceCondition
from .idmap import IdentityMap
from .repo import SessionRepository
from .table import TableReference

if TYPE_CHECKING:
    from ..component import BaseComponent
    from . import Backend


class Session:
    """One transaction; reusable: it can be entered again after commit/discard."""

    def __init__(
        self, backend: Backend, instance: str, cluster_id: int, only_master: bool = False
    ) -> None:
        self.backend = backend
        self.instance_name = instance
        self.cluster_id = cluster_id
        self.only_master = only_master
        self._idmap: IdentityMap | None = None
        self._reader = None

    # -- state ------------------------------------------------------------------------

    @property
    def idmap(self) -> IdentityMap:
        if self._idmap is None:
            raise AssertionError(
                "Session must be used in an `async with` block (it was not entered, or "
                "it was already committed or discarded)"
            )
        return self._idmap

    @property
    def reader(self):
        """The client transactional reads go to (chosen once per transaction)."""
        self.idmap  # noqa: B018 - asserts the session is open
        return self._reader

    @property
    def active(self) -> bool:
        return self._idmap is not None

    def using(self, comp: type[BaseComponent]) -> SessionRepository:
        """The repository of ``comp`` in this transaction."""
        return SessionRepository(self, TableReference(comp, self.instance_name, self.cluster_id))

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        if self._idmap is not None:
            raise AssertionError("Session is already open")
        self._idmap = IdentityMap()
        self._reader = self.backend.master if self.only_master else self.backend.master_or_servant()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if self._idmap is None:
            return  # ended early by commit() or discard()
        if exc_type is None:
            await self.commit()
        else:
            self.discard()

    async def commit(self) -> None:
        """Write everything atomically; :class:`RaceCondition` if something changed."""
        idmap = self.idmap
        try:
            if not idmap.changed:  # read only: nothing to write, nothing to check
                return
            writes = idmap.write_set()
            if any(tw.is_dirty() for tw in writes):
                await self.backend.master.commit(writes)
        finally:
            self._idmap = None

    def discard(self) -> None:
        """Forget every change; nothing is written."""
        self._idmap = None

    async def retry(self, count: int = 5) -> AsyncIterator[RetryAttempt]:
        """Attempts that re-run a block on :class:`RaceCondition`::

            async for attempt in session.retry(5):
                async with attempt:
                    ...
        """
        if count <= 0:
            raise ValueError("retry count must be positive")
        for i in range(count):
            attempt = RetryAttempt(self, last=i == count - 1)
            yield attempt
            if attempt.succeeded:
                return
            # the conflict may come from a lagging replica: read the master from now on
            self.only_master = True
            await asyncio.sleep(random.uniform(0, min(0.1 * 2**i, 2.0)))  # full jitter


class RetryAttempt:
    """One try of :meth:`Session.retry`."""

    def __init__(self, session: Session, last: bool) -> None:
        self.session = session
        self.last = last
        self.succeeded = False

    async def __aenter__(self) -> Session:
        return await self.session.__aenter__()

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.session.discard()
            return issubclass(exc_type, RaceCondition) and not self.last
        try:
            await self.session.commit()
        except RaceCondition as race:
            if self.last:
                raise RuntimeError("Exceeded maximum retry attempts") from race
            return False
        self.succeeded = True
        return False
