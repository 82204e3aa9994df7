"""A small app scheduling future calls, for tests/system/test_future_calls.py."""

import numpy as np

import hetu

NS = "pytest_future"


@hetu.define_component(namespace=NS, force=True)
class Egg(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, unique=True)
    hatched: np.int32 = hetu.property_field(0)


@hetu.define_system(namespace=NS, components=(Egg,), call_lock=True, force=True)
async def hatch(ctx, owner: int):
    async with ctx.repo[Egg].upsert(owner=owner) as egg:
        egg.hatched += 1


@hetu.define_system(namespace=NS, components=(Egg,), call_lock=True, permission=hetu.Permission.USER, force=True)
async def hatch_for_users(ctx, owner: int):
    async with ctx.repo[Egg].upsert(owner=owner) as egg:
        egg.hatched += 1


@hetu.define_system(namespace=NS, components=(Egg,), force=True)
async def no_lock(ctx, owner: int):
    pass


@hetu.define_system(
    namespace=NS, components=(Egg,), depends=("create_future_call:eggs",),
    permission=hetu.Permission.EVERYBODY, force=True,
)
async def plant(ctx, owner: int, delay: float, target: str = "hatch", timeout: int = 10):
    return hetu.ResponseToClient(
        await ctx.depend["create_future_call:eggs"](ctx, -delay, target, owner, timeout=timeout)
    )


@hetu.define_system(namespace=NS, components=(Egg,), depends=("ensure_future_call:eggs",), force=True)
async def plant_once(ctx, key: str, owner: int, delay: float, recurring: bool = False):
    return await ctx.depend["ensure_future_call:eggs"](
        ctx, key, -delay, "hatch", owner, timeout=5, recurring=recurring
    )


@hetu.define_system(namespace=NS, components=(Egg,), depends=("cancel_future_call:eggs",), force=True)
async def unplant(ctx, key: str):
    return await ctx.depend["cancel_future_call:eggs"](ctx, key)
