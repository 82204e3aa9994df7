"""An asyncio client for servers speaking the HeTu protocol (this one, or HeTu itself).

::

    from hetu.client import HeTuClient

    client = await HeTuClient.connect("ws://127.0.0.1:2466/hetu/dev", auth_key="password123")
    await client.call("user_login", 1001, "Alice")
    messages = await client.range("ChatMessage", "id", 0, 2**63 - 1, limit=1024)
    print(messages.rows)                     # {row_id: row}, kept current by the server
    messages.on_insert(lambda row: print(row["name"], row["text"]))
    async for change in messages:            # Change(kind, id, row, old)
        ...
    await client.close()

:class:`HeTuSession` reconnects by itself, logs in again and restores subscriptions.
"""

from .connection import HeTuClient, default_pipeline
from .errors import CallFailed, CallRejected, ConnectionClosed, HandshakeRefused
from .live import Change, LiveRange, LiveRow, LiveSubscription
from .session import HeTuSession

__all__ = [
    "CallFailed",
    "CallRejected",
    "Change",
    "ConnectionClosed",
    "HandshakeRefused",
    "HeTuClient",
    "HeTuSession",
    "LiveRange",
    "LiveRow",
    "LiveSubscription",
    "default_pipeline",
]
