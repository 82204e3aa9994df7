"""Components: typed tables whose rows are NumPy structured records.

A component is declared as a class of annotated ``property_field`` attributes::

    @hetu.define_component(namespace="Chat", permission=hetu.Permission.EVERYBODY)
    class ChatMessage(hetu.BaseComponent):
        owner: np.int64 = hetu.property_field(0, index=True)
        text: str = hetu.property_field("", dtype="U256")

Every row also has ``id`` (int64, unique) and ``_version`` (int32, bumped by every
committed write). This module knows schemas and rows only; storage lives in
:mod:`hetu.data.backend`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import keyword
import logging
import operator
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..common.csharp_keywords import CSHARP_KEYWORDS
from ..common.permission import Permission
from ..common.registry import Registry
from ..common.snowflake_id import SnowflakeID

logger = logging.getLogger("HeTu.root")

RESERVED_FIELDS = ("id", "_version")
# Attribute names of np.record / np.recarray: a field with such a name would be hidden
# behind the NumPy attribute (``row.size`` is not the field), so it is refused.
NUMPY_ROW_ATTRIBUTES = frozenset(
    name for name in dir(np.record) + dir(np.recarray) if not name.startswith("_")
)
PYTHON_TYPE_NAMES = frozenset({"bool", "int", "float", "str"})
# The one exemption from that rule: columns of the engine's own tables that HeTu
# stores under a name NumPy shadows. They keep HeTu's name so a HeTu database (and its
# schema hash) is served as it is; code reads them by key (``row["device"]``).
# Keyed by (namespace, component, field); app components get no exemption.
BUILTIN_SHADOWED_FIELDS = frozenset({("core", "Connection", "device")})


class ComponentDefinitionError(ValueError, AssertionError):
    """A component declaration is invalid (raised when the class is defined).

    It is both a ``ValueError`` and an ``AssertionError``, so code written against the
    reference (which raised either) keeps working.
    """


@dataclass
class Property:
    """One column of a component, as produced by :func:`property_field`."""

    default: Any
    unique: bool = False
    index: bool = False
    dtype: Any = ""


def property_field(default: Any, unique: bool = False, index: bool | None = None, dtype: Any = "") -> Any:
    """Declare a component column.

    ``default`` is the value of new rows; ``unique=True`` enforces uniqueness and implies
    an index; ``index=True`` makes the column usable in ``get``/``range`` queries;
    ``dtype`` overrides the annotation (needed for strings: ``dtype="U32"``).

    >>> hp: np.int32 = property_field(100)
    """
    return Property(default, unique, unique if index is None else index, dtype)


def _fail(msg: str) -> ComponentDefinitionError:
    return ComponentDefinitionError(msg)


# ---------------------------------------------------------------------------------
# dtype and default validation
# ---------------------------------------------------------------------------------


def _resolve_annotation(cls: type, annotation: Any) -> Any:
    """Turn a (possibly string) annotation into something ``np.dtype`` accepts."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return np.dtype(annotation)
    except TypeError:
        pass
    module = sys.modules.get(cls.__module__)
    namespace = dict(vars(module)) if module else {}
    namespace.setdefault("np", np)
    try:
        return eval(annotation, namespace, dict(vars(cls)))  # noqa: S307 - annotations are code
    except Exception as exc:
        raise _fail(
            f"{cls.__name__}: cannot understand the type annotation {annotation!r} ({exc})"
        ) from None


def _normalize_dtype(where: str, spec: Any) -> np.dtype:
    try:
        dt = np.dtype(spec)
    except TypeError as exc:
        raise _fail(f"{where}: {spec!r} is not a valid dtype ({exc})") from None
    if dt.kind == "b":
        return np.dtype(np.int8)  # bools are stored as int8, like the reference
    if dt.kind in ("U", "S"):
        if dt.itemsize == 0:
            raise _fail(
                f"{where}: strings need a fixed width, e.g. dtype='U32' (characters) or "
                f"dtype='S32' (bytes)"
            )
        return dt
    if dt.kind in ("i", "u", "f"):
        return dt
    raise _fail(
        f"{where}: dtype {dt} is not supported; use a numpy int/uint/float, bool, "
        f"'U<n>' (unicode string) or 'S<n>' (bytes)"
    )


