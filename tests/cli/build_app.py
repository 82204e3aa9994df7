"""The app `hetu build` is tested on (namespace pytest_build): a component with a field of
every dtype kind, an ADMIN component, a copy made by `depends`, and an unused component."""

import numpy as np

import hetu

NS = "pytest_build"


@hetu.define_component(namespace=NS, permission=hetu.Permission.EVERYBODY)
class Every(hetu.BaseComponent):
    i8: np.int8 = hetu.property_field(0)
    i16: np.int16 = hetu.property_field(0)
    i32: np.int32 = hetu.property_field(0)
    i64: np.int64 = hetu.property_field(0)
    u8: np.uint8 = hetu.property_field(0)
    u16: np.uint16 = hetu.property_field(0)
    u32: np.uint32 = hetu.property_field(0)
    u64: np.uint64 = hetu.property_field(0)
    f16: np.float16 = hetu.property_field(0.0)
    f32: np.float32 = hetu.property_field(0.0)
    f64: np.float64 = hetu.property_field(0.0)
    flag: bool = hetu.property_field(False)
    title: str = hetu.property_field("", dtype="U16")
    blob: bytes = hetu.property_field(b"", dtype="S8")
    last_seen_ms: np.int64 = hetu.property_field(0, index=True)


@hetu.define_component(namespace=NS, permission=hetu.Permission.ADMIN)
class Audit(hetu.BaseComponent):
    note: str = hetu.property_field("", dtype="U64")


@hetu.define_component(namespace=NS, permission=hetu.Permission.OWNER)
class Item(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    count: np.int32 = hetu.property_field(0)


@hetu.define_component(namespace=NS, permission=hetu.Permission.EVERYBODY)
class Unused(hetu.BaseComponent):
    value: np.int32 = hetu.property_field(0)


@hetu.define_system(namespace=NS, components=(Every, Audit), permission=hetu.Permission.EVERYBODY)
async def touch(ctx):
    pass


@hetu.define_system(namespace=NS, components=(Item,), permission=None)
async def give(ctx):
    pass


@hetu.define_system(namespace=NS, depends=("give:bank",), permission=hetu.Permission.USER)
async def give_to_bank(ctx):
    await ctx.depend["give"](ctx)
