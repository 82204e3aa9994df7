"""/metrics, /healthz and /readyz of real `hetu start` servers."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import urllib.error
import urllib.request

import pytest
import redis
from click.testing import CliRunner
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from hetu.cli.start import start
from hetu.client import CallRejected, ConnectionClosed
from hetu.server.metrics.export import add_observations
from hetu.server.metrics.meters import LATENCY_BUCKETS, LatencyCounts
from hetu.server.metrics.settings import MetricsConfigError, metrics_settings
from tests.conftest import free_port, redis_server
from tests.server.conftest import ServerProcess, connect
from tests.waiting import wait_until

TOKEN = "scrape-secret"
APP_ENDPOINTS = {"login", "post", "edit", "remove", "write_secret", "limited", "crash", "numpy_reply",
                 "admin_only", "give_secret", "unknown"}


def http_get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(url: str, token: str | None = TOKEN) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of one scrape."""
    status, text = http_get(url, token)
    assert status == 200, (status, text)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def mismatches(samples: dict, expected: dict) -> dict:
    """``{(name, labels): (expected, found)}`` for every expected sample that differs."""
    found = {}
    for (name, labels), value in expected.items():
        actual = sample(samples, name, **dict(labels))
        if actual != value:
            found[(name, labels)] = (value, actual)
    return found


async def wait_for_samples(url: str, expected: dict, timeout: float = 10.0) -> dict:
    """Scrape until ``expected`` holds (workers copy their counts about once a second)."""
    try:
        await wait_until(lambda: not mismatches(scrape(url), expected), timeout, "the expected metrics")
    except AssertionError:
        pass
    samples = scrape(url)
    assert mismatches(samples, expected) == {}
    return samples


def metrics_server(tmp_path, db: str, workers: int = 1, debug: bool = False, **config) -> ServerProcess:
    port = free_port()
    srv = ServerProcess(tmp_path, db, debug=debug, workers=workers, METRICS=True,
                        METRICS_LISTEN=f"127.0.0.1:{port}", METRICS_TOKEN=TOKEN, **config)
    srv.metrics_url = f"http://127.0.0.1:{port}/metrics"
    return srv


def flushed_redis_url(db: int) -> str:
    url = redis_server("redis").url(db)
    redis.Redis.from_url(url).flushdb()
    return url


def counted(name: str, value: float, **labels: str) -> tuple[tuple, float]:
    return (name, tuple(sorted(labels.items()))), value


# -- off by default, health -------------------------------------------------------------------


def test_metrics_are_off_by_default(server):
    status, _ = http_get(f"http://127.0.0.1:{server.port}/metrics")
    assert status == 404
    assert "metrics" not in server.logs().lower()


def test_healthz_and_readyz_answer_on_the_game_listener(server):
    status, body = http_get(f"http://127.0.0.1:{server.port}/healthz")
    assert status == 200 and '"alive":true' in body
    status, body = http_get(f"http://127.0.0.1:{server.port}/readyz")
    assert status == 200
    assert body == '{"ready":true,"accepting":true,"tables":true,"backends":{"default":true}}'


# -- exact counts ------------------------------------------------------------------------------


