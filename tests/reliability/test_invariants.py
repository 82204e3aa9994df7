"""Invariants under concurrent load: many websocket clients, 2 server processes of 2
workers each, one Redis. Each test prints its figures (see docs/reliability.md)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from hetu.client import CallFailed

ACCOUNTS = 20
START_BALANCE = 1000
TRANSFER_CLIENTS = 30
TRANSFER_SECONDS = 2.5


async def connect_many(cluster, n: int) -> list:
    return list(await asyncio.gather(*(cluster.connect(i) for i in range(n))))


async def close_all(clients) -> None:
    await asyncio.gather(*(c.close() for c in clients))


async def read_range(client, component: str, index: str, left, right, limit: int = 1000) -> list[dict]:
    sub_id, rows = await client.subscribe_range(component, index, left, right, limit)
    assert sub_id not in (None, "fail"), rows
    await client.unsubscribe(sub_id)
    return rows


async def test_transfers_keep_the_total_and_no_balance_goes_negative(cluster):
    setup = await cluster.connect()
    for number in range(1, ACCOUNTS + 1):
        await setup.call("open_account", number, START_BALANCE)
    clients = await connect_many(cluster, TRANSFER_CLIENTS)
    stats = {"calls": 0, "moved": 0, "refused": 0, "retries": 0, "max_retries": 0}
    rng = random.Random(7)
    deadline = time.monotonic() + TRANSFER_SECONDS

    async def trade(client) -> None:
        while time.monotonic() < deadline:
            source, target = rng.sample(range(1, ACCOUNTS + 1), 2)
            reply = await client.call("transfer", source, target, rng.randint(1, 300))
            stats["calls"] += 1
            stats["moved" if reply["moved"] else "refused"] += 1
            stats["retries"] += reply["retries"]
            stats["max_retries"] = max(stats["max_retries"], reply["retries"])

    try:
        await asyncio.gather(*(trade(c) for c in clients))
        rows = await read_range(setup, "Account", "number", 1, ACCOUNTS)
    finally:
        await close_all([setup, *clients])
    balances = [row["balance"] for row in rows]
    print(f"\ntransfers: {TRANSFER_CLIENTS} clients, {ACCOUNTS} accounts, {stats['calls']} calls "
          f"({stats['moved']} moved, {stats['refused']} refused for lack of funds), "
          f"{stats['retries']} conflicts retried (at most {stats['max_retries']} for one call), "
          f"total {sum(balances)} of {ACCOUNTS * START_BALANCE} (lost {ACCOUNTS * START_BALANCE - sum(balances)}), "
          f"lowest balance {min(balances)}")
    assert len(rows) == ACCOUNTS
    assert stats["moved"] > 0
    assert sum(balances) == ACCOUNTS * START_BALANCE
    assert min(balances) >= 0


async def test_a_unique_name_claimed_by_many_clients_has_exactly_one_winner(cluster):
    clients = await connect_many(cluster, 40)
    try:
        results = await asyncio.gather(
            *(c.call("claim_name", "crown", i) for i, c in enumerate(clients)), return_exceptions=True)
        winners = [i for i, r in enumerate(results) if r == "ok"]
        losers = [r for r in results if r != "ok"]
        a_loser = next(i for i, r in enumerate(results) if r != "ok")
        # a loser's connection stays usable: a rejection, not a crash
        assert await clients[a_loser].call("claim_name", "other crown", a_loser) == "ok"
        sub_id, row = await clients[0].subscribe_get("NameClaim", "name", "crown")
    finally:
        await close_all(clients)
    reasons = sorted({r.reason for r in losers if isinstance(r, CallFailed)})
    print(f"\nunique claim: {len(clients)} clients, {len(winners)} winner, {len(losers)} rejected: {reasons}")
    assert len(winners) == 1
    assert all(isinstance(r, CallFailed) for r in losers), losers
    assert all("unique" in reason.lower() for reason in reasons), reasons
    assert row["claimant"] == winners[0]


async def test_counters_lose_no_increments(cluster):
    n_clients, per_client = 20, 25
    clients = await connect_many(cluster, n_clients)
    try:
        retries = await asyncio.gather(
            *(c.call("increment", 1) for c in clients for _ in range(per_client)))
        _, row = await clients[0].subscribe_get("Counter", "key", 1)
    finally:
        await close_all(clients)
    print(f"\ncounter: {n_clients} clients x {per_client} increments = {len(retries)} calls, "
          f"{sum(retries)} conflicts retried, final value {row['value']}, "
          f"lost {n_clients * per_client - row['value']}")
    assert row["value"] == n_clients * per_client


@pytest.mark.parametrize("pipelined", [8, 50])
async def test_every_client_sees_its_calls_applied_in_sending_order(cluster, pipelined):
    """Each client sends ``pipelined`` calls before awaiting any reply."""
    n_clients = 20
    base = 1000 * pipelined  # own Sequence rows per run
    clients = await connect_many(cluster, n_clients)
    try:
        replies = await asyncio.gather(*(
            c.call("append", base + i, seq) for i, c in enumerate(clients) for seq in range(1, pipelined + 1)))
        rows = await read_range(clients[0], "Sequence", "client", base, base + n_clients - 1)
    finally:
        await close_all(clients)
    disorder = sum(row["out_of_order"] for row in rows)
    print(f"\norder: {n_clients} clients x {pipelined} pipelined calls = {len(replies)} calls, "
          f"{disorder} applied out of order")
    assert replies == ["ok"] * len(replies)
    assert len(rows) == n_clients
    for row in rows:
        assert (row["applied"], row["last"], row["out_of_order"]) == (pipelined, pipelined, 0), row
