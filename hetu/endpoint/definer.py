"""``define_endpoint``: a raw RPC entry point (no transaction of its own)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..common.permission import Permission
from ..common.registry import Registry
from .guard import collect_guards, mark_defined

ENDPOINT_NAME_MAX_LEN = 32


@dataclass
class EndpointDefine:
    """A defined endpoint: its function, permission, argument counts and guards."""
    func: Callable
    permission: Permission | None
    arg_count: int = -1
    defaults_count: int = -1
    guards: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.arg_count < 0:
            self.arg_count = self.func.__code__.co_argcount
        if self.defaults_count < 0:
            self.defaults_count = len(self.func.__defaults__ or ())

    @property
    def name(self) -> str:
        return self.func.__name__

    @property
    def min_args(self) -> int:
        """Client arguments required (``ctx`` not counted)."""
        return self.arg_count - self.defaults_count - 1

    @property
    def max_args(self) -> int:
        return self.arg_count - 1


def check_callable_definition(kind: str, func: Any, permission: Permission | None) -> None:
    """Checks shared by systems and endpoints, in the reference's order."""
    if not callable(func) or not hasattr(func, "__code__"):
        raise TypeError(f"{kind} must be a plain `async def` function, got {func!r}")
    params = list(inspect.signature(func).parameters)
    if not params or params[0] != "ctx":
        raise AssertionError(
            f"{kind} {func.__name__}: the first parameter must be named ctx, got {params}"
        )
    if permission in (Permission.OWNER, Permission.RLS):
        raise AssertionError(
            f"{kind} {func.__name__}: permission OWNER/RLS applies to component rows, not to "
            f"calls; use EVERYBODY, USER, ADMIN or None"
        )


def check_name_and_coroutine(kind: str, func: Any) -> None:
    """Checks on a system or endpoint function: its name fits the wire limit and it is ``async def``."""
    if len(func.__name__) > ENDPOINT_NAME_MAX_LEN:
        raise AssertionError(
            f"{kind} name {func.__name__!r} is too long: at most {ENDPOINT_NAME_MAX_LEN} characters"
        )
    if not inspect.iscoroutinefunction(func):
        raise AssertionError(f"{kind} {func.__name__} must be an async function (`async def ...`)")


class EndpointDefines(Registry):
    """Registry of endpoints: namespace -> name -> :class:`EndpointDefine`.

    One process-wide instance (``EndpointDefines()``); ``clear()`` forgets every endpoint.
    """

    def _create_tables(self) -> None:
        self._endpoint_map: dict[str, dict[str, EndpointDefine]] = {}
        self._global_endpoint_map: dict[str, EndpointDefine] = {}

    def add(self, namespace: str, define: EndpointDefine, force: bool = False) -> None:
        names = self._endpoint_map.setdefault(namespace, {})
        if define.name in names and not force:
            raise AssertionError(
                f"Endpoint {define.name} is already defined in namespace {namespace!r}; "
                f"pass force=True to replace it"
            )
        names[define.name] = define
        if namespace == "global":
            self._global_endpoint_map[define.name] = define

    def get_endpoint(self, name: str, namespace: str) -> EndpointDefine | None:
        """The endpoint ``name`` served in ``namespace``; ``global`` ones are reachable too."""
        found = self._endpoint_map.get(namespace, {}).get(name)
        if found is None:
            found = self._global_endpoint_map.get(name)
        return found

    def get_endpoints(self, namespace: str) -> dict[str, EndpointDefine]:
        merged = dict(self._global_endpoint_map)
        merged.update(self._endpoint_map.get(namespace, {}))
        return merged

    def clear(self) -> None:
        """Forget every endpoint (the engine defines none of its own)."""
        self._create_tables()


def define_endpoint(namespace: str = "global", force: bool = False, permission: Permission | None = Permission.USER):
    """Declare an RPC entry point that runs outside any transaction.

    Use it for logins, proxies to other services, or to compose several system calls
    with ``ctx.systems.call``. Endpoints in ``"global"`` are served in every namespace::

        @hetu.define_endpoint(permission=hetu.Permission.EVERYBODY)
        async def login(ctx, token: str):
            user_id = await verify(token)
            await hetu.elevate(ctx, user_id)
            return hetu.ResponseToClient({"id": user_id})
    """

    def wrap(func: Callable) -> Callable:
        check_callable_definition("Endpoint", func, permission)
        check_name_and_coroutine("Endpoint", func)
        define = EndpointDefine(func, permission, guards=collect_guards(func))
        EndpointDefines().add(namespace, define, force)
        return mark_defined(func)

    return wrap
