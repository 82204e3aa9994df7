"""``define_system`` and the registry of systems.

A system is an async function that runs as one transaction over the components it
declares. Systems sharing components (directly or through ``depends``) form a *cluster*:
their tables live together (one Redis Cluster hash slot), so one transaction can span
them. Clusters are computed by :meth:`SystemClusters.build_clusters`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..common.permission import Permission
from ..common.registry import Registry
from ..data.component import BaseComponent, ComponentDefines
from ..endpoint.definer import (
    EndpointDefine,
    EndpointDefines,
    check_callable_definition,
    check_name_and_coroutine,
)
from ..endpoint.guard import collect_guards, mark_defined
from .clusters import Cluster, compute_clusters

CORE_PIN_PREFIX = "__core_pin_system_"


@dataclass
class SystemDefine(EndpointDefine):
    """A defined system: its function and permission (from EndpointDefine), the components
    it declares and all it reaches through its dependencies, retries, its cluster and
    namespace."""
    components: Any = ()
    full_components: set = field(default_factory=set)
    depends: list = field(default_factory=list)
    full_depends: list = field(default_factory=list)
    max_retry: int = 9999
    cluster_id: int = -1
    on_start: bool = False
    namespace: str = "default"

    @property
    def lock_component(self) -> type[BaseComponent] | None:
        """This system's ``SystemLock`` copy among its tables, if it has call locks."""
        from .lock import SystemLock

        for comp in self.full_components:
            if comp.master_ is SystemLock and comp.name_ == f"SystemLock:{self.name}":
                return comp
        return None


def _backends_of(components) -> set[str]:
    return {c.backend_ for c in components}


