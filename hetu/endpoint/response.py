"""What an endpoint can hand back to the client."""

from __future__ import annotations

from typing import Any


class EndpointResponse:
    """Base of the values the gateway treats specially."""


class ResponseToClient(EndpointResponse):
    """Return this from an endpoint or system to send ``message`` to the client.

    ``message`` must be msgpack-serialisable (dicts, lists, str, numbers, bytes, None).
    Any other return value reaches the client as ``"ok"``::

        return hetu.ResponseToClient({"gold": row.gold})
    """

    def __init__(self, message: Any) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"ResponseToClient({self.message!r})"


class RejectResponse(EndpointResponse):
    """A guard rejected the call: the client receives ``["rej", name, code]``."""

    def __init__(self, code: str, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"RejectResponse({self.code!r})"
