"""An app exercising systems, endpoints, permissions and guards (namespace pytest_sys)."""

import numpy as np

import hetu

NS = "pytest_sys"
ATTEMPTS: dict[str, int] = {}


@hetu.define_component(namespace=NS, force=True)
class Account(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, unique=True)
    balance: np.int64 = hetu.property_field(0)


@hetu.define_component(namespace=NS, permission=hetu.Permission.OWNER, force=True)
class Note(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    value: np.int32 = hetu.property_field(100)


@hetu.define_system(namespace=NS, components=(Account,), permission=hetu.Permission.EVERYBODY, force=True)
async def open_account(ctx, owner: int, balance: int = 0):
    async with ctx.repo[Account].upsert(owner=owner) as row:
        row.balance = balance


@hetu.define_system(namespace=NS, components=(Account,), permission=hetu.Permission.EVERYBODY, force=True)
async def transfer(ctx, src: int, dst: int, amount: int):
    a = await ctx.repo[Account].get(owner=src)
    b = await ctx.repo[Account].get(owner=dst)
    a.balance -= amount
    b.balance += amount
    await ctx.repo[Account].update(a)
    await ctx.repo[Account].update(b)
    return hetu.ResponseToClient(ctx.race_count)


def _conflicting(name: str, conflicts: int):
    async def body(ctx):
        ATTEMPTS[name] = ATTEMPTS.get(name, 0) + 1
        if ATTEMPTS[name] <= conflicts:
            raise hetu.RaceCondition("forced conflict")
        return ctx.race_count

    body.__name__ = name
    return body


flaky_once = hetu.define_system(namespace=NS, components=(Account,), retry=0, force=True)(_conflicting("flaky_once", 1))
flaky_retry2 = hetu.define_system(namespace=NS, components=(Account,), retry=2, force=True)(_conflicting("flaky_retry2", 2))
flaky_retry1 = hetu.define_system(namespace=NS, components=(Account,), retry=1, force=True)(_conflicting("flaky_retry1", 2))


@hetu.define_system(namespace=NS, components=(Account,), force=True)
async def unique_clash(ctx):
    ATTEMPTS["unique_clash"] = ATTEMPTS.get("unique_clash", 0) + 1
    row = Account.new_row()
    row.owner = 1  # held by an account the test opened
    await ctx.repo[Account].insert(row)


@hetu.define_system(namespace=NS, components=(Note,), force=True)
async def add_note_value(ctx, owner: int, delta: int):
    async with ctx.repo[Note].upsert(id=owner) as row:
        row.owner = owner
        row.value += delta
    return int(row.value)


@hetu.define_system(namespace=NS, components=(Account,), depends=("add_note_value",), force=True)
async def note_then_fail(ctx, owner: int):
    await ctx.depend["add_note_value"](ctx, owner, 5)
    raise ValueError("after the dependency")


@hetu.define_system(namespace=NS, components=(Account,), depends=(add_note_value,), force=True)
async def note_directly(ctx, owner: int):
    return await add_note_value(ctx, owner, 7)


@hetu.define_system(namespace=NS, depends=("add_note_value:copy",), force=True)
async def note_in_copy(ctx, owner: int):
    return await ctx.depend["add_note_value:copy"](ctx, owner, 1)


@hetu.define_system(namespace=NS, components=(Account,), force=True)
async def commit_early_then_fail(ctx, owner: int):
    async with ctx.repo[Account].upsert(owner=owner) as row:
        row.balance = 42
    await ctx.session_commit()
    raise ValueError("after the commit")


@hetu.define_system(namespace=NS, components=(Account,), force=True)
async def discard_then_return(ctx, owner: int):
    async with ctx.repo[Account].upsert(owner=owner) as row:
        row.balance = 42
    await ctx.session_discard()
    return "discarded"


@hetu.define_system(namespace=NS, components=(Account,), force=True)
async def stamp(ctx):
    return ctx.timestamp


@hetu.define_system(namespace=NS, components=(Account,), call_lock=True, force=True)
async def once_per_uuid(ctx, owner: int):
    async with ctx.repo[Account].upsert(owner=owner) as row:
        row.balance += 1


@hetu.define_system(namespace=NS, components=(Account,), permission=hetu.Permission.USER, force=True)
async def user_only(ctx):
    return hetu.ResponseToClient(ctx.caller)


@hetu.define_system(namespace=NS, components=(Account,), permission=hetu.Permission.ADMIN, force=True)
async def admin_only(ctx):
    return hetu.ResponseToClient("admin")


@hetu.define_system(namespace=NS, components=(Account,), permission=None, force=True)
async def server_only(ctx):
    return hetu.ResponseToClient("server")


def not_negative(ctx, amount):
    if amount < 0:
        raise hetu.ClientReject("NEGATIVE")


@hetu.define_system(namespace=NS, components=(Account,), permission=hetu.Permission.EVERYBODY, force=True)
@hetu.guard(not_negative)
async def guarded(ctx, amount: int):
    async with ctx.repo[Account].upsert(owner=9000) as row:
        row.balance += amount


@hetu.define_endpoint(namespace="global", permission=hetu.Permission.EVERYBODY, force=True)
async def global_hello(ctx, name: str = "you"):
    return hetu.ResponseToClient(f"hello {name}")


@hetu.define_endpoint(namespace=NS, permission=hetu.Permission.EVERYBODY, force=True)
async def login(ctx, user_id: int):
    ok, reason = await hetu.elevate(ctx, user_id)
    return hetu.ResponseToClient([ok, reason, ctx.caller])
