from tests.backend.conftest import Item


async def test_smoke(filled, session):
    async with session() as s:
        repo = s.using(Item)
        rows = await repo.range(time=(110, 115))
        assert list(rows.time) == [110, 111, 112, 113, 114, 115]
        row = await repo.get(name="Itm12")
        assert row.time == 112
