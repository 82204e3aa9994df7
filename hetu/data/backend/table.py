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

    def __post_init__(self) -> None:
        # a reference is a dict key on every row a session touches: hash it once
        object.__setattr__(self, "_hash", hash((self.comp_cls, self.instance_name, self.cluster_id)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self):
        # rebuilt from its fields: the cached hash of a class differs between processes
        return (type(self), (self.comp_cls, self.instance_name, self.cluster_id))

    @property
    def comp_name(self) -> str:
        return self.comp_cls.name_

    def is_same_txn_group(self, other: TableReference) -> bool:
        return self.instance_name == other.instance_name and self.cluster_id == other.cluster_id

    def __repr__(self) -> str:
        return f"<Table {self.instance_name}:{self.comp_name}@{self.cluster_id}>"


class Table:
    """A table bound to the backend that stores it."""

    def __init__(self, ref: TableReference, backend) -> None:
        self.ref = ref
        self.backend = backend

    @property
    def comp_cls(self) -> type[BaseComponent]:
        return self.ref.comp_cls

    def session(self, only_master: bool = False):
        """A new transaction on this table's instance and cluster."""
        return self.backend.session(self.ref.instance_name, self.ref.cluster_id, only_master)

    def __repr__(self) -> str:
        return f"<Table {self.ref.instance_name}:{self.ref.comp_name}@{self.ref.cluster_id}>"