async def test_a_scrape_sums_every_worker_exactly(tmp_path):
    """A known mix of calls, failures, subscriptions and pushes over connections spread
    on two workers: every counted value is exact."""
    srv = metrics_server(tmp_path, flushed_redis_url(11), workers=2, CLIENT_SEND_LIMITS=[[20, 600]])
    clients = []
    try:
        a, b, c, d, e = [await connect(srv) for _ in range(5)]
        clients += [a, b, c, d, e]
        assert await a.call("login", 1) == {"id": 1}
        for score in range(1, 6):
            await a.call("post", 1, score, "row")
        far = await b.call("post", 2, 500, "far")  # outside the ranges below
        _, row = await b.subscribe_get("Board", "id", far)
        assert row["score"] == 500
        for client in (c, d):
            _, rows = await client.subscribe_range("Board", "score", 0, 100, 100)
            assert len(rows) == 5
        await a.call("post", 1, 50, "new")  # pushed to c and d
        await a.call("edit", far, 600, "moved")  # pushed to b
        for client in (b, c, d):
            assert await client.next_update(5) is not None
        assert [await e.call("limited"), await e.call("limited")] == ["fine", "fine"]
        with pytest.raises(CallRejected):
            await e.call("limited")
        for name in ("crash", "nope"):  # release mode: the connection is dropped
            doomed = await connect(srv)
            with pytest.raises(ConnectionClosed):
                await doomed.call(name)
            await doomed.close()
        flooder = await connect(srv)
        for score in range(20):
            await flooder.call("post", 3, 200 + score, "flood")
        with pytest.raises(ConnectionClosed):  # the 21st message breaks CLIENT_SEND_LIMITS
            await flooder.call("post", 3, 300, "flood")
        await flooder.close()
        malformed = await connect(srv)
        await malformed.send(["rpc", 5], expect_reply=False)
        await asyncio.wait_for(malformed.wait_closed(), 5)
        await malformed.close()

        posts = 5 + 1 + 1 + 20
        expected = dict([
            counted("hetu_calls_total", 1, endpoint="login", outcome="ok"),
            counted("hetu_calls_total", posts, endpoint="post", outcome="ok"),
            counted("hetu_calls_total", 1, endpoint="post", outcome="dropped"),
            counted("hetu_calls_total", 1, endpoint="edit", outcome="ok"),
            counted("hetu_calls_total", 2, endpoint="limited", outcome="ok"),
            counted("hetu_calls_total", 1, endpoint="limited", outcome="rejected"),
            counted("hetu_calls_total", 1, endpoint="crash", outcome="error"),
            counted("hetu_calls_total", 1, endpoint="unknown", outcome="rejected"),
            counted("hetu_calls_total", 1, endpoint="unknown", outcome="dropped"),
            counted("hetu_calls_total", 0, endpoint="post", outcome="error"),
            counted("hetu_call_duration_seconds_count", posts, endpoint="post"),
            counted("hetu_call_duration_seconds_count", 3, endpoint="limited"),
            counted("hetu_system_calls_total", posts, system="post"),
            counted("hetu_system_calls_total", 1, system="crash"),
            counted("hetu_pushes_total", 3),
            counted("hetu_push_latency_seconds_count", 3),
            counted("hetu_subscriptions", 2, kind="range"),
            counted("hetu_subscriptions", 1, kind="get"),
            counted("hetu_subscription_shapes", 1, kind="get"),
            counted("hetu_connections", 5),
            counted("hetu_logged_in_users", 1),
            counted("hetu_workers", 2),
            # hellos + messages: a 8, b 2, c 1, d 1, e 3, crash 1, nope 1, flooder 21, malformed 1
            counted("hetu_frames_total", 9 + 39, direction="in"),
            # handshake replies + replies (none to the dropped ones) + 3 pushes
            counted("hetu_frames_total", 9 + 8 + 2 + 1 + 1 + 3 + 20 + 3, direction="out"),
            counted("hetu_backend_errors_total", 0, backend="default", op="commit"),
            counted("hetu_worker_restarts_total", 0),
        ])
        samples = await wait_for_samples(srv.metrics_url, expected)
        # within a millisecond or so on loopback; bounded here for a loaded machine
        assert 0 < sample(samples, "hetu_push_latency_seconds_sum") < 3
        assert sample(samples, "hetu_push_latency_seconds_bucket", le="+Inf") == 3
        assert sample(samples, "hetu_call_duration_seconds_bucket", endpoint="post", le="+Inf") == posts
        assert sample(samples, "hetu_backend_round_trips_total", backend="default", op="commit") >= posts
        assert sample(samples, "hetu_bytes_total", direction="in") > 0
        assert sample(samples, "hetu_bytes_total", direction="out") > 0
    finally:
        for client in clients:
            await client.close()
        srv.stop()


