"""The transport baseline: a bare Sanic websocket server that sends every message back.

Run as ``python -m benchmark.echo --port 8000``; clients connect to ``ws://host:port/echo``.
"""

from __future__ import annotations

import argparse

from sanic import Sanic, response


def create_app() -> Sanic:
    app = Sanic("HeTuBenchEcho", configure_logging=False)

    async def health(request):
        return response.text("echo")

    async def echo(request, ws):
        async for message in ws:
            await ws.send(message)

    app.add_route(health, "/", name="health")
    app.add_websocket_route(echo, "/echo", name="echo")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app()
    app.prepare(host=args.host, port=args.port, single_process=True, motd=False, access_log=False)
    Sanic.serve_single(primary=app)


if __name__ == "__main__":
    main()
