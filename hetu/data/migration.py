"""Schema migrations: moving stored rows to a changed component definition.

``hetu upgrade`` compares every table's stored schema (its JSON and md5) and cluster id
with the code. For a changed schema it uses migration scripts kept under
``<app dir>/maint/migration/``, named ``<Component>_v<old md5>_to_v<new md5>.py``; a
missing script is generated from the default below, so the operator can read (and edit)
exactly what will happen. A script defines::

    DOWN_COMPONENT_MODEL, TARGET_COMPONENT_MODEL   # the stored and the new component
    def prepare() -> str: ...    # "skip" | "ok" | "unsafe" (unsafe needs --drop-data)
    def upgrade(rows: np.recarray) -> np.recarray: ...   # old rows -> new rows

Scripts chain: from the stored version, each script leads to the next version until the
code's version is reached.

Moving a table works on every backend the same way: read all rows, convert them, check
the unique fields of the result, save a backup (``maint/backup/*.npy``), drop the old
table, create the new one (under the new cluster id when it changed) and insert the rows
- which also builds every index of the new definition.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from .backend import Backend
from .backend.base import TableMeta, TableStatus, TableWrites
from .backend.bounds import normalize_bounds
from .backend.errors import RaceCondition
from .backend.table import TableReference
from .component import BaseComponent

logger = logging.getLogger("HeTu.root")

SCRIPT_DIR = Path("maint") / "migration"
BACKUP_DIR = Path("maint") / "backup"
INSERT_BATCH = 500
PROGRESS_SECONDS = 2.0  # how often a long migration logs its progress

SCRIPT_TEMPLATE = '''"""Migration of {name}: schema v{old} -> v{new}.

Written by `hetu upgrade`, which runs it. Edit it to migrate differently, e.g. fill a
new column from old ones in upgrade() and return "ok" from prepare().
"""

import numpy as np

from hetu.data.component import BaseComponent
from hetu.data.migration import default_prepare, default_upgrade

DOWN_JSON = {down_json!r}
TARGET_JSON = {target_json!r}

DOWN_COMPONENT_MODEL = BaseComponent.load_json(DOWN_JSON)
TARGET_COMPONENT_MODEL = BaseComponent.load_json(TARGET_JSON)


def prepare() -> str:
    """"skip" (nothing changes), "ok" (no data lost) or "unsafe" (data would be lost)."""
    return default_prepare(DOWN_COMPONENT_MODEL, TARGET_COMPONENT_MODEL)


def upgrade(rows: np.recarray) -> np.recarray:
    """The stored rows (DOWN dtype) as rows of TARGET_COMPONENT_MODEL."""
    return default_upgrade(rows, TARGET_COMPONENT_MODEL)
'''


class MigrationError(RuntimeError):
    """A migration cannot be done as asked (nothing was changed)."""


# -- the default migration -----------------------------------------------------------


def schema_changes(down: type[BaseComponent], target: type[BaseComponent]) -> tuple[list[str], list[str]]:
    """(data-losing changes, safe changes) between two definitions, in words."""
    lossy, safe = [], []
    old, new = down.dtype_map_, target.dtype_map_
    for name in old:
        if name not in new:
            lossy.append(f"column {name} is removed: its data would be dropped")
        elif old[name] != new[name]:
            if np.can_cast(old[name], new[name], casting="safe"):
                safe.append(f"column {name} changes type {old[name].str} -> {new[name].str} (lossless)")
            else:
                lossy.append(f"column {name} changes type {old[name].str} -> {new[name].str}, which may lose data")
    for name in new:
        if name not in old:
            unique = " (unique: fails when more than one row exists)" if name in target.uniques_ else ""
            safe.append(f"column {name} is added, filled with its default{unique}")
    if set(down.indexes_) != set(target.indexes_) or down.uniques_ != target.uniques_:
        safe.append("indexes change: they are rebuilt")
    return lossy, safe


def default_prepare(down: type[BaseComponent], target: type[BaseComponent]) -> str:
    """The verdict of the default migration; logs every change it finds."""
    if down.json_ == target.json_ or target.same_schema(down.json_):
        return "skip"
    lossy, safe = schema_changes(down, target)
    for text in safe:
        logger.info("%s: %s", target.name_, text)
    for text in lossy:
        logger.warning("%s: %s", target.name_, text)
    return "unsafe" if lossy else "ok"


def default_upgrade(rows: np.recarray, target: type[BaseComponent]) -> np.recarray:
    """Copy the common columns (NumPy casts them), new columns get their defaults."""
    out = np.recarray(len(rows), dtype=target.dtypes)
    out[:] = target.default_row_[0]
    for name in rows.dtype.names:
        if name in target.dtype_map_:
            out[name] = rows[name]
    return out


# -- scripts -------------------------------------------------------------------------


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def script_path(app_dir: Path, name: str, old: str, new: str) -> Path:
    """Where the migration script of component ``name`` from version ``old`` to ``new`` lives."""
    return app_dir / SCRIPT_DIR / f"{_file_stem(name)}_v{old}_to_v{new}.py"


def _load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"hetu_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for attr in ("prepare", "upgrade", "TARGET_COMPONENT_MODEL"):
        if not hasattr(module, attr):
            raise MigrationError(f"migration script {path} does not define {attr}")
    return module


def script_chain(app_dir: Path, meta: TableMeta, target: type[BaseComponent]) -> list[ModuleType]:
    """The scripts from the stored version to ``target``'s; the last one is written
    from the default template when no script reaches the target."""
    goal = target.schema_version()
    chain: list[ModuleType] = []
    version, down_json, seen = meta.version, meta.json, set()
    folder = app_dir / SCRIPT_DIR
    while version != goal:
        seen.add(version)
        found = sorted(folder.glob(f"{_file_stem(target.name_)}_v{version}_to_v*.py")) if folder.exists() else []
        found = [p for p in found if p.stem.rsplit("_to_v", 1)[1] not in seen]
        if not found:
            path = script_path(app_dir, target.name_, version, goal)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(SCRIPT_TEMPLATE.format(
                name=target.name_, old=version, new=goal, down_json=down_json, target_json=target.json_))
            logger.info("wrote migration script %s", path)
            found = [path]
        module = _load_script(found[0])
        chain.append(module)
        version = found[0].stem.rsplit("_to_v", 1)[1]
        down_json = module.TARGET_COMPONENT_MODEL.json_
    return chain


def chain_verdict(chain: list[ModuleType]) -> str:
    """What a chain of migration scripts says as a whole: ``"unsafe"`` if any script does,
    else ``"ok"`` if any does, else ``"skip"``."""
    verdicts = [module.prepare() for module in chain]
    for verdict in verdicts:
        if verdict not in ("skip", "ok", "unsafe"):
            raise MigrationError(f"prepare() returned {verdict!r}; expected 'skip', 'ok' or 'unsafe'")
    if "unsafe" in verdicts:
        return "unsafe"
    return "ok" if "ok" in verdicts else "skip"


# -- moving a table ---------------------------------------------------------------------


@dataclass
class TableReport:
    """The outcome of ``hetu upgrade`` for one table: its action (created, ok, migrated,
    recreated, refused), the rows moved and notes for the user."""
    name: str
    action: str
    rows: int = 0
    notes: list[str] = field(default_factory=list)


async def read_all(backend: Backend, ref: TableReference) -> np.recarray:
    """Every row of ``ref``'s table, in id order."""
    comp = ref.comp_cls
    bounds = normalize_bounds(comp, "id", -(2**63), 2**63 - 1)
    return await backend.master.range(ref, "id", bounds, -1, False)


