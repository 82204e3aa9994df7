"""Addressing tables: a component stored for one instance and one system cluster."""

from __future__ import annotations

from dataclasses import dataclass

from ..component import BaseComponent


@dataclass(frozen=True)
class TableReference:
    """One physical table: ``comp_cls`` rows of ``instance_name`` in ``cluster_id``."""

    comp_cls: type[BaseComponent]
    instance_name: str
    cluster_id: int

    @property
    def comp_name(self) -> str:
        return self.comp_cls.name_

    def is_same_txn_group(self, other: TableReference) -> bool:
        return self.instance_name == other.instance_name and self.cluster_id == other.cluster_id

    def __repr__(self) -> str:
        return f"<Table {self.instance_name}:{self.comp_name}@{self.cluster_id}>"
