"""The benchmark app (namespace ``bench``): HeTu's own benchmark workloads.

Every system returns ``[ctx.race_count]`` so the runner can show how often calls were
re-run after a conflict.
"""

import numpy as np

import hetu

NS = "bench"
RETRY = 9999  # conflicts are part of the measurement: retry until the call succeeds


@hetu.define_component(namespace=NS, permission=hetu.Permission.EVERYBODY)
class IntTable(hetu.BaseComponent):
    number: np.int64 = hetu.property_field(0, unique=True)
    value: np.int64 = hetu.property_field(0)


@hetu.define_component(namespace=NS, permission=hetu.Permission.EVERYBODY)
class StrTable(hetu.BaseComponent):
    name: str = hetu.property_field("", unique=True, dtype="U16")
    value: np.int64 = hetu.property_field(0)


@hetu.define_endpoint(namespace=NS, permission=hetu.Permission.EVERYBODY)
async def hello_world(ctx):
    return hetu.ResponseToClient(["hello"])


@hetu.define_endpoint(namespace=NS, permission=hetu.Permission.EVERYBODY)
async def login(ctx, user_id: int):
    """Log the connection in as ``user_id`` (the ``just_get_user`` workload's first call)."""
    ok, reason = await hetu.elevate(ctx, user_id)
    return hetu.ResponseToClient([ok, reason])


@hetu.define_system(namespace=NS, components=(IntTable,), permission=hetu.Permission.EVERYBODY, retry=RETRY)
async def just_get(ctx, number: int):
    await ctx.repo[IntTable].get(number=number)
    return hetu.ResponseToClient([ctx.race_count])


@hetu.define_system(namespace=NS, components=(StrTable,), permission=hetu.Permission.EVERYBODY, retry=RETRY)
async def upsert(ctx, name: str):
    async with ctx.repo[StrTable].upsert(name=name) as row:
        row.value += 1
    return hetu.ResponseToClient([ctx.race_count])


@hetu.define_system(
    namespace=NS, components=(IntTable, StrTable), permission=hetu.Permission.EVERYBODY, retry=RETRY
)
async def exchange_data(ctx, a: int, b: str):
    """Move one unit of value from IntTable row ``number=a`` to StrTable row ``name=b``."""
    async with ctx.repo[IntTable].upsert(number=a) as int_row:
        async with ctx.repo[StrTable].upsert(name=b) as str_row:
            int_row.value -= 1
            str_row.value += 1
    return hetu.ResponseToClient([ctx.race_count])


@hetu.define_system(namespace=NS, components=(IntTable,), permission=hetu.Permission.EVERYBODY, retry=RETRY)
async def seed(ctx, start: int, count: int):
    """Make sure IntTable rows ``number = start .. start+count-1`` exist (for just_get)."""
    repo = ctx.repo[IntTable]
    existing = {int(n) for n in (await repo.range("number", start, start + count - 1, limit=count)).number}
    for number in range(start, start + count):
        if number not in existing:
            row = IntTable.new_row()
            row.number = number
            await repo.insert(row)
    return hetu.ResponseToClient([ctx.race_count])


@hetu.define_system(namespace=NS, components=(IntTable,), permission=hetu.Permission.EVERYBODY, retry=RETRY)
async def insert_int(ctx, number: int):
    """Insert one IntTable row (the writer of the push-latency benchmark)."""
    row = IntTable.new_row()
    row.number = number
    await ctx.repo[IntTable].insert(row)
    return hetu.ResponseToClient([ctx.race_count])


@hetu.define_component(namespace=NS, permission=hetu.Permission.EVERYBODY)
class Message(hetu.BaseComponent):
    """A chat line: the table of the chat-room and room-size push patterns."""

    room: np.int64 = hetu.property_field(0, index=True)
    seq: np.int64 = hetu.property_field(0, unique=True)
    text: str = hetu.property_field("", dtype="U32")


def _message(room: int, seq: int):
    row = Message.new_row()
    row.room, row.seq, row.text = room, seq, f"message {seq} of room {room}"
    return row


@hetu.define_system(namespace=NS, components=(Message,), permission=hetu.Permission.EVERYBODY, retry=RETRY)
async def fill_room(ctx, room: int, start: int, count: int):
    """Insert messages ``seq = start .. start+count-1`` into ``room``; returns the
    smallest id inserted."""
    rows = [_message(room, seq) for seq in range(start, start + count)]
    for row in rows:
        await ctx.repo[Message].insert(row)
    return hetu.ResponseToClient([min(int(row.id) for row in rows)])


@hetu.define_system(namespace=NS, components=(Message,), permission=hetu.Permission.EVERYBODY, retry=RETRY)
async def insert_message(ctx, room: int, seq: int):
    """Insert one message (the writer of the chat-room and room-size push patterns)."""
    await ctx.repo[Message].insert(_message(room, seq))
    return hetu.ResponseToClient([ctx.race_count])