def _check_default(where: str, default: Any, dt: np.dtype) -> None:
    if default is None:
        raise _fail(f"{where}: the default must not be None (columns are never null)")
    if isinstance(default, np.generic):
        default = default.item()
    ok = True
    if dt.kind in ("i", "u"):
        if isinstance(default, (bool, int)):
            info = np.iinfo(dt)
            ok = info.min <= int(default) <= info.max
        else:
            ok = False
    elif dt.kind == "f":
        ok = isinstance(default, (bool, int, float))
    elif dt.kind == "U":
        if isinstance(default, bytes):
            default = default.decode("utf-8", errors="replace")
        ok = isinstance(default, (str, int)) and len(str(default)) <= dt.itemsize // 4
    elif dt.kind == "S":
        if isinstance(default, str):
            ok = default.isascii() and len(default) <= dt.itemsize
        else:
            ok = isinstance(default, bytes) and len(default) <= dt.itemsize
    if not ok:
        raise _fail(f"{where}: default {default!r} does not fit dtype {dt.str}")


def _check_field_name(cls_name: str, name: str, namespace: str = "") -> None:
    where = f"{cls_name}.{name}"
    if keyword.iskeyword(name) or name in PYTHON_TYPE_NAMES:
        raise _fail(f"{where}: a field may not be named after a Python keyword or type")
    if name in CSHARP_KEYWORDS:
        raise _fail(f"{where}: '{name}' is a C# keyword; the Unity client could not use it")
    if name in NUMPY_ROW_ATTRIBUTES and (namespace, cls_name, name) not in BUILTIN_SHADOWED_FIELDS:
        raise _fail(
            f"{where}: '{name}' is an attribute of NumPy rows, so row.{name} would not "
            f"reach the field; choose another name"
        )
    if name in RESERVED_FIELDS:
        raise _fail(f"{where}: '{name}' is reserved; every component has id and _version")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _collect_properties(cls: type, namespace: str = "") -> dict[str, dict[str, Any]]:
    """Validate the annotated fields of ``cls`` and return their JSON descriptions."""
    annotations = inspect.get_annotations(cls)
    props: dict[str, dict[str, Any]] = {}
    for name, annotation in annotations.items():
        prop = cls.__dict__.get(name)
        if not isinstance(prop, Property):
            raise _fail(
                f"{cls.__name__}.{name} is not a Property: declare it as "
                f"`{name}: <type> = hetu.property_field(<default>)`"
            )
        _check_field_name(cls.__name__, name, namespace)
        where = f"{cls.__name__}.{name}"
        spec = prop.dtype if (prop.dtype is not None and prop.dtype != "") else _resolve_annotation(cls, annotation)
        dt = _normalize_dtype(where, spec)
        if prop.unique and prop.index is False:
            logger.warning("%s: unique=True always builds an index; index=False is ignored", where)
        _check_default(where, prop.default, dt)
        props[name] = {
            "default": _json_default(prop.default),
            "unique": bool(prop.unique),
            "index": bool(prop.unique or prop.index),
            "dtype": dt.str,
        }
        delattr(cls, name)
    for name, value in list(cls.__dict__.items()):
        if isinstance(value, Property) and name not in annotations:
            raise _fail(
                f"{cls.__name__}.{name} has no type annotation: write `{name}: <type> = ...`"
            )
    if not props:
        raise _fail(f"{cls.__name__} must declare at least one property_field")
    props["id"] = {"default": 0, "unique": True, "index": True, "dtype": "<i8"}
    props["_version"] = {"default": 0, "unique": False, "index": False, "dtype": "<i4"}
    return props


def _check_permission(cls_name: str, permission: Permission, rls_compare: Any, props: dict) -> Any:
    if permission == Permission.OWNER:
        if rls_compare is not None:
            raise _fail(f"{cls_name}: OWNER components compare `owner` with the caller; "
                        f"do not pass rls_compare (use Permission.RLS for custom rules)")
        owner = props.get("owner")
        if owner is None or np.dtype(owner["dtype"]).kind not in ("i", "u", "f"):
            raise _fail(f"{cls_name}: OWNER permission needs a numeric `owner` field")
        return ["eq", "owner", "caller"]
    if permission == Permission.RLS:
        if (
            not isinstance(rls_compare, (tuple, list))
            or len(rls_compare) != 3
            or not all(isinstance(x, str) for x in rls_compare)
        ):
            raise _fail(
                f"{cls_name}: RLS permission needs rls_compare=(operator_name, "
                f"component_field, context_field), three strings, e.g. ('eq', 'owner', 'caller')"
            )
        op_name, field, _ = rls_compare
        if not callable(getattr(operator, op_name, None)):
            raise _fail(f"{cls_name}: rls_compare operator {op_name!r} is not a function "
                        f"of Python's operator module (e.g. 'eq', 'ne', 'lt', 'contains')")
        if field not in props:
            raise _fail(f"{cls_name}: rls_compare field {field!r} is not a property")
    return list(rls_compare) if rls_compare is not None else None


