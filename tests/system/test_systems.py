"""Systems and endpoints through the Sandbox: retries, depends, copies, early commits,
call locks, the permission matrix, guards and concurrent transfers."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis

import hetu
from hetu import RaceCondition, UniqueViolation
from hetu.system.definer import SystemClusters
from hetu.testing import CallRejected, ConnectionClosed, Sandbox, sandbox_fixture
from tests.conftest import redis_server
from tests.system import systems_app
from tests.system.systems_app import NS


@pytest.fixture(params=["sqlite", "redis"])
async def sb(request, tmp_path):
    url = None
    if request.param == "redis":
        url = redis_server("redis").url(6)
        redis.Redis.from_url(url).flushdb()
    sandbox = await Sandbox.create(NS, systems_app, db_path=tmp_path / "s.db", db_url=url, reload_app=True)
    yield sandbox
    await sandbox.aclose()


# -- the caller -----------------------------------------------------------------------------


async def test_retry_zero_runs_once_and_gives_up(sb):
    with pytest.raises(RuntimeError, match="after 0 retries"):
        await sb.call_system("flaky_once")
    assert systems_app.ATTEMPTS["flaky_once"] == 1


async def test_retry_n_allows_n_retries(sb):
    assert await sb.call_system("flaky_retry2", raw=True) == 2  # race_count after two retries
    assert systems_app.ATTEMPTS["flaky_retry2"] == 3
    with pytest.raises(RuntimeError, match="after 1 retries"):
        await sb.call_system("flaky_retry1")
    assert systems_app.ATTEMPTS["flaky_retry1"] == 2


async def test_unique_violation_is_never_retried(sb):
    await sb.call_system("open_account", 1, 10)
    with pytest.raises(UniqueViolation):
        await sb.call_system("unique_clash")
    assert systems_app.ATTEMPTS["unique_clash"] == 1


async def test_a_dependency_runs_in_the_callers_transaction(sb):
    with pytest.raises(ValueError, match="after the dependency"):
        await sb.call_system("note_then_fail", 5)
    assert await sb.get("Note", id=5) is None  # rolled back with the caller
    assert await sb.call_system("note_directly", 5, raw=True) == 107
    assert (await sb.must_get("Note", id=5)).value == 107


async def test_a_copy_dependency_writes_to_the_copied_table(sb):
    await sb.call_system("add_note_value", 8, 1)
    assert await sb.call_system("note_in_copy", 8, raw=True) == 101
    assert await sb.call_system("note_in_copy", 8, raw=True) == 102
    assert (await sb.must_get("Note", id=8)).value == 101
    assert (await sb.must_get("Note:copy", id=8)).value == 102
    clusters = SystemClusters()
    assert clusters.get_system("note_in_copy").cluster_id != clusters.get_system("add_note_value").cluster_id


async def test_calling_a_system_without_declaring_it_fails(sb):
    ctx = hetu.SystemContext(0, 0, "x", "", {}, 0.0, None, None)
    with pytest.raises(RuntimeError, match="depends"):
        await systems_app.add_note_value(ctx, 1, 1)
    with pytest.raises(AssertionError, match="SystemContext"):
        await systems_app.add_note_value("not a ctx", 1, 1)


async def test_session_commit_ends_the_transaction_early(sb):
    with pytest.raises(ValueError, match="after the commit"):
        await sb.call_system("commit_early_then_fail", 77)
    assert (await sb.must_get("Account", owner=77)).balance == 42


async def test_session_discard_drops_pending_writes(sb):
    assert await sb.call_system("discard_then_return", 78, raw=True) == "discarded"
    assert await sb.get("Account", owner=78) is None


async def test_server_side_calls_get_a_timestamp(sb):
    before = time.time()
    assert before <= await sb.call_system("stamp", raw=True) <= time.time()


async def test_unknown_systems_and_uuids_without_lock(sb):
    with pytest.raises(ValueError, match="no system named"):
        await sb.call_system("nope")
    with pytest.raises(ValueError, match="call_lock"):
        await sb.call_system("open_account", 1, uuid="u1")


async def test_a_uuid_runs_the_body_once_until_its_lock_is_removed(sb):
    for _ in range(3):
        await sb.call_system("once_per_uuid", 50, uuid="abc")
    assert (await sb.must_get("Account", owner=50)).balance == 1
    await sb.call_system("once_per_uuid", 50, uuid="def")
    assert (await sb.must_get("Account", owner=50)).balance == 2
    from hetu.system.caller import SystemCaller
    from hetu.system.future import internal_context

    await SystemCaller(NS, sb.tbl_mgr, internal_context()).remove_call_lock("once_per_uuid", "abc")
    await sb.call_system("once_per_uuid", 50, uuid="abc")
    assert (await sb.must_get("Account", owner=50)).balance == 3


async def test_expired_call_locks_are_swept(sb):
    from hetu.system.lock import LOCK_EXPIRE_SECONDS, clean_expired_call_locks

    await sb.call_system("once_per_uuid", 51, uuid="fresh")
    await sb.insert("SystemLock:once_per_uuid", uuid="stale", name="once_per_uuid",
                    called=time.time() - LOCK_EXPIRE_SECONDS - 10)
    assert await clean_expired_call_locks(sb.tbl_mgr) == 1
    locks = await sb.range("SystemLock:once_per_uuid", "called", 0, float("inf"), limit=-1)
    assert list(locks.uuid) == ["fresh"]


# -- the gateway ------------------------------------------------------------------------------


MATRIX = [
    # endpoint, anonymous, logged in, admin
    ("open_account", True, True, True),
    ("user_only", False, True, False),
    ("admin_only", False, False, True),
    ("server_only", False, False, False),
]


@pytest.mark.parametrize("name, anonymous, user, admin", MATRIX)
async def test_permission_matrix(sb, name, anonymous, user, admin):
    args = (60,) if name == "open_account" else ()
    for allowed, kwargs in ((anonymous, {}), (user, {"caller": 61}), (admin, {"admin": True})):
        if allowed:
            await sb.call(name, *args, **kwargs)
        else:
            with pytest.raises(ConnectionClosed):
                await sb.call(name, *args, **kwargs)


async def test_argument_counts_are_checked(sb):
    assert await sb.call("open_account", 70) == "ok"
    assert await sb.call("open_account", 71, 5) == "ok"
    for args in ((), (1, 2, 3)):
        with pytest.raises(ConnectionClosed):
            await sb.call("open_account", *args)


async def test_global_endpoints_are_reachable(sb):
    assert await sb.call("global_hello") == "hello you"
    assert await sb.call("global_hello", "Ann") == "hello Ann"


async def test_guards_reject_without_running_the_body(sb):
    with pytest.raises(CallRejected) as rejected:
        await sb.call("guarded", -1)
    assert rejected.value.code == "NEGATIVE"
    assert await sb.get("Account", owner=9000) is None
    await sb.call("guarded", 3)
    assert (await sb.must_get("Account", owner=9000)).balance == 3


async def test_elevate_results_and_limit_multipliers(sb):
    from hetu.endpoint.executor import EndpointExecutor

    ctx = sb._context(0, None, False)
    ctx.configure([[10, 1]], [[20, 5]], 2, 3)
    executor = EndpointExecutor(NS, sb.tbl_mgr, ctx)
    await executor.initialize("10.0.0.1")
    try:
        ok, result = await executor.execute("login", 42)
        assert ok and result.message == [True, "SUCCESS", 42]
        assert ctx.client_limits == [[100, 1]] and ctx.server_limits == [[200, 5]]
        assert (ctx.max_row_sub, ctx.max_index_sub) == (100, 150)
        ok, result = await executor.execute("login", 43)
        assert result.message == [False, "CURRENT_CONNECTION_ALREADY_ELEVATED", 42]
    finally:
        await executor.terminate()


async def test_the_anonymous_connections_per_address_limit_comes_from_the_context(sb):
    """MAX_ANONYMOUS_CONNECTION_BY_IP reaches new connections through their context
    (the server sets ``ctx.max_anonymous_by_ip`` from its config); loopback is exempt."""
    from hetu.endpoint.executor import EndpointExecutor

    executors = []

    async def open_from(address: str, limit: int) -> None:
        ctx = sb._context(0, None, False)
        ctx.max_anonymous_by_ip = limit
        executor = EndpointExecutor(NS, sb.tbl_mgr, ctx)
        await executor.initialize(address)
        executors.append(executor)

    try:
        await open_from("10.0.0.9", 2)
        await open_from("10.0.0.9", 2)
        with pytest.raises(RuntimeError, match="anonymous"):
            await open_from("10.0.0.9", 2)
        await open_from("10.0.0.9", 0)  # 0: no limit
        await open_from("127.0.0.1", 1)  # loopback is exempt
        await open_from("127.0.0.1", 1)
        await open_from("10.0.0.10", 2)  # another address counts on its own
    finally:
        for executor in executors:
            await executor.terminate()


async def test_a_login_taken_over_only_when_idle_longer_than_the_contexts_timeout(sb):
    """``elevate(..., kick_logged_in=False)`` refuses while the other login was active
    within ENDPOINT_CALL_IDLE_TIMEOUT, which reaches it as ``ctx.idle_timeout``."""
    from hetu.endpoint.connection import elevate
    from hetu.endpoint.executor import EndpointExecutor

    executors = []

    async def context(idle_timeout: float):
        ctx = sb._context(0, None, False)
        ctx.idle_timeout = idle_timeout
        executor = EndpointExecutor(NS, sb.tbl_mgr, ctx)
        await executor.initialize("10.0.0.1")
        executors.append(executor)
        return ctx

    try:
        first = await context(120)
        assert await elevate(first, 42) == (True, "SUCCESS")
        patient = await context(1000)
        assert await elevate(patient, 42, kick_logged_in=False) == (False, "USER_ALREADY_LOGGED_IN")
        eager = await context(0)
        assert await elevate(eager, 42, kick_logged_in=False) == (True, "SUCCESS")
    finally:
        for executor in executors:
            await executor.terminate()


async def test_responses_are_msgpack_round_tripped(sb):
    assert await sb.call_system("server_only") == "server"
    assert isinstance(await sb.call_system("server_only", raw=True), hetu.ResponseToClient)


async def test_thirty_concurrent_transfers_keep_the_total(sb):
    for owner in range(1, 6):
        await sb.call_system("open_account", owner, 1000)
    rng = random.Random(7)
    pairs = [rng.sample(range(1, 6), 2) + [rng.randint(1, 50)] for _ in range(30)]
    races = await asyncio.gather(*(sb.call_system("transfer", a, b, amount, raw=True) for a, b, amount in pairs))
    accounts = await sb.range("Account", "owner", 1, 5, limit=-1)
    assert int(accounts.balance.sum()) == 5000
    expected = {o: 1000 for o in range(1, 6)}
    for a, b, amount in pairs:
        expected[a] -= amount
        expected[b] += amount
    assert {int(r.owner): int(r.balance) for r in accounts} == expected
    assert sum(r.message for r in races) > 0  # conflicts happened and were retried


sandbox = sandbox_fixture(NS, systems_app)


async def test_sandbox_fixture_yields_a_working_sandbox(sandbox):
    assert await sandbox.call("global_hello", "fixture") == "hello fixture"


async def test_race_condition_is_importable_from_hetu():
    assert issubclass(RaceCondition, Exception) and issubclass(UniqueViolation, IndexError)
