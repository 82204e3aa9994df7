"""Serving a directory of files (a web client) beside the websocket: ``STATIC_DIR`` at
``STATIC_URL``."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from sanic import Sanic, response
from sanic.exceptions import NotFound

DEFAULT_STATIC_URL = "/web"
STATIC_URL_FORM = re.compile(r"(/[A-Za-z0-9._~-]+)+")


class StaticConfigError(ValueError):
    """``STATIC_DIR`` or ``STATIC_URL`` cannot be served."""


def static_settings(config: dict) -> tuple[Path, str] | None:
    """The directory (resolved) and URL prefix of ``STATIC_DIR`` and ``STATIC_URL``, or
    None when ``STATIC_DIR`` is not set. A relative ``STATIC_DIR`` is relative to the
    working directory here; ``hetu start`` makes it relative to the config file first.

    ``static_settings({"STATIC_DIR": "/srv/chat/web"})`` is ``(Path("/srv/chat/web"), "/web")``.
    """
    if not config.get("STATIC_DIR"):
        return None
    directory = Path(config["STATIC_DIR"])
    if not directory.is_dir():
        raise StaticConfigError(
            f"STATIC_DIR {directory.absolute()} is not a directory: create it, or remove STATIC_DIR "
            "(--static-dir) to serve no files")
    prefix = "/" + str(config.get("STATIC_URL") or DEFAULT_STATIC_URL).strip("/")
    if not STATIC_URL_FORM.fullmatch(prefix):
        raise StaticConfigError(
            f"STATIC_URL {prefix!r} is not a URL path prefix such as /web "
            "(letters, digits and . _ ~ - between slashes; not / itself)")
    if prefix == "/hetu" or prefix.startswith("/hetu/"):
        raise StaticConfigError(
            f"STATIC_URL {prefix!r} overlaps the websocket route /hetu/<instance>: choose another, such as /web")
    return directory.resolve(), prefix


def find_static_file(directory: Path, relative: str) -> Path | None:
    """What the decoded URL path ``relative`` names under ``directory`` (resolved), or
    None when nothing does or it would lie outside it: ``..`` and hidden names
    (``.git``, ``.env``) are refused, and so are symbolic links leading out.

    ``find_static_file(Path("/srv/web"), "css/site.css")`` is ``Path("/srv/web/css/site.css")``
    when that file exists; ``find_static_file(Path("/srv/web"), "../secret")`` is None.
    """
    parts = [part for part in relative.split("/") if part]
    if any(part.startswith(".") or "\\" in part or "\0" in part for part in parts):
        return None
    target = directory.joinpath(*parts).resolve()
    if not target.is_relative_to(directory) or not target.exists():
        return None
    return target


def add_static_routes(app: Sanic, directory: Path, prefix: str) -> None:
    """Serve the files under ``directory`` at ``prefix/...``; a directory's URL serves
    its ``index.html``. Anything else is a 404."""

    async def static_file(request, path: str = ""):
        found = find_static_file(directory, unquote(path))
        if found is not None and found.is_dir():
            if not request.path.endswith("/"):
                # the page's relative links resolve against the URL ending in "/"
                query = f"?{request.query_string}" if request.query_string else ""
                return response.redirect(f"{request.path}/{query}", status=308)
            found = found / "index.html"
        if found is None or not found.is_file():
            raise NotFound(f"{request.path} not found")
        return await response.file(found, request_headers=request.headers)

    for uri, name in ((prefix, "static_prefix"), (f"{prefix}/", "static_index"),
                      (f"{prefix}/<path:path>", "static")):
        app.add_route(static_file, uri, methods=["GET", "HEAD"], name=name, strict_slashes=True)