def make_schema_json(
    *,
    namespace: str,
    name: str,
    permission: Permission,
    rls_compare: list | None,
    volatile: bool,
    backend: str,
    properties: dict[str, dict[str, Any]],
) -> str:
    """The canonical schema JSON; its md5 is the schema version stored in table meta.

    Key order and separators follow the reference, so tables written by HeTu keep
    their version hash.
    """
    return json.dumps(
        {
            "namespace": namespace,
            "name": name,
            "permission": Permission(permission).name,
            "rls_compare": rls_compare,
            "volatile": bool(volatile),
            "readonly": False,
            "backend": backend,
            "properties": properties,
        }
    )


def _default_meaning(default: Any, dt: np.dtype) -> Any:
    """``default`` as a value of ``dt`` (``0`` and ``0.0`` on a float column are equal)."""
    try:
        return np.array(default, dtype=dt).item()
    except (TypeError, ValueError, OverflowError):
        return default  # not castable: compared as written


def schema_meaning(schema_json: str) -> dict[str, Any]:
    """What a schema JSON means, independent of how it is written.

    Two schemas with the same meaning store and serve rows the same way, so a table
    whose stored JSON differs from the definition only in spelling is not a schema
    change: dtypes are compared as NumPy dtypes (``"U32"`` = ``"<U32"``, bools are
    int8), defaults as values of their column's dtype (``0`` = ``0.0`` on a float
    column), and properties as a set (declaration order decides nothing in storage).

    >>> a = '{"properties": {"hp": {"default": 0, "dtype": "<f8"}}}'
    >>> schema_meaning(a) == schema_meaning(a.replace("0,", "0.0,"))
    True
    """
    data = json.loads(schema_json)
    props = {}
    for name, p in data.get("properties", {}).items():
        dt = np.dtype(p["dtype"])
        if dt.kind == "b":
            dt = np.dtype(np.int8)
        props[name] = (
            dt.str,
            _default_meaning(p.get("default"), dt),
            bool(p.get("unique", False)),
            bool(p.get("unique", False) or p.get("index", False)),
        )
    rls = data.get("rls_compare")
    return {
        "namespace": data.get("namespace"),
        "name": data.get("name"),
        "permission": data.get("permission"),
        "rls_compare": list(rls) if rls else None,
        "volatile": bool(data.get("volatile", False)),
        "backend": data.get("backend", "default"),
        "properties": props,
    }


# ---------------------------------------------------------------------------------
# the component base class
# ---------------------------------------------------------------------------------