class SystemClusters(Registry):
    """Registry of systems per namespace, and their clusters once built.

    One process-wide instance (``SystemClusters()``); ``clear()`` resets it for tests
    and keeps the ``global`` systems the engine defines itself.
    """

    def _create_tables(self) -> None:
        self._system_map: dict[str, dict[str, SystemDefine]] = {}
        self._global_system_map: dict[str, SystemDefine] = {}
        self._clusters: dict = {}
        self._component_map: dict = {}
        self._main_namespace: str | None = None
        self._main_system_map: dict[str, SystemDefine] = {}

    # -- registration -----------------------------------------------------------------

    def add(
        self,
        namespace: str,
        func: Callable,
        components,
        force: bool,
        permission: Permission | None,
        depends,
        max_retry: int,
        guards: list | None = None,
        on_start: bool = False,
    ) -> SystemDefine:
        names = self._system_map.setdefault(namespace, {})
        name = func.__name__
        if name in names and not force:
            raise AssertionError(
                f"System {name} is already defined in namespace {namespace!r}; pass force=True to replace it"
            )
        define = SystemDefine(
            func,
            permission,
            guards=list(guards or []),
            components=components if components is not None else (),
            depends=[d if isinstance(d, str) else d.__name__ for d in depends],
            max_retry=max_retry,
            on_start=on_start,
            namespace=namespace,
        )
        names[name] = define
        if namespace == "global":
            self._global_system_map[name] = define
        return define

    def clear(self) -> None:
        """Forget the built clusters and every system outside ``global``."""
        self._clusters = {}
        self._component_map = {}
        self._system_map = {"global": dict(self._global_system_map)}
        self._main_namespace = None
        self._main_system_map = {}

    # -- building ----------------------------------------------------------------------

    def _pin_core_components(self) -> None:
        for comp in ComponentDefines().get_all("core"):
            async def pin(ctx):  # never called: it only gives core tables a cluster
                raise RuntimeError("core pin systems are not callable")

            pin.__name__ = f"{CORE_PIN_PREFIX}{comp.__name__}__"
            self.add("global", pin, (comp,), True, None, (), 0)

    def _resolve(self, namespace: str, systems: dict[str, SystemDefine]) -> None:
        """Fill ``full_components`` / ``full_depends`` of every system of ``namespace``."""

        def base_of(owner: SystemDefine, dep: str) -> SystemDefine:
            target = systems.get(dep.partition(":")[0])
            if target is None:
                raise RuntimeError(
                    f"{owner.name}: `depends` names the system {dep.partition(':')[0]!r}, "
                    f"which does not exist"
                )
            return target

        def dependency(owner: SystemDefine, dep: str, seen: frozenset) -> tuple[set, list]:
            """Components and dependency names one ``depends`` entry brings in.

            A copy ``"base:suffix"`` brings the base's own components under the suffix;
            what the base itself depends on comes in unchanged.
            """
            target = base_of(owner, dep)
            suffix = dep.partition(":")[2]
            own = set(target.components or ())
            comps = {c.duplicate(namespace, suffix) for c in own} if suffix else own
            deps = [dep]
            if target.name not in seen:  # else: a dependency cycle
                for sub in target.depends:
                    sub_comps, sub_deps = dependency(target, sub, seen | {target.name})
                    comps |= sub_comps
                    deps.extend(sub_deps)
            return comps, deps

        def expand(sys_def: SystemDefine, seen: frozenset) -> tuple[set, list]:
            comps = set(sys_def.components or ())
            deps: list[str] = []
            for dep in sys_def.depends:
                dep_comps, dep_names = dependency(sys_def, dep, seen)
                comps |= dep_comps
                deps.extend(dep_names)
            return comps, deps

        for sys_def in systems.values():
            comps, deps = expand(sys_def, frozenset({sys_def.name}))
            sys_def.full_components = comps
            sys_def.full_depends = list(dict.fromkeys(deps))
            backends = _backends_of(comps)
            if len(backends) > 1:
                listing = ", ".join(sorted(f"{c.name_}:{c.backend_}" for c in comps))
                raise AssertionError(
                    f"System {sys_def.name} uses components of different backends: {listing}; "
                    f"one transaction runs on one backend"
                )

    def build_clusters(self, main_namespace: str) -> None:
        """Merge systems into clusters and number them, for every namespace."""
        if self._clusters:
            raise AssertionError("clusters are already built; call clear() first")
        if not self._system_map.get(main_namespace):
            known = sorted(ns for ns in self._system_map if ns != "global")
            raise AssertionError(
                f"namespace {main_namespace!r} has no system; known namespaces: {known}"
            )
        self._main_namespace = main_namespace
        self._pin_core_components()
        for namespace in list(self._system_map):
            systems = self._system_map[namespace]
            if namespace != "global":
                for name, define in self._global_system_map.items():
                    systems[name] = copy.copy(define)
            self._resolve(namespace, systems)
            clusters = compute_clusters(namespace, systems)
            self._clusters[namespace] = clusters
            comp_map = {}
            for cluster in clusters:
                for name in cluster.systems:
                    systems[name].cluster_id = cluster.id
                for comp in cluster.components:
                    comp_map[comp] = cluster.id
            self._component_map[namespace] = comp_map
        self._main_system_map = self._system_map[main_namespace]

    def build_endpoints(self) -> None:
        """Register an endpoint for every client-callable system (permission not None)."""
        for namespace, systems in self._system_map.items():
            for sys_def in systems.values():
                if sys_def.permission is None:
                    continue
                EndpointDefines().add(namespace, _system_endpoint(sys_def), force=True)

    # -- queries ------------------------------------------------------------------------

    @property
    def main_namespace(self) -> str | None:
        return self._main_namespace

    def is_built(self, namespace: str | None = None) -> bool:
        return bool(self._clusters) if namespace is None else namespace in self._clusters

    def get_system(self, name: str, namespace: str | None = None) -> SystemDefine | None:
        if namespace is None:
            return self._main_system_map.get(name)
        return self._system_map[namespace].get(name)

    def get_systems(self, namespace: str | None = None) -> dict[str, SystemDefine]:
        return self._main_system_map if namespace is None else self._system_map.get(namespace, {})

    def get_startup_systems(self, namespace: str | None = None) -> list[str]:
        return [name for name, d in self.get_systems(namespace).items() if d.on_start]

    def get_clusters(self, namespace: str) -> list[Cluster] | None:
        return self._clusters.get(namespace)

    def get_cluster(self, namespace: str, cluster_id: int) -> Cluster:
        return self._clusters[namespace][cluster_id]

    def get_components(self, namespace: str | None = None) -> dict[type[BaseComponent], int]:
        return self._component_map.get(namespace or self._main_namespace, {})

    def get_component_cluster_id(self, namespace: str, comp: type[BaseComponent]) -> int | None:
        return self._component_map.get(namespace, {}).get(comp)


