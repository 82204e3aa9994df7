"""The app the gateway tests serve (namespace pytest_srv)."""

import numpy as np

import hetu

NS = "pytest_srv"


@hetu.define_component(namespace=NS, permission=hetu.Permission.EVERYBODY, force=True)
class Board(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    score: np.int32 = hetu.property_field(0, index=True)
    note: str = hetu.property_field("", dtype="U32")


@hetu.define_component(namespace=NS, permission=hetu.Permission.OWNER, force=True)
class Secret(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    text: str = hetu.property_field("", dtype="U32")


@hetu.define_component(namespace=NS, permission=hetu.Permission.EVERYBODY, force=True)
class Goodbye(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, unique=True)
    count: np.int32 = hetu.property_field(0)


@hetu.define_endpoint(namespace=NS, permission=hetu.Permission.EVERYBODY, force=True)
async def login(ctx, user_id: int):
    await hetu.elevate(ctx, user_id)
    return hetu.ResponseToClient({"id": ctx.caller})


@hetu.define_system(namespace=NS, components=(Board,), permission=hetu.Permission.EVERYBODY, force=True)
async def post(ctx, owner: int, score: int, note: str = ""):
    row = Board.new_row()
    row.owner, row.score, row.note = owner, score, note
    await ctx.repo[Board].insert(row)
    return hetu.ResponseToClient(int(row.id))


@hetu.define_system(namespace=NS, components=(Board,), permission=hetu.Permission.EVERYBODY, force=True)
async def edit(ctx, row_id: int, score: int, note: str):
    row = await ctx.repo[Board].get(id=row_id)
    row.score, row.note = score, note
    await ctx.repo[Board].update(row)


@hetu.define_system(namespace=NS, components=(Board,), permission=hetu.Permission.EVERYBODY, force=True)
async def remove(ctx, row_id: int):
    if await ctx.repo[Board].get(id=row_id) is not None:
        ctx.repo[Board].delete(row_id)


@hetu.define_system(namespace=NS, components=(Secret,), permission=hetu.Permission.USER, force=True)
async def write_secret(ctx, text: str, owner: int = 0):
    row = Secret.new_row()
    row.owner, row.text = owner or ctx.caller, text
    await ctx.repo[Secret].insert(row)


@hetu.define_system(namespace=NS, components=(Board,), permission=hetu.Permission.EVERYBODY, force=True)
@hetu.rate_limit(times=2, per=100)
async def limited(ctx):
    return hetu.ResponseToClient("fine")


@hetu.define_system(namespace=NS, components=(Board,), permission=hetu.Permission.EVERYBODY, force=True)
async def crash(ctx):
    raise RuntimeError("boom for test")


@hetu.define_system(namespace=NS, components=(Board,), permission=hetu.Permission.EVERYBODY, force=True)
async def numpy_reply(ctx):
    return hetu.ResponseToClient(np.int64(5))


@hetu.define_system(namespace=NS, components=(Board,), permission=hetu.Permission.ADMIN, force=True)
async def admin_only(ctx):
    return hetu.ResponseToClient("admin")


@hetu.define_system(namespace=NS, components=(Goodbye,), permission=None, force=True)
async def on_disconnect(ctx):
    if ctx.caller:
        async with ctx.repo[Goodbye].upsert(owner=ctx.caller) as row:
            row.count += 1


@hetu.define_system(namespace=NS, components=(Secret,), permission=hetu.Permission.USER, force=True)
async def give_secret(ctx, text: str, new_owner: int):
    rows = await ctx.repo[Secret].range("owner", ctx.caller, ctx.caller, limit=-1)
    for row in rows:
        if row.text == text:
            row.owner = new_owner
            await ctx.repo[Secret].update(row)
