"""The app the reliability tests serve (namespace pytest_rel).

Systems return what the tests need to check their invariants, e.g. how many times they
were retried after a conflict (``ctx.race_count``).
"""

import asyncio
import time

import numpy as np

import hetu

NS = "pytest_rel"
EVERYBODY = hetu.Permission.EVERYBODY


@hetu.define_component(namespace=NS, permission=EVERYBODY, force=True)
class Account(hetu.BaseComponent):
    number: np.int64 = hetu.property_field(0, unique=True)
    balance: np.int64 = hetu.property_field(0)


@hetu.define_component(namespace=NS, permission=EVERYBODY, force=True)
class NameClaim(hetu.BaseComponent):
    name: str = hetu.property_field("", dtype="U32", unique=True)
    claimant: np.int64 = hetu.property_field(0)


@hetu.define_component(namespace=NS, permission=EVERYBODY, force=True)
class Counter(hetu.BaseComponent):
    key: np.int64 = hetu.property_field(0, unique=True)
    value: np.int64 = hetu.property_field(0)


@hetu.define_component(namespace=NS, permission=EVERYBODY, force=True)
class Sequence(hetu.BaseComponent):
    """The calls of one client in the order they were applied: ``last`` is the last
    sequence number seen, ``out_of_order`` counts numbers that did not follow it."""

    client: np.int64 = hetu.property_field(0, unique=True)
    last: np.int64 = hetu.property_field(0)
    applied: np.int64 = hetu.property_field(0)
    out_of_order: np.int64 = hetu.property_field(0)


@hetu.define_component(namespace=NS, permission=hetu.Permission.USER, force=True)
class Profile(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, unique=True)


@hetu.define_component(namespace=NS, permission=hetu.Permission.ADMIN, force=True)
class Ledger(hetu.BaseComponent):
    entry: np.int64 = hetu.property_field(0, index=True)