class BaseComponent:
    """Base class of every component; its class attributes describe the table.

    After ``define_component`` the class carries ``name_``, ``namespace_``,
    ``permission_``, ``rls_compare_``, ``volatile_``, ``backend_``, ``properties_``
    (name-sorted ``(name, Property)`` list), ``dtypes`` (the structured dtype),
    ``default_row_``, ``uniques_``, ``indexes_`` (name -> is string index), ``json_``
    and ``master_`` (the original of a duplicate).
    """

    name_: str = ""
    namespace_: str = ""
    permission_: Permission = Permission.USER
    rls_compare_: tuple | None = None
    volatile_: bool = False
    readonly_: bool = False
    backend_: str = "default"
    properties_: list[tuple[str, Property]] = []
    dtypes: np.dtype = np.dtype([])
    default_row_: np.recarray
    prop_idx_map_: dict[str, int] = {}
    dtype_map_: dict[str, np.dtype] = {}
    uniques_: set[str] = set()
    indexes_: dict[str, bool] = {}
    json_: str = ""
    instances_: dict[str, dict[str, type[BaseComponent]]] = {}
    master_: type[BaseComponent] | None = None

    # -- schema ------------------------------------------------------------------

    @classmethod
    def load_json(cls, json_str: str, suffix: str = "") -> type[BaseComponent]:
        """Build the class from schema JSON (on ``BaseComponent``: a new class)."""
        data = json.loads(json_str)
        if suffix:
            data["name"] = f"{data['name']}:{suffix}"
        target = cls
        if cls is BaseComponent:
            target = type(data["name"].replace(":", "_"), (BaseComponent,), {})
        target._apply_schema(data)
        return target

    @classmethod
    def _apply_schema(cls, data: dict) -> None:
        cls.name_ = data["name"]
        cls.namespace_ = data["namespace"]
        cls.permission_ = Permission[data["permission"]]
        cls.volatile_ = bool(data["volatile"])
        cls.readonly_ = False
        cls.backend_ = data["backend"]
        rls = data["rls_compare"]
        cls.rls_compare_ = (getattr(operator, rls[0]), rls[1], rls[2]) if rls else None
        props = {
            name: Property(p["default"], p["unique"], p["index"], p["dtype"])
            for name, p in data["properties"].items()
        }
        cls.properties_ = sorted(props.items(), key=lambda kv: kv[0])
        cls.dtypes = np.dtype([(name, p.dtype) for name, p in cls.properties_])
        cls.prop_idx_map_ = {name: i for i, (name, _) in enumerate(cls.properties_)}
        cls.dtype_map_ = {name: np.dtype(p.dtype) for name, p in cls.properties_}
        cls.uniques_ = {name for name, p in cls.properties_ if p.unique}
        cls.indexes_ = {
            name: cls.dtype_map_[name].kind in ("U", "S")
            for name, p in cls.properties_
            if p.unique or p.index
        }
        default = np.recarray(1, dtype=cls.dtypes)
        for name, p in cls.properties_:
            default[name] = p.default
        cls.default_row_ = default
        cls.json_ = json.dumps(data)
        cls.instances_ = {}
        cls.master_ = None

    @classmethod
    def schema_version(cls) -> str:
        """md5 of the schema JSON: what table meta stores to detect schema changes."""
        return hashlib.md5(cls.json_.encode("utf-8")).hexdigest()

    @classmethod
    def same_schema(cls, stored_json: str) -> bool:
        """True when ``stored_json`` (a table's stored schema) means this definition.

        The version hash decides first; when it differs, the two JSONs are compared
        by meaning (see :func:`schema_meaning`), so ``property_field(0)`` and
        ``property_field(0.0)`` on a float column are the same schema.
        """
        if not stored_json:
            return False
        if hashlib.md5(stored_json.encode("utf-8")).hexdigest() == cls.schema_version():
            return True
        try:
            return schema_meaning(stored_json) == schema_meaning(cls.json_)
        except (ValueError, TypeError, KeyError):
            return False  # unreadable stored JSON: a change, never silently served

    @classmethod
    def is_rls(cls) -> bool:
        return cls.permission_ in (Permission.OWNER, Permission.RLS)

    @classmethod
    def str_max_len(cls, field: str) -> int:
        """Width of a string field: characters for ``U<n>``, bytes for ``S<n>``."""
        dt = cls.dtype_map_[field]
        if dt.kind == "U":
            return dt.itemsize // 4
        if dt.kind == "S":
            return dt.itemsize
        raise ValueError(f"{cls.name_}.{field} is not a string field (dtype {dt.str})")

    # -- rows --------------------------------------------------------------------

    @classmethod
    def new_row(cls, id_: int | None = None) -> np.record:
        """A new row holding the defaults, with a fresh snowflake id (or ``id_``)."""
        row = cls.default_row_[0].copy()
        row.id = SnowflakeID().next_id() if id_ is None else id_
        return row

    @classmethod
    def new_rows(cls, size: int) -> np.recarray:
        """``size`` new rows holding the defaults, each with a fresh ascending id."""
        rows = np.recarray(size, dtype=cls.dtypes)
        rows[:] = cls.default_row_[0]
        gen = SnowflakeID()
        rows.id = [gen.next_id() for _ in range(size)]
        return rows

    @classmethod
    def dict_to_struct(cls, data: dict) -> np.record:
        """A row from a dict holding every field (strings are parsed by NumPy)."""
        row = cls.new_row(id_=data["id"])
        for name, _ in cls.properties_:
            row[name] = data[name]
        return row

    @classmethod
    def struct_to_dict(cls, row: np.record) -> dict:
        """The row as a dict of Python values."""
        return dict(zip(row.dtype.names, row.item()))

    # -- copies ------------------------------------------------------------------

    @classmethod
    def duplicate(cls, namespace: str, suffix: str) -> type[BaseComponent]:
        """A copy of this component stored in its own table ``<Name>:<suffix>``."""
        if namespace == cls.namespace_ and not suffix:
            return cls
        copies = cls.instances_.setdefault(namespace, {})
        if suffix not in copies:
            copy = BaseComponent.load_json(cls.json_, suffix)
            copy.master_ = cls
            copies[suffix] = copy
        return copies[suffix]

    @classmethod
    def get_duplicates(cls, namespace: str) -> dict[str, type[BaseComponent]]:
        return cls.instances_.get(namespace, {})


