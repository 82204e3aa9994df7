"""``SessionRepository``: reading and writing one component inside a transaction.

This is what ``ctx.repo[Component]`` is inside a system.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .bounds import normalize_bounds
from .errors import RaceCondition, UniqueViolation
from .idmap import RowState, changed_fields, copy_row, row_bytes, row_dtype
from .table import TableReference

if TYPE_CHECKING:
    from .session import Session


def _single_kwarg(kwargs: dict) -> tuple[str, Any]:
    if len(kwargs) != 1:
        raise AssertionError(
            f"Only one field can be queried, got {len(kwargs)}: {', '.join(kwargs) or 'none'}"
        )
    return next(iter(kwargs.items()))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class SessionRepository:
    """CRUD on one component's table within a :class:`Session`.

    Rows returned are copies; change them and pass them to :meth:`update`.
    """

    def __init__(self, session: Session, ref: TableReference) -> None:
        self.session = session
        self.ref = ref
        self.comp = ref.comp_cls

    def __repr__(self) -> str:
        return f"<SessionRepository {self.ref!r}>"

    # -- reads ---------------------------------------------------------------------

    def _check_index(self, index: str) -> None:
        if index not in self.comp.indexes_:
            raise ValueError(
                f"{self.comp.name_} has no index named {index!r}; indexed fields: "
                f"{', '.join(sorted(self.comp.indexes_))}"
            )

    def _adopt(self, row: np.record) -> np.record | None:
        """Put a row read from the database into the session; return the row to hand out.

        ``row`` is fresh from the decoder and no one else's, so when the session did not
        have it yet it is handed out itself: ``add_clean`` keeps its own copy."""
        idmap = self.session.idmap
        entry = idmap.lookup(self.ref, row["id"])
        if entry is None:
            idmap.add_clean(self.ref, row)
            return row
        if entry.state == RowState.DELETE:
            return None
        return copy_row(entry.row)

    async def get_by_id(self, row_id: int) -> np.record | None:
        idmap = self.session.idmap
        row_id = int(row_id)
        entry = idmap.lookup(self.ref, row_id)
        if entry is not None:
            return None if entry.state == RowState.DELETE else copy_row(entry.row)
        row = await self.session.reader.get(self.ref, row_id)
        if row is None:
            idmap.mark_absent(self.ref, "id", row_id)
            return None
        return self._adopt(row)

    async def get(self, index_name: str | None = None, query_value: Any = None, **kwargs) -> np.record | None:
        """The row whose indexed field equals the value, or None.

        ``get(id=5)``, ``get(name="ada")`` or ``get("name", "ada")``. Sees this
        session's own inserts and changes.
        """
        if index_name is None:
            index_name, query_value = _single_kwarg(kwargs)
        elif kwargs:
            raise AssertionError("Only one field can be queried.")
        self._check_index(index_name)
        if index_name == "id":
            return await self.get_by_id(query_value)
        idmap = self.session.idmap
        value = _plain(query_value)
        local = idmap.filter(self.ref, **{index_name: value})
        if local:
            return local[0]
        bounds = normalize_bounds(self.comp, index_name, value)
        row = await self.session.reader.first(self.ref, index_name, bounds)
        if row is not None:
            if idmap.lookup(self.ref, row["id"]) is None:
                idmap.add_clean(self.ref, row)  # keeps a copy of its own: hand out this one
                return row
            # else the committed row matched, but this session changed or deleted it since
        if index_name in self.comp.uniques_:
            idmap.mark_absent(self.ref, index_name, bounds.low)
        return None

    async def range(
        self,
        index_name: str | None = None,
        _left: Any = None,
        _right: Any = None,
        limit: int = 10,
        desc: bool = False,
        **kwargs,
    ) -> np.recarray:
        """Rows whose indexed field lies in ``[left, right]``, ordered by it.

        ``range("time", 110, 115)`` or ``range(time=(110, 115))``; ``"(110"`` makes a
        bound exclusive; ``±inf`` works on numeric indexes; ``limit`` (default 10,
        negative = unlimited) and ``desc`` apply to the committed data. Rows inserted in
        this session are not matched; rows deleted in it are left out.
        """
        if index_name is None:
            index_name, pair = _single_kwarg(kwargs)
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(
                    f"range({index_name}=...) needs a (low, high) pair, got {pair!r}"
                )
            _left, _right = pair
        elif kwargs:
            raise AssertionError("Only one field can be queried.")
        self.session.idmap  # noqa: B018 - asserts the session is open
        if _left is None:
            raise ValueError("range() needs a low bound")
        bounds = normalize_bounds(self.comp, index_name, _plain(_left), _plain(_right))
        if bounds.empty or limit == 0:
            return np.recarray(0, dtype=self.comp.dtypes)
        rows = await self.session.reader.range(self.ref, index_name, bounds, limit, desc)
        kept = [r for r in (self._adopt(row) for row in rows) if r is not None]
        if not kept:
            return np.recarray(0, dtype=self.comp.dtypes)
        return np.array(kept, dtype=self.comp.dtypes).view(np.recarray)

    # -- writes ---------------------------------------------------------------------

    def _check_row(self, row: Any) -> None:
        if not isinstance(row, np.record) or row_dtype(row) != self.comp.dtypes:
            raise TypeError(
                f"expected a {self.comp.name_} row (from {self.comp.name_}.new_row() or a "
                f"query), got {type(row).__name__} with dtype {getattr(row, 'dtype', None)}"
            )

    async def _unique_check(self, row: np.record, fields: list[str], action: str) -> None:
        """Raise UniqueViolation when a unique value of ``row`` is already taken.

        A value this session saw as free (``get`` returned None) is left to the commit,
        which reports a clash as RaceCondition: someone else took it meanwhile.
        """
        idmap = self.session.idmap
        row_id = int(row["id"])
        for field in fields:
            value = _plain(row[field])
            for entry in idmap.live_rows(self.ref):
                if int(entry.row["id"]) != row_id and _plain(entry.row[field]) == value:
                    raise UniqueViolation(
                        f"{action} failed: {self.comp.name_}.{field}={value!r} violates a "
                        f"unique index (another row of this transaction has it)"
                    )
        remote = [
            (f, _plain(row[f]))
            for f in fields
            if f != "id" and not idmap.observed_absent(self.ref, f, row[f])
        ]
        if not remote:
            return
        holders = await self.session.reader.find_unique(self.ref, remote)
        for (field, value), holder in zip(remote, holders):
            if holder is None or holder == row_id:
                continue
            entry = idmap.lookup(self.ref, holder)
            if entry is not None and (
                entry.state == RowState.DELETE or _plain(entry.row[field]) != value
            ):
                continue  # this transaction frees the value (the commit re-checks)
            raise UniqueViolation(
                f"{action} failed: {self.comp.name_}.{field}={value!r} violates a unique "
                f"index (row {holder} has it)"
            )

    async def insert(self, row: np.record) -> None:
        """Add a new row (from ``Component.new_row()``) to the transaction."""
        self._check_row(row)
        if row["_version"] != 0:
            raise AssertionError("Insert row's _version must be 0 (use new_row())")
        entry = self.session.idmap.lookup(self.ref, row["id"])
        if entry is not None and entry.state != RowState.DELETE:
            raise ValueError(
                f"{self.comp.name_} row {int(row.id)} already exists in this transaction; "
                f"use update() to change it"
            )
        await self._unique_check(row, sorted(self.comp.uniques_), "Insert")
        self.session.idmap.add_insert(self.ref, row)

    async def update(self, row: np.record) -> None:
        """Write back a changed row that this transaction read (or inserted).

        Updating with no field changed does nothing.
        """
        self._check_row(row)
        entry = self.session.idmap.lookup(self.ref, row["id"])
        if entry is None or entry.state == RowState.DELETE:
            raise LookupError(
                f"Cannot update: row id {int(row.id)} not found in this transaction "
                f"(read it with get/range/upsert first) or already deleted"
            )
        if row["_version"] != entry.row["_version"]:
            raise ValueError("Cannot update _version field: it is managed by the engine")
        changed = changed_fields(row, entry.row)
        if not changed:
            return
        uniques = self.comp.uniques_
        unique_changed = [f for f in changed if f in uniques]
        if unique_changed:
            await self._unique_check(row, unique_changed, "Update")
        self.session.idmap.update(self.ref, row)

    def delete(self, row_id: int | np.integer) -> None:
        """Delete a row that this transaction read (or inserted)."""
        self.session.idmap.mark_deleted(self.ref, int(row_id))

    def upsert(self, **kwargs) -> UpsertContext:
        """Get the row with a unique value, or a new row holding it; written on exit::

            async with repo.upsert(owner=ctx.caller) as row:
                row.name = name
        """
        field, value = _single_kwarg(kwargs)
        if field not in self.comp.uniques_:
            raise AssertionError(
                f"upsert needs a unique field; {self.comp.name_}.{field} is not unique"
            )
        return UpsertContext(self, field, value)


class UpsertContext:
    """``async with repo.upsert(field=value) as row``; ``.insert`` tells which case."""

    def __init__(self, repo: SessionRepository, field: str, value: Any) -> None:
        self.repo = repo
        self.field = field
        self.value = value
        self.insert: bool = False
        self.row: np.record | None = None
        self._found: bytes | None = None  # the found row's bytes, to tell a change

    async def __aenter__(self) -> np.record:
        found = await self.repo.get(self.field, self.value)
        if found is None:
            self.insert = True
            self.row = self.repo.comp.new_row()
            self.row[self.field] = self.value
        else:
            self.insert = False
            self._found = row_bytes(found)
            self.row = found
        return self.row

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
        if self.insert:
            await self.repo.insert(self.row)
        elif row_bytes(self.row) != self._found:  # compared as bytes: a record compare
            await self.repo.update(self.row)    # goes through NumPy's dtype promotion


__all__ = ["SessionRepository", "UpsertContext", "RaceCondition", "UniqueViolation"]
