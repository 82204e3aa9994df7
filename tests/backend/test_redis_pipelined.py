"""The auto-pipelined Redis connection the Redis backend sends transactions' commands on."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hetu.data.backend.redis.pipelined import PipelinedRedis
from tests.conftest import RedisServer, free_port, redis_binary, redis_server
from tests.waiting import wait_until

BLOCKING_SECONDS = 30  # a BLPOP that only ends when the test ends it


@pytest.fixture
def url():
    url = redis_server("redis").url(5)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
async def client(url):
    c = PipelinedRedis(url)
    yield c
    await c.close()


def count_writes(client: PipelinedRedis) -> list[bytes]:
    """Record what the client's current connection writes from now on."""
    transport = client._protocol.transport
    written: list[bytes] = []
    original = transport.write

    def write(data):
        written.append(bytes(data))
        original(data)

    transport.write = write
    return written


def kill_clients_named(url: str, name: str) -> None:
    probe = redis.Redis.from_url(url)
    for info in probe.client_list():
        if info["name"] == name:
            probe.client_kill_filter(_id=info["id"])


async def wait_until_blocked(url: str, count: int = 1) -> None:
    probe = redis.Redis.from_url(url)
    await wait_until(lambda: probe.info("clients")["blocked_clients"] >= count, 10, f"{count} blocked Redis clients")


async def test_replies_come_back_as_hiredis_parses_them(client):
    assert await client.execute("SET", "k", "v") == b"OK"
    assert await client.execute("GET", "k") == b"v"
    assert await client.execute("INCRBY", "n", 5) == 5
    await client.execute("HSET", "h", "a", "1", "b", "2")
    assert sorted(await client.execute("HGETALL", "h")) == [b"1", b"2", b"a", b"b"]
    assert await client.execute("GET", "missing") is None


async def test_commands_issued_in_one_loop_turn_leave_in_one_write(client):
    await client.execute("PING")
    written = count_writes(client)
    replies = await asyncio.gather(*(client.execute("INCR", f"c{i % 3}") for i in range(30)))
    assert len(written) == 1
    assert sorted(replies) == sorted([n for _ in range(3) for n in range(1, 11)])


async def test_replies_reach_their_own_callers_in_order(client):
    values = [f"value-{i}".encode() for i in range(200)]
    await asyncio.gather(*(client.execute("SET", f"key{i}", v) for i, v in enumerate(values)))
    got = await asyncio.gather(*(client.execute("GET", f"key{i}") for i in range(200)))
    assert got == values


async def test_an_error_reply_fails_only_its_own_command(client):
    await client.execute("SET", "text", "abc")
    wrong, right = await asyncio.gather(client.execute("INCR", "text"), client.execute("GET", "text"),
                                        return_exceptions=True)
    assert isinstance(wrong, ResponseError)
    assert right == b"abc"


async def test_an_unknown_script_raises_noscript(client):
    with pytest.raises(NoScriptError):
        await client.execute("EVALSHA", "0" * 40, 0)


async def test_execute_many_returns_every_reply_and_raises_the_first_error(client):
    assert await client.execute_many([("SET", "a", "1"), ("GET", "a"), ("EXISTS", "a")]) == [b"OK", b"1", 1]
    with pytest.raises(ResponseError):
        await client.execute_many([("GET", "a"), ("HGET", "a", "f")])
    assert await client.execute_many([]) == []


async def test_a_cancelled_caller_does_not_shift_the_replies_of_others(url, client):
    await client.execute("PING")
    blocked = asyncio.ensure_future(client.execute("BLPOP", "queue", BLOCKING_SECONDS))
    await wait_until_blocked(url)
    blocked.cancel()
    behind = asyncio.ensure_future(client.execute("ECHO", "behind"))
    redis.Redis.from_url(url).rpush("queue", "item")  # ends the BLPOP; its reply has no caller
    assert await behind == b"behind"
    assert await client.execute("ECHO", "after") == b"after"


async def test_commands_waiting_on_a_dropped_connection_fail_then_it_reconnects(url):
    client = PipelinedRedis(url, client_name="hetu-test-dropped")
    try:
        await client.execute("PING")
        blocked = asyncio.ensure_future(client.execute("BLPOP", "queue", BLOCKING_SECONDS))
        await wait_until_blocked(url)
        kill_clients_named(url, "hetu-test-dropped")
        with pytest.raises(RedisConnectionError):
            await blocked
        assert await client.execute("ECHO", "again") == b"again"
    finally:
        await client.close()


async def test_a_read_marked_retry_is_sent_again_on_a_new_connection(url):
    client = PipelinedRedis(url, client_name="hetu-test-retry")
    try:
        await client.execute("PING")
        blocked = asyncio.ensure_future(client.execute("BLPOP", "queue", 1, retry=True))
        await wait_until_blocked(url)
        kill_clients_named(url, "hetu-test-retry")
        redis.Redis.from_url(url).rpush("queue", "item")
        assert await blocked in (None, [b"queue", b"item"])  # re-sent: the item or the BLPOP timeout
    finally:
        await client.close()


async def test_a_connection_whose_answer_is_overdue_is_dropped(url):
    client = PipelinedRedis(url, socket_timeout=0.2)
    try:
        with pytest.raises(RedisTimeoutError):
            await client.execute("BLPOP", "queue", BLOCKING_SECONDS)
        assert await client.execute("ECHO", "fresh") == b"fresh"
    finally:
        await client.close()


async def test_the_url_selects_the_database(url):
    client = PipelinedRedis(url.rsplit("/", 1)[0] + "/6")
    try:
        await client.execute("SET", "in-db-6", "yes")
    finally:
        await client.close()
    assert redis.Redis.from_url(url.rsplit("/", 1)[0] + "/6").get("in-db-6") == b"yes"
    assert redis.Redis.from_url(url).get("in-db-6") is None


async def test_a_password_is_sent_before_the_first_command():
    private = RedisServer(redis_binary(), "--requirepass", "s3cret")
    try:
        good = PipelinedRedis(f"redis://:s3cret@127.0.0.1:{private.port}/0")
        assert await good.execute("PING") == b"PONG"
        await good.close()
        bad = PipelinedRedis(f"redis://:wrong@127.0.0.1:{private.port}/0")
        with pytest.raises(ResponseError):
            await bad.execute("PING")
        await bad.close()
    finally:
        private.stop()


async def test_nothing_listening_is_a_connection_error():
    client = PipelinedRedis(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisConnectionError):
        await client.execute("PING")
    await client.close()


async def test_a_closed_client_refuses_commands(client):
    await client.execute("PING")
    await client.close()
    with pytest.raises(RedisConnectionError):
        await client.execute("PING")


def test_a_client_used_from_a_new_event_loop_connects_again(url):
    client = PipelinedRedis(url)
    assert asyncio.run(client.execute("ECHO", "first loop")) == b"first loop"

    async def second_loop():
        try:
            return await client.execute("ECHO", "second loop")
        finally:
            await client.close()

    assert asyncio.run(second_loop()) == b"second loop"