async def test_unknown_endpoint_names_are_one_label(tmp_path):
    """A flood of made-up endpoint names adds no series: they are all `unknown`."""
    srv = metrics_server(tmp_path, f"sqlite:///{tmp_path / 'fuzz.db'}", debug=True)
    rng = random.Random(18)
    alphabet = 'abcXYZ_.-/"{}=\\\n 東京😀'
    names = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200))) for _ in range(300)]
    names += ['post"} 1e9\nhetu_calls_total{endpoint="x', "Board", "on_disconnect", "", "unknown"]
    try:
        before = scrape(srv.metrics_url)
        client = await connect(srv)
        for name in names:
            with pytest.raises(Exception) as failed:
                await client.call(name)
            assert type(failed.value).__name__ == "CallFailed"  # debug mode: an err frame, still connected
        await client.close()
        samples = await wait_for_samples(srv.metrics_url, dict([
            counted("hetu_calls_total", len(names), endpoint="unknown", outcome="rejected")]))
    finally:
        srv.stop()
    endpoints = {dict(labels).get("endpoint") for _, labels in samples} - {None}
    assert endpoints <= APP_ENDPOINTS

    def by_endpoint(scraped: dict) -> set:
        return {key for key in scraped if "endpoint" in dict(key[1])}

    assert by_endpoint(samples) == by_endpoint(before)  # bound at startup, none added


# -- worker restarts ---------------------------------------------------------------------------


async def test_a_killed_worker_is_counted_and_its_calls_stay(tmp_path):
    srv = metrics_server(tmp_path, flushed_redis_url(12), workers=2)
    try:
        clients = [await connect(srv) for _ in range(6)]
        for client in clients:
            await client.call("post", 1, 1, "before")
        await wait_for_samples(srv.metrics_url, dict([
            counted("hetu_calls_total", 6, endpoint="post", outcome="ok"), counted("hetu_connections", 6)]))
        for client in clients:
            await client.close()
        pids = [int(pid) for pid in re.findall(r"worker id \d+ leased by [^:\s]+:(\d+):", srv.logs())]
        os.kill(pids[-1], signal.SIGKILL)
        await wait_for_samples(srv.metrics_url, dict([
            counted("hetu_worker_restarts_total", 1), counted("hetu_workers", 2),
            counted("hetu_calls_total", 6, endpoint="post", outcome="ok"), counted("hetu_connections", 0)]),
            timeout=30)
    finally:
        srv.stop()


# -- readiness -------------------------------------------------------------------------------


async def test_readyz_follows_the_backend(tmp_path, restartable_redis):
    """/readyz says not ready while Redis is away and ready once it is back; the metrics
    count the failed reads and the change feed's reconnect and gap."""
    srv = metrics_server(tmp_path, restartable_redis.url())
    ready = f"http://127.0.0.1:{srv.port}/readyz"
    client = None
    try:
        assert http_get(ready)[0] == 200
        client = await connect(srv)
        await client.call("post", 1, 1, "x")
        await client.subscribe_range("Board", "score", 0, 10, 10)  # the worker's change feed listens
        restartable_redis.stop()
        await wait_until(lambda: http_get(ready)[0] == 503, 10, "/readyz to say not ready")
        status, body = http_get(ready)
        assert '"ready":false' in body and '"backends":{"default":false}' in body
        assert http_get(f"http://127.0.0.1:{srv.port}/healthz")[0] == 200  # alive all the same
        restartable_redis.start()
        await wait_until(lambda: http_get(ready)[0] == 200, 20, "/readyz to say ready again")
        await wait_until(lambda: sample(scrape(srv.metrics_url), "hetu_change_feed_gaps_total") >= 1, 10,
                         "the change feed's gap to be counted")
        samples = scrape(srv.metrics_url)
        assert sample(samples, "hetu_change_feed_reconnects_total") >= 1
        assert sample(samples, "hetu_backend_errors_total", backend="default", op="get") >= 1
    finally:
        if client is not None:
            await client.close()
        srv.stop()


@pytest.fixture
def restartable_redis():
    from tests.conftest import redis_binary
    from tests.reliability.test_faults import RestartableRedis

    server = RestartableRedis(redis_binary())
    yield server
    server.remove()


# -- protection --------------------------------------------------------------------------------


async def test_the_token_guards_the_own_listener(tmp_path):
    srv = metrics_server(tmp_path, f"sqlite:///{tmp_path / 'own.db'}")
    try:
        assert http_get(srv.metrics_url)[0] == 401
        assert http_get(srv.metrics_url, "wrong")[0] == 403
        assert http_get(srv.metrics_url.replace("/metrics", "/other"), TOKEN)[0] == 404
        status, text = http_get(srv.metrics_url, TOKEN)
        assert status == 200 and "hetu_workers 1.0" in text
        assert http_get(f"http://127.0.0.1:{srv.port}/metrics", TOKEN)[0] == 404  # not on the game port
    finally:
        srv.stop()


