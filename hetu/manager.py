"""The tables one instance of a namespace serves: one per component, tagged by cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .data.backend.maintenance import prepare_tables
from .data.backend.table import Table, TableReference
from .system.definer import SystemClusters

if TYPE_CHECKING:
    from .data.backend import Backend
    from .data.component import BaseComponent


class ComponentTableManager:
    """Maps every component of ``namespace``'s clusters to its table in ``instance``.

    ``backends`` maps backend names (``BACKENDS`` keys, plus ``"default"``) to
    :class:`~hetu.data.backend.Backend` objects.
    """

    def __init__(self, namespace: str, instance: str, backends: dict[str, Backend]) -> None:
        self.namespace = namespace
        self.instance = instance
        self.backends = backends
        self.tables: dict[type[BaseComponent], Table] = {}
        # per system: its tables and repository keys, worked out once (system/caller.py)
        self.call_plans: dict = {}
        for comp, cluster_id in SystemClusters().get_components(namespace).items():
            backend = backends.get(comp.backend_)
            if backend is None:
                raise ValueError(
                    f"component {comp.name_} uses backend {comp.backend_!r}, which is not "
                    f"configured (BACKENDS has: {', '.join(backends)})"
                )
            self.tables[comp] = Table(TableReference(comp, instance, cluster_id), backend)

    def get_table(self, comp: type[BaseComponent] | str) -> Table | None:
        if isinstance(comp, str):
            for cls, table in self.tables.items():
                if cls.name_ == comp:
                    return table
            return None
        return self.tables.get(comp)

    async def create_or_check_tables(self) -> None:
        """Create missing tables; raise SchemaMismatch (naming ``hetu upgrade``) otherwise."""
        by_backend: dict[int, list] = {}
        for table in self.tables.values():
            by_backend.setdefault(id(table.backend), [table.backend, []])[1].append(table.ref)
        for backend, refs in by_backend.values():
            await prepare_tables(backend, refs)
