"""Guards: checks that run before an endpoint body and may reject the call.

Place guard decorators *below* ``@define_system`` / ``@define_endpoint``::

    @hetu.define_system(namespace="Game", components=(Gold,), permission=hetu.Permission.USER)
    @hetu.rate_limit(times=5, per=1.0)
    async def buy(ctx, item_id: int): ...

A rejected call costs no transaction and keeps the connection: the client receives
``["rej", name, code]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

GUARDS_ATTR = "__hetu_guards__"
DEFINED_ATTR = "__hetu_defined__"


class ClientReject(Exception):
    """Raised by a guard to refuse a call; ``code`` goes to the client, ``reason`` to logs."""

    def __init__(self, code: str = "REJECTED", reason: str | None = None) -> None:
        super().__init__(reason or code)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return self.reason or self.code


def _attach(func: Any, check: Callable, name: str) -> Any:
    if getattr(func, DEFINED_ATTR, False):
        raise TypeError(
            f"@{name} must be placed below @define_system/@define_endpoint "
            f"(decorators apply bottom-up, so the guard has to see the plain function)"
        )
    guards = list(getattr(func, GUARDS_ATTR, []))
    guards.insert(0, check)  # decorators apply bottom-up: keep top-to-bottom order
    setattr(func, GUARDS_ATTR, guards)
    return func


def guard(check: Callable) -> Callable[[Any], Any]:
    """Run ``check(ctx, *args)`` (sync or async) before the body; it rejects by raising
    :class:`ClientReject`."""
    return lambda func: _attach(func, check, "guard")


def rate_limit(times: int, per: float) -> Callable[[Any], Any]:
    """Allow ``times`` calls per ``per`` seconds per connection; more get ``RATE_LIMITED``.

    A fixed window: a rejected call restarts the window, so a client that keeps
    hammering stays locked out until it is quiet for ``per`` seconds.
    """
    if times < 1 or per <= 0:
        raise ValueError("rate_limit needs times >= 1 and per > 0")

    def decorate(func: Any) -> Any:
        key = f"ratelimit:{id(func)}:{times}:{per}"

        def check(ctx: Any, *args: Any) -> None:
            now = time.time()
            state = ctx.guard_state.get(key)
            if state is None or now - state[0] > per:
                ctx.guard_state[key] = [now, 1]
                return
            state[1] += 1
            if state[1] > times:
                state[0] = now
                raise ClientReject("RATE_LIMITED", f"more than {times} calls in {per}s")

        return _attach(func, check, "rate_limit")

    return decorate


def collect_guards(func: Any) -> list[Callable]:
    """The guards attached to ``func``, in the order they run (top to bottom)."""
    return list(getattr(func, GUARDS_ATTR, []))


def mark_defined(obj: Any) -> Any:
    """Mark ``obj`` as a defined system or endpoint, so a guard placed above it is refused."""
    setattr(obj, DEFINED_ATTR, True)
    return obj