def check_uniques(rows: np.recarray, target: type[BaseComponent]) -> None:
    """Raise :class:`MigrationError` when migrated ``rows`` hold one value twice in a unique field."""
    for name in sorted(target.uniques_):
        values, counts = np.unique(rows[name], return_counts=True)
        if len(values) and counts.max() > 1:
            dup = values[counts.argmax()]
            raise MigrationError(
                f"{target.name_}.{name} is unique, but {counts.max()} migrated rows hold {dup!r}; "
                f"edit the migration script to give them distinct values"
            )


async def move_table(backend: Backend, old_ref: TableReference, new_ref: TableReference,
                     rows: np.recarray, backup_dir: Path) -> None:
    """Replace ``old_ref``'s table by ``new_ref``'s holding ``rows``."""
    maint = backend.maintenance()
    if len(rows):
        backup_dir.mkdir(parents=True, exist_ok=True)
        backup = backup_dir / f"{new_ref.instance_name}_{_file_stem(new_ref.comp_name)}_{int(time.time())}.npy"
        np.save(backup, np.asarray(rows), allow_pickle=False)
        logger.info("saved %d rows of %s to %s before moving them", len(rows), old_ref.comp_name, backup)
    await maint.drop_table(old_ref)
    await maint.create_table(new_ref)
    last_report = time.monotonic()
    for start in range(0, len(rows), INSERT_BATCH):
        end = min(start + INSERT_BATCH, len(rows))
        await backend.master.commit([TableWrites(new_ref, inserts=[rows[i] for i in range(start, end)])])
        if time.monotonic() - last_report > PROGRESS_SECONDS or end == len(rows) > INSERT_BATCH:
            last_report = time.monotonic()
            logger.info("%s: %d of %d rows written (%d%%)", new_ref.comp_name, end, len(rows), 100 * end // len(rows))


async def upgrade_table(backend: Backend, ref: TableReference, app_dir: Path, drop_data: bool) -> TableReport:
    """Create, check or migrate one table."""
    maint = backend.maintenance()
    comp = ref.comp_cls
    status, meta = await maint.check_table(ref)
    if status == TableStatus.NOT_EXISTS:
        try:
            await maint.create_table(ref)
        except RaceCondition:
            return TableReport(comp.name_, "ok")
        return TableReport(comp.name_, "created")
    if status == TableStatus.OK:
        return TableReport(comp.name_, "ok")
    assert meta is not None
    notes = []
    if meta.cluster_id != ref.cluster_id:
        notes.append(f"cluster id {meta.cluster_id} -> {ref.cluster_id}")
    old_cls = BaseComponent.load_json(meta.json)
    old_ref = TableReference(old_cls, ref.instance_name, meta.cluster_id)
    if comp.volatile_:  # nothing worth keeping: start empty under the new definition
        await maint.drop_table(old_ref)
        await maint.create_table(ref)
        return TableReport(comp.name_, "recreated", notes=notes)
    chain = script_chain(app_dir, meta, comp) if meta.version != comp.schema_version() else []
    verdict = chain_verdict(chain)
    if chain:
        lossy, safe = schema_changes(old_cls, comp)
        notes += lossy + safe
    if verdict == "unsafe" and not drop_data:
        return TableReport(comp.name_, "refused", notes=notes)
    rows = await read_all(backend, old_ref)
    for module in chain:
        if module.prepare() != "skip":
            rows = module.upgrade(rows)
    if rows.dtype != comp.dtypes:
        rows = default_upgrade(rows, comp)
    check_uniques(rows, comp)
    await move_table(backend, old_ref, ref, rows, app_dir / BACKUP_DIR)
    return TableReport(comp.name_, "migrated", len(rows), notes)