def _system_endpoint(sys_def: SystemDefine) -> EndpointDefine:
    name = sys_def.name

    async def endpoint(ctx, *args):
        return await ctx.systems.call(name, *args)

    endpoint.__name__ = name
    return EndpointDefine(
        endpoint, sys_def.permission, sys_def.arg_count, sys_def.defaults_count, list(sys_def.guards)
    )


def define_system(
    components=None,
    namespace: str = "default",
    force: bool = False,
    permission: Permission | None = None,
    retry: int = 9999,
    depends=(),
    call_lock: bool = False,
    on_start: bool = False,
):
    """Declare a system: game logic that runs as one transaction.

    * ``components`` - the components the body may use through ``ctx.repo[Comp]``;
    * ``permission`` - who may call it from a client (``None``: server-side only);
    * ``retry`` - how many times a transaction conflict re-runs it (``0``: run once);
    * ``depends`` - other systems it calls with ``ctx.depend["name"](ctx, ...)`` in the
      same transaction; ``"name:suffix"`` uses a copy of that system's tables;
    * ``call_lock`` - calls may pass ``uuid=`` and run at most once per uuid;
    * ``on_start`` - run once per ``hetu start`` (implies ``call_lock``).

    ::

        @hetu.define_system(namespace="Game", components=(Gold,), permission=hetu.Permission.USER)
        async def pay(ctx, amount: int):
            gold = await ctx.repo[Gold].get(owner=ctx.caller)
            gold.value -= amount
            await ctx.repo[Gold].update(gold)
    """

    def wrap(func: Callable) -> Callable:
        check_callable_definition("System", func, permission)
        if on_start and permission not in (None, Permission.ADMIN):
            raise AssertionError(
                f"System {func.__name__}: on_start=True systems may only have permission None or ADMIN"
            )
        check_name_and_coroutine("System", func)
        comps = tuple(components) if components is not None else ()
        for comp in comps:
            if not (isinstance(comp, type) and issubclass(comp, BaseComponent) and comp.name_):
                raise TypeError(f"System {func.__name__}: {comp!r} is not a defined component")
        if len(_backends_of(comps)) > 1:
            raise AssertionError(
                f"System {func.__name__}: its components must all use the same backend, got "
                + ", ".join(f"{c.name_}:{c.backend_}" for c in comps)
            )
        if retry < 0:
            raise ValueError(f"System {func.__name__}: retry must be >= 0, got {retry}")
        guards = collect_guards(func)
        if guards and permission is None:
            raise TypeError(
                f"System {func.__name__} has guards but permission=None: guards only run for "
                f"client calls; set permission= or remove the guards"
            )
        declared: Any = comps
        if call_lock or on_start:
            from .lock import SystemLock

            lock = SystemLock.duplicate(namespace, func.__name__)
            if comps:
                lock.backend_ = comps[0].backend_
            declared = list(comps) + [lock]
        SystemClusters().add(namespace, func, declared, force, permission, depends, retry, guards, on_start)

        @functools.wraps(func)
        async def call_as_dependency(ctx, *args, **kwargs):
            from .context import SystemContext

            if not isinstance(ctx, SystemContext):
                raise AssertionError(
                    f"{func.__name__}: the first argument must be the caller's SystemContext"
                )
            target = ctx.depend.get(func.__name__)
            if target is None:
                raise RuntimeError(
                    f"{func.__name__} can only be called from a system that lists it in "
                    f"define_system(depends=...)"
                )
            if target is not func:
                raise AssertionError(f"ctx.depend[{func.__name__!r}] is a different system")
            return await func(ctx, *args, **kwargs)

        return mark_defined(call_as_dependency)

    return wrap
