"""``SystemContext``: the ``ctx`` of systems (and of endpoints on a connection)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..endpoint.context import Context


@dataclass
class SystemContext(Context):
    """Adds the current transaction to :class:`hetu.EndpointContext`.

    * ``repo[Comp]`` - the repository of ``Comp`` in the running transaction;
    * ``depend["name"]`` - the declared dependencies, callable as ``(ctx, *args)``;
    * ``race_count`` - how many times this call was re-run after a conflict.
    """

    race_count: int = 0
    repo: dict = field(default_factory=dict)
    depend: dict = field(default_factory=dict)

    def _take_session(self):
        session = next(iter(self.repo.values())).session if self.repo else None
        self.repo = {}
        return session

    async def session_commit(self) -> None:
        """Commit the transaction now; code after this runs outside it (not retried).

        A conflict raises :class:`hetu.RaceCondition` and the system is re-run.
        """
        session = self._take_session()
        if session is not None and session.active:
            await session.commit()

    async def session_discard(self) -> None:
        """Drop every pending write of the transaction now."""
        session = self._take_session()
        if session is not None and session.active:
            session.discard()