# ---------------------------------------------------------------------------------
# registry and decorator
# ---------------------------------------------------------------------------------


class ComponentDefines(Registry):
    """The registry of defined components: namespace -> name -> class.

    One process-wide instance (``ComponentDefines()`` returns it). ``clear()`` empties
    it for tests, keeping the ``core`` namespace the engine itself defines.
    """

    def _create_tables(self) -> None:
        self._defs: dict[str, dict[str, type[BaseComponent]]] = {}

    def add_component(self, namespace: str, comp: type[BaseComponent], force: bool = False) -> None:
        names = self._defs.setdefault(namespace, {})
        if comp.name_ in names and not force:
            raise _fail(
                f"component {comp.name_} is already defined in namespace {namespace!r}; "
                f"pass force=True to replace it"
            )
        names[comp.name_] = comp

    def get_component(self, namespace: str, name: str) -> type[BaseComponent] | None:
        return self._defs.get(namespace, {}).get(name)

    def get_all(self, namespace: str | None = None) -> list[type[BaseComponent]]:
        if namespace is not None:
            return list(self._defs.get(namespace, {}).values())
        return [c for names in self._defs.values() for c in names.values()]

    def clear(self) -> None:
        """Forget every component except the ``core`` namespace's."""
        self._defs = {ns: v for ns, v in self._defs.items() if ns == "core"}


def define_component(
    _cls: type | None = None,
    /,
    *,
    namespace: str = "default",
    force: bool = False,
    permission: Permission = Permission.USER,
    volatile: bool = False,
    backend: str = "default",
    rls_compare: tuple[str, str, str] | None = None,
):
    """Turn a ``BaseComponent`` subclass into a component (usable bare or with args).

    * ``namespace`` - the app namespace (``"core"`` components are always loaded);
    * ``permission`` - who may read rows from a client (:class:`hetu.Permission`);
    * ``volatile`` - data may be wiped by ``hetu upgrade`` (caches, sessions);
    * ``backend`` - key of the ``BACKENDS`` config (``"default"`` = the first);
    * ``rls_compare`` - for ``Permission.RLS``: ``(operator_name, field, context_field)``,
      a row is visible when ``operator.<name>(row.field, ctx.<context_field>)`` is true;
    * ``force`` - replace an existing definition of the same name (tests, notebooks).

    Every invalid declaration raises :class:`ComponentDefinitionError` here, when the
    class is defined.
    """

    def wrap(cls: type) -> type[BaseComponent]:
        if cls.__name__ in CSHARP_KEYWORDS:
            raise _fail(f"component name {cls.__name__!r} is a C# keyword; the Unity client could not use it")
        if not (isinstance(cls, type) and issubclass(cls, BaseComponent)):
            raise _fail(f"{getattr(cls, '__name__', cls)} must subclass hetu.BaseComponent")
        props = _collect_properties(cls, namespace)
        try:
            perm = Permission(permission)
        except ValueError:
            raise _fail(f"{cls.__name__}: unknown permission {permission!r}") from None
        rls = _check_permission(cls.__name__, perm, rls_compare, props)
        schema = make_schema_json(
            namespace=namespace,
            name=cls.__name__,
            permission=perm,
            rls_compare=rls,
            volatile=volatile,
            backend=backend,
            properties=props,
        )
        cls.load_json(schema)
        ComponentDefines().add_component(namespace, cls, force)
        return cls

    if _cls is not None:
        return wrap(_cls)
    return wrap