async def test_public_metrics_need_the_token(tmp_path):
    srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'public.db'}", METRICS=True, METRICS_LISTEN="public",
                        METRICS_TOKEN=TOKEN, METRICS_PATH="/internal/metrics")
    url = f"http://127.0.0.1:{srv.port}/internal/metrics"
    try:
        assert http_get(url)[0] == 401
        assert http_get(url, "wrong")[0] == 403
        client = await connect(srv)
        await client.call("post", 1, 2, "x")
        await client.close()
        samples = scrape(url)  # the worker answering copies its own counts first
        assert sample(samples, "hetu_calls_total", endpoint="post", outcome="ok") == 1
    finally:
        srv.stop()


def test_public_metrics_without_a_token_are_refused(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("NAMESPACE: pytest_srv\nINSTANCES: [test]\nBACKENDS: {default: {master: 'sqlite:///x.db'}}\n"
                      "METRICS: true\nMETRICS_LISTEN: public\n")
    result = CliRunner().invoke(start, [f"--config={config}"])
    assert result.exit_code != 0
    assert "set METRICS_TOKEN" in result.output


def test_hetu_start_flags_turn_metrics_on(tmp_path):
    result = CliRunner().invoke(start, ["--namespace=pytest_srv", "--instance=test", "--metrics-listen=public"],
                                env={"HETU_METRICS_TOKEN": ""})
    assert result.exit_code != 0
    assert "set METRICS_TOKEN" in result.output


@pytest.mark.parametrize("config, message", [
    ({"METRICS": True, "METRICS_LISTEN": "public"}, "set METRICS_TOKEN"),
    ({"METRICS": True, "METRICS_LISTEN": "9466"}, "neither HOST:PORT"),
    ({"METRICS": True, "METRICS_PATH": "/hetu/metrics"}, "not a free URL path"),
    ({"METRICS": True, "METRICS_PATH": "/readyz"}, "not a free URL path"),
])
def test_bad_metrics_settings_say_what_to_fix(config, message):
    with pytest.raises(MetricsConfigError, match=message):
        metrics_settings(config)


def test_metrics_settings_default_to_a_loopback_listener():
    settings = metrics_settings({"METRICS": "true"})
    assert (settings.host, settings.port, settings.path, settings.token) == ("127.0.0.1", 9466, "/metrics", None)
    assert metrics_settings({}) is None and metrics_settings({"METRICS": False}) is None


# -- the histogram copy ------------------------------------------------------------------------


def test_copied_observations_equal_observed_ones():
    values = [0.00005, 0.0003, 0.003, 0.003, 0.7, 12.0, 0.0001]
    observed = Histogram("observed_seconds", "", buckets=LATENCY_BUCKETS, registry=None)
    copied = Histogram("copied_seconds", "", buckets=LATENCY_BUCKETS, registry=None)
    counts = LatencyCounts()
    for value in values:
        observed.observe(value)
        counts.observe(value)
    add_observations(copied, counts.counts, counts.total)

    def samples(histogram):
        return [(s.name.split("_", 1)[1], s.labels, s.value) for s in histogram.collect()[0].samples
                if not s.name.endswith("_created")]

    assert samples(copied) == samples(observed)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_a_get_by_an_index_is_one_round_trip_counted_once(tmp_path, kind):
    """``repo.get(number=...)`` reads through ``first``: one round trip, counted as
    ``first`` and not again as the ``range`` the generic implementation runs."""
    import benchmark.app as app
    from hetu.server.metrics.hooks import meter_backend
    from hetu.server.metrics.meters import WorkerMeters
    from hetu.testing import Sandbox

    url = f"sqlite:///{tmp_path / 'first.db'}" if kind == "sqlite" else redis_server("redis").url(0)
    async with await Sandbox.create(app.NS, app, db_url=url, instance_name="metrics_first",
                                    reload_app=True) as sb:
        await sb.call_system("seed", 0, 3)
        meters = WorkerMeters([])
        meter_backend(meters, "default", sb.backend)
        await sb.call_system("just_get", 1)
        await sb.call_system("just_get", 99)  # no such row: still one round trip
        counts = {op: m.calls for (_, op), m in meters.backend_ops.items() if m.calls}
        assert counts == {"first": 2}