@hetu.define_component(namespace=NS, permission=hetu.Permission.OWNER, force=True)
class Secret(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    text: str = hetu.property_field("", dtype="U32")


# -- load ---------------------------------------------------------------------------------

@hetu.define_system(namespace=NS, components=(Account,), permission=EVERYBODY, force=True)
async def open_account(ctx, number: int, balance: int):
    async with ctx.repo[Account].upsert(number=number) as row:
        row.balance = balance


@hetu.define_system(namespace=NS, components=(Account,), permission=EVERYBODY, retry=99, force=True)
async def transfer(ctx, source: int, target: int, amount: int):
    src = await ctx.repo[Account].get(number=source)
    dst = await ctx.repo[Account].get(number=target)
    if src.balance < amount:
        return hetu.ResponseToClient({"moved": 0, "retries": ctx.race_count})
    src.balance -= amount
    dst.balance += amount
    await ctx.repo[Account].update(src)
    await ctx.repo[Account].update(dst)
    return hetu.ResponseToClient({"moved": amount, "retries": ctx.race_count})


@hetu.define_system(namespace=NS, components=(NameClaim,), permission=EVERYBODY, force=True)
async def claim_name(ctx, name: str, claimant: int):
    row = NameClaim.new_row()
    row.name, row.claimant = name, claimant
    await ctx.repo[NameClaim].insert(row)


@hetu.define_system(namespace=NS, components=(Counter,), permission=EVERYBODY, retry=99, force=True)
async def increment(ctx, key: int):
    async with ctx.repo[Counter].upsert(key=key) as row:
        row.value += 1
    return hetu.ResponseToClient(ctx.race_count)


@hetu.define_system(namespace=NS, components=(Sequence,), permission=EVERYBODY, retry=99, force=True)
async def append(ctx, client: int, seq: int):
    async with ctx.repo[Sequence].upsert(client=client) as row:
        if seq != row.last + 1:
            row.out_of_order += 1
        row.last = seq
        row.applied += 1


# -- permissions ----------------------------------------------------------------------------

@hetu.define_endpoint(namespace=NS, permission=EVERYBODY, force=True)
async def login(ctx, user_id: int):
    await hetu.elevate(ctx, user_id)
    return hetu.ResponseToClient(ctx.caller)


@hetu.define_system(namespace=NS, components=(Profile,), permission=hetu.Permission.USER, force=True)
async def touch_profile(ctx):
    async with ctx.repo[Profile].upsert(owner=ctx.caller):
        pass


@hetu.define_system(namespace=NS, components=(Ledger,), permission=hetu.Permission.ADMIN, force=True)
async def write_ledger(ctx, entry: int):
    row = Ledger.new_row()
    row.entry = entry
    await ctx.repo[Ledger].insert(row)


@hetu.define_system(namespace=NS, components=(Secret,), permission=EVERYBODY, force=True)
async def plant_secret(ctx, owner: int, text: str):
    """Writes a row owned by anyone: lets a test create rows the reader may not see."""
    row = Secret.new_row()
    row.owner, row.text = owner, text
    await ctx.repo[Secret].insert(row)
    return hetu.ResponseToClient(int(row.id))


@hetu.define_system(namespace=NS, components=(Secret,), permission=EVERYBODY, force=True)
async def rewrite_secret(ctx, row_id: int, owner: int, text: str):
    row = await ctx.repo[Secret].get(id=row_id)
    row.owner, row.text = owner, text
    await ctx.repo[Secret].update(row)


@hetu.define_endpoint(namespace=NS, permission=hetu.Permission.USER, force=True)
async def logout(ctx):
    return hetu.ResponseToClient(await hetu.logout(ctx))


@hetu.define_system(namespace=NS, components=(Counter,), permission=EVERYBODY, force=True)
async def counter_value(ctx, key: int):
    row = await ctx.repo[Counter].get(key=key)
    return 0 if row is None else int(row.value)


@hetu.define_endpoint(namespace=NS, permission=hetu.Permission.USER, force=True)
async def hold(ctx, key: int):
    """A call that runs until the test lets it end: it counts Counter ``key + 1`` once
    running, waits (10 s at most) for Counter ``key`` to count, then answers the caller
    it ran as."""
    await ctx.systems.call("increment", key + 1)
    deadline = time.monotonic() + 10
    while await ctx.systems.call("counter_value", key) == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return hetu.ResponseToClient(ctx.caller)


# -- disconnects ------------------------------------------------------------------------------

@hetu.define_component(namespace=NS, permission=EVERYBODY, force=True)
class Disconnect(hetu.BaseComponent):
    """One row per ``on_disconnect`` run: which connection, as which user."""

    connection: np.int64 = hetu.property_field(0, index=True)
    caller: np.int64 = hetu.property_field(0)


@hetu.define_system(namespace=NS, components=(Disconnect,), permission=None, force=True)
async def on_disconnect(ctx):
    row = Disconnect.new_row()
    row.connection, row.caller = ctx.connection_id, ctx.caller
    await ctx.repo[Disconnect].insert(row)


@hetu.define_endpoint(namespace=NS, permission=EVERYBODY, force=True)
async def whoami(ctx):
    return hetu.ResponseToClient([ctx.connection_id, ctx.caller])


@hetu.define_system(namespace=NS, components=(Disconnect,), permission=EVERYBODY, force=True)
async def disconnects(ctx, connection_id: int):
    """The callers ``on_disconnect`` ran as for this connection (one per run)."""
    rows = await ctx.repo[Disconnect].range(connection=(connection_id, connection_id), limit=100)
    return hetu.ResponseToClient([int(c) for c in rows.caller])


@hetu.define_system(namespace=NS, components=(Account,), permission=EVERYBODY, force=True)
async def slow_transfer(ctx, source: int, target: int, amount: int, pause: float):
    """A transfer that takes ``pause`` seconds between its two writes (clients vanish meanwhile)."""
    src = await ctx.repo[Account].get(number=source)
    src.balance -= amount
    await ctx.repo[Account].update(src)
    await asyncio.sleep(pause)
    dst = await ctx.repo[Account].get(number=target)
    dst.balance += amount
    await ctx.repo[Account].update(dst)
