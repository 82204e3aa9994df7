"""STATIC_DIR / STATIC_URL: a real server serving a directory beside the websocket."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest
import yaml

from hetu.client import HeTuClient
from hetu.server.static import find_static_file
from tests.conftest import free_port
from tests.ops.test_upgrade_command import hetu_cmd
from tests.server.conftest import APP, AUTH_KEY, ServerProcess

SECRET = "not for the web"


def make_site(root: Path) -> Path:
    """``root/www`` with a page, a script, a subdirectory and things that must stay
    unreachable: ``root/secret.txt``, a hidden file, a link leading out."""
    www = root / "www"
    (www / "docs").mkdir(parents=True)
    (www / "index.html").write_text("<h1>chat</h1>")
    (www / "chat.js").write_text("export const x = 1;\n")
    (www / "style.css").write_text("body { margin: 0 }\n")
    (www / "my page.txt").write_text("spaces\n")
    (www / "docs" / "index.html").write_text("<h1>docs</h1>")
    (www / ".env").write_text(SECRET)
    (root / "secret.txt").write_text(SECRET)
    (www / "outside.txt").symlink_to(root / "secret.txt")
    return www


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of one request sent exactly as written (no redirects
    followed, no normalisation of ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        reply = conn.getresponse()
        headers = {name.lower(): value for name, value in reply.getheaders()}
        return reply.status, headers, reply.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server whose config says ``STATIC_DIR: www``, relative to the config file."""
    tmp = tmp_path_factory.mktemp("static")
    make_site(tmp)
    srv = ServerProcess(tmp, f"sqlite:///{tmp / 'srv.db'}", STATIC_DIR="www")
    yield srv
    srv.stop()


def test_a_file_is_served_with_its_content_type(site):
    status, headers, body = get(site.port, "/web/chat.js")
    assert status == 200
    assert headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert body == "export const x = 1;\n"
    status, headers, body = get(site.port, "/web/style.css")
    assert (status, headers["content-type"].split(";")[0], body) == (200, "text/css", "body { margin: 0 }\n")


def test_an_encoded_file_name_is_decoded_once(site):
    assert get(site.port, "/web/my%20page.txt")[::2] == (200, "spaces\n")
    assert get(site.port, "/web/my%2520page.txt")[0] == 404


def test_the_prefix_serves_index_html(site):
    status, headers, body = get(site.port, "/web/")
    assert (status, body) == (200, "<h1>chat</h1>")
    assert headers["content-type"].startswith("text/html")


def test_a_directory_url_without_its_slash_redirects_to_it(site):
    """So that the page's relative links (``chat.js``) resolve inside the directory."""
    status, headers, _ = get(site.port, "/web")
    assert (status, headers["location"]) == (308, "/web/")
    status, headers, _ = get(site.port, "/web/docs?lang=en")
    assert (status, headers["location"]) == (308, "/web/docs/?lang=en")
    assert get(site.port, "/web/docs/")[::2] == (200, "<h1>docs</h1>")


def test_a_missing_file_is_404(site):
    assert get(site.port, "/web/nope.js")[0] == 404
    assert get(site.port, "/webnope")[0] == 404


@pytest.mark.parametrize("path", [
    "/web/../secret.txt",
    "/web/%2e%2e/secret.txt",
    "/web/%2E%2E/secret.txt",
    "/web/..%2fsecret.txt",
    "/web/%2e%2e%2fsecret.txt",
    "/web/docs/%2e%2e/%2e%2e/secret.txt",
    "/web/%252e%252e/secret.txt",
    "/web/%2fetc%2fpasswd",
    "/web/.env",
    "/web/%2eenv",
    "/web/outside.txt",
])
def test_nothing_outside_the_directory_is_reachable(site, path):
    status, _, body = get(site.port, path)
    assert status in (403, 404), (path, status)
    assert SECRET not in body and "root:" not in body


def test_the_health_route_is_unchanged(site):
    status, _, body = get(site.port, "/")
    assert status == 200 and body.startswith("Powered by HeTu")


async def test_the_websocket_works_alongside(site):
    client = await HeTuClient.connect(site.url, auth_key=AUTH_KEY)
    try:
        assert await client.call("login", 4242) == {"id": 4242}
    finally:
        await client.close()


def test_static_url_sets_the_prefix(tmp_path):
    make_site(tmp_path)
    srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'srv.db'}", STATIC_DIR=str(tmp_path / "www"),
                        STATIC_URL="/assets/")
    try:
        assert get(srv.port, "/assets/chat.js")[::2] == (200, "export const x = 1;\n")
        assert get(srv.port, "/assets/")[::2] == (200, "<h1>chat</h1>")
        assert get(srv.port, "/web/chat.js")[0] == 404
    finally:
        srv.stop()


def test_without_static_dir_nothing_is_served(server):
    assert get(server.port, "/web/")[0] == 404


def write_config(tmp_path: Path, **keys) -> Path:
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "APP_FILE": str(APP), "NAMESPACE": "pytest_srv", "INSTANCES": ["test"],
        "LISTEN": f"127.0.0.1:{free_port()}", "BACKENDS": {"default": {"master": "sqlite:///./srv.db"}},
        **keys,
    }))
    return config


def test_a_missing_static_dir_fails_startup_with_a_clear_message(tmp_path):
    config = write_config(tmp_path, STATIC_DIR="web")
    result = hetu_cmd("start", f"--config={config}", cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: STATIC_DIR {tmp_path / 'web'} is not a directory: create it, or remove STATIC_DIR "
        "(--static-dir) to serve no files")


def test_a_missing_static_dir_flag_fails_startup_with_a_clear_message(tmp_path):
    result = hetu_cmd("start", f"--app-file={APP}", "--namespace=pytest_srv", "--instance=test",
                      f"--port={free_port()}", "--static-dir=missing", cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert f"STATIC_DIR {tmp_path / 'missing'} is not a directory" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url, problem", [
    ("/hetu", "overlaps the websocket route"),
    ("/", "is not a URL path prefix"),
    ("/a b", "is not a URL path prefix"),
])
def test_a_static_url_that_cannot_be_served_fails_startup(tmp_path, url, problem):
    (tmp_path / "www").mkdir()
    config = write_config(tmp_path, STATIC_DIR="www", STATIC_URL=url)
    result = hetu_cmd("start", f"--config={config}", cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert problem in result.stderr and "Traceback" not in result.stderr


def test_find_static_file_stays_inside_the_directory(tmp_path):
    www = make_site(tmp_path).resolve()
    assert find_static_file(www, "chat.js") == www / "chat.js"
    assert find_static_file(www, "docs/") == www / "docs"
    assert find_static_file(www, "") == www
    for refused in ("../secret.txt", "docs/../../secret.txt", ".env", "outside.txt", "nope.js", "a\\..\\b"):
        assert find_static_file(www, refused) is None, refused
