"""The bundle in a real browser (headless Chromium): its own WebSocket and Web Crypto,
loaded with <script type="module"> and nothing else. Skipped where Chromium is absent."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.js.conftest import SCRIPTS

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class PageServer:
    """Serves the test page and the bundle over HTTP; collects what the page reports."""

    def __init__(self, bundle) -> None:
        self.reports: queue.Queue = queue.Queue()
        files = {"/": (SCRIPTS / "browser_page.html", "text/html"),
                 "/hetu-client.js": (bundle, "text/javascript")}
        reports = self.reports

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                found = files.get(self.path.split("?")[0])
                if found is None:
                    self.send_error(404)
                    return
                body = found[0].read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", found[1])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                reports.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_the_bundle_works_in_a_browser(server, bundle, tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("chromium not installed")
    pages = PageServer(bundle)
    chrome = subprocess.Popen(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", f"http://127.0.0.1:{pages.port}/?ws={server.url}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        report = pages.reports.get(timeout=40)
    except queue.Empty:
        pytest.fail("the page reported nothing within 40 s")
    finally:
        chrome.kill()
        chrome.wait()
        pages.close()
    assert report["ok"], report
    result = report["result"]
    assert "HeTu" in result["motd"] and result["login"] == {"id": 77}
    assert result["idType"] == "bigint"
    assert result["rows"] == ["from the browser"] and result["get"] == "from the browser"
    assert result["rejected"] == "RATE_LIMITED"
    assert result["state"] == "closed" and result["hasGlobalWebSocket"] is True
