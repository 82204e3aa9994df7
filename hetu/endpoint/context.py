"""The context every endpoint and system receives as ``ctx``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Context:
    """One connection's state, shared by every call it makes.

    ``caller`` is the logged-in user id (0 = anonymous, set by :func:`hetu.elevate`);
    ``group`` starting with ``"admin"`` makes the connection an admin; ``user_data`` is a
    free per-connection dict (not persisted).
    """

    caller: int
    connection_id: int
    address: str
    group: str
    user_data: dict
    timestamp: float
    request: Any
    systems: Any
    guard_state: dict = field(default_factory=dict)
    client_limits: list = field(default_factory=list)
    server_limits: list = field(default_factory=list)
    max_row_sub: int = 0
    max_index_sub: int = 0
    # the server's ENDPOINT_CALL_IDLE_TIMEOUT (a login idle this long may be taken over)
    # and MAX_ANONYMOUS_CONNECTION_BY_IP (0: no limit), set when the connection opens
    idle_timeout: float = 120.0
    max_anonymous_by_ip: int = 0

    def __str__(self) -> str:
        return f"[{self.connection_id}|{self.address}|{self.caller}]"

    def is_admin(self) -> bool:
        return str(self.group).startswith("admin")

    def configure(self, client_limits: list, server_limits: list, max_row_sub: int, max_index_sub: int) -> None:
        self.client_limits = client_limits
        self.server_limits = server_limits
        self.max_row_sub = max_row_sub
        self.max_index_sub = max_index_sub

    def rls_check(self, component: Any, row: Any) -> bool:
        """May this connection read ``row`` of ``component`` (OWNER / RLS rules)?"""
        if not component.is_rls() or self.is_admin():
            return True
        op, comp_attr, ctx_attr = component.rls_compare_
        b = getattr(self, ctx_attr) if hasattr(self, ctx_attr) else self.user_data.get(ctx_attr, math.nan)
        if isinstance(row, dict):
            a = row.get(comp_attr, math.nan)
        else:
            try:
                a = row[comp_attr]
            except (KeyError, ValueError, IndexError):
                a = math.nan
        if hasattr(a, "item"):
            a = a.item()
        try:
            a = type(b)(a)
        except (TypeError, ValueError):
            return False
        try:
            return bool(op(a, b))
        except TypeError:
            return False


EndpointContext = Context
