"""The transport baseline: a bare Sanic websocket server that sends every message back.

Run as ``python -m benchmark.echo --port 8000``; clients connect to ``ws://host:port/echo``.

With ``--redis-url``, ``/echo-redis/N`` also answers every message after N Redis round
trips (an ``HGETALL`` of a four-field hash each, over HeTu's own pipelined Redis client):
the floor of a call that needs N round trips, on this transport and Redis client, with
none of the engine's work (no codec layers, session, rows or systems).
"""

from __future__ import annotations

import argparse

from sanic import Sanic, response

ROW_KEY = "hetu-bench:floor-row"


def create_app(redis_url: str | None = None) -> Sanic:
    app = Sanic("HeTuBenchEcho", configure_logging=False)

    async def health(request):
        return response.text("echo")

    async def echo(request, ws):
        async for message in ws:
            await ws.send(message)

    app.add_route(health, "/", name="health")
    app.add_websocket_route(echo, "/echo", name="echo")
    if redis_url:
        add_redis_echo(app, redis_url)
    return app


def add_redis_echo(app: Sanic, redis_url: str) -> None:
    """``/echo-redis/<trips>``: echo each message after ``trips`` Redis round trips."""
    from hetu.data.backend.redis.pipelined import PipelinedRedis

    async def open_redis(app_, _loop):
        app_.ctx.redis = PipelinedRedis(redis_url)
        await app_.ctx.redis.execute("HSET", ROW_KEY, "id", "1", "_version", "1", "number", "7", "owner", "0")

    async def close_redis(app_, _loop):
        await app_.ctx.redis.close()

    async def echo_redis(request, ws, trips: int):
        redis = request.app.ctx.redis
        async for message in ws:
            for _ in range(trips):
                await redis.execute("HGETALL", ROW_KEY)
            await ws.send(message)

    app.register_listener(open_redis, "before_server_start")
    app.register_listener(close_redis, "after_server_stop")
    app.add_websocket_route(echo_redis, "/echo-redis/<trips:int>", name="echo_redis")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", default=None, help="serve /echo-redis/N with this Redis")
    args = parser.parse_args()
    app = create_app(args.redis_url)
    app.prepare(host=args.host, port=args.port, single_process=True, motd=False, access_log=False)
    Sanic.serve_single(primary=app)


if __name__ == "__main__":
    main()
