"""The chat example's web page (examples/chat/web) in headless Chromium, served by
``hetu start`` with the example's own config: two people chatting, leaving, closing the
tab, an unreachable server, the same name in a second window. And the page's copy of the
SDK bundle is the bundle clients/js builds.

web_chat.mjs drives the pages with playwright-core (from this folder's package.json) and
prints what it saw. Skipped where Node.js or Chromium is missing.

Set WEB_CHAT_SCREENSHOT=docs/images/web-chat.png to keep the conversation's screenshot.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port
from tests.js.conftest import bundle, check, node_modules  # noqa: F401 - fixtures used below
from tests.js.test_browser import find_browser
from tests.server.conftest import ServerProcess

ROOT = Path(__file__).parents[2]
CHAT_CONFIG = ROOT / "examples" / "chat" / "server" / "config.yml"
WEB = ROOT / "examples" / "chat" / "web"
VENDORED_BUNDLE = WEB / "vendor" / "hetu-client.js"
HERE = Path(__file__).parent
DRIVER = HERE / "web_chat.mjs"
REFRESH = ("(cd clients/js && npm ci && npm run build) && "
           "cp clients/js/dist/hetu-client.js examples/chat/web/vendor/")


@pytest.fixture(scope="module")
def browser() -> str:
    """Chromium's path, with playwright-core installed next to the driver."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed")
    found = find_browser()
    if found is None:
        pytest.skip("chromium not installed")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        check(subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True,
                             text=True, timeout=300, env=dict(os.environ, CI="true", NO_COLOR="1")))
    return found


@pytest.fixture(scope="module")
def chat_page(tmp_path_factory) -> str:
    """The URL of the page, served by the chat server started from a copy of the example's
    config: its own port and SQLite file, the app and STATIC_DIR of the real example."""
    tmp = tmp_path_factory.mktemp("web-chat")
    config = yaml.safe_load(CHAT_CONFIG.read_text())
    static_dir = (CHAT_CONFIG.parent / config["STATIC_DIR"]).resolve()
    assert static_dir == WEB, f"STATIC_DIR of {CHAT_CONFIG} is {static_dir}, not the web page"
    db = f"sqlite:///{tmp / 'chat.db'}"
    port = free_port()
    config.update(
        APP_FILE=str(CHAT_CONFIG.parent / config["APP_FILE"]),
        STATIC_DIR=str(static_dir),
        LISTEN=f"127.0.0.1:{port}",
        BACKENDS={"default": {**config["BACKENDS"]["default"], "master": db}},
    )
    server = ServerProcess(tmp, db, port=port, **config)
    yield f"http://127.0.0.1:{port}{config.get('STATIC_URL', '/web')}/"
    server.stop()


def drive(scenario: str, **options: object) -> dict:
    """Run a scenario of web_chat.mjs; what it saw, as a dict."""
    result = subprocess.run(["node", str(DRIVER), scenario, json.dumps(options)], cwd=HERE,
                            capture_output=True, text=True, timeout=60)
    lines = result.stdout.strip().splitlines()
    found = json.loads(lines[-1]) if lines else {"error": "no output"}
    assert result.returncode == 0 and "error" not in found, \
        f"{scenario}: {found.get('error')}\n{result.stdout}\n{result.stderr}"
    return found


def test_two_people_see_each_other_and_chat_live(browser, chat_page, tmp_path):
    screenshot = tmp_path / "web-chat.png"
    seen = drive("conversation", browser=browser, page=chat_page, screenshot=str(screenshot))

    assert seen["problems"] == []
    assert seen["aliceSeesOnline"] == seen["bobSeesOnline"] == ["alice", "bob"]
    assert seen["aliceStatus"] == {"state": "online", "text": "Online as alice"}
    assert seen["bobStatus"] == {"state": "online", "text": "Online as bob"}
    conversation = ["hi bob, are you there?", "hello alice! your message came in live",
                    "the server pushes every new row to both pages", "and the list scrolls by itself"]
    assert seen["aliceTexts"] == seen["bobTexts"] == [
        "alice joined the chat", "bob joined the chat", *conversation]
    assert seen["bottom"] == {"lastText": conversation[-1], "atBottom": True}
    assert seen["systemMessage"]["className"] == "message system"
    assert seen["systemMessage"]["fontStyle"] == "italic" and seen["chatMessage"]["fontStyle"] == "normal"
    assert seen["sendBoxAfterSending"] == "" and seen["focused"] == "text"
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    if keep := os.environ.get("WEB_CHAT_SCREENSHOT"):
        shutil.copyfile(screenshot, keep)


def test_the_leave_button_marks_the_user_offline_for_the_others(browser, chat_page):
    seen = drive("leave", browser=browser, page=chat_page)

    assert seen["problems"] == []
    assert seen["carolSeesOnline"] == ["carol"]
    assert seen["leftMessages"] == 1
    assert seen["daveStatus"] == {"state": "offline", "text": "Offline"}
    assert seen["daveSeesJoinForm"] and seen["daveRoomHidden"]


def test_closing_the_tab_marks_the_user_offline_for_the_others(browser, chat_page):
    seen = drive("closeTab", browser=browser, page=chat_page)

    assert seen["problems"] == []
    assert seen["erinSeesOnline"] == ["erin"]


def test_an_unreachable_server_is_explained(browser, chat_page):
    nowhere = f"ws://127.0.0.1:{free_port()}/hetu/dev"
    seen = drive("unreachable", browser=browser, page=f"{chat_page}?server={nowhere}")

    assert seen["errorText"] == (f"Cannot reach the chat server at {nowhere}. Is it running? "
                             "Start it with: hetu start --config=examples/chat/server/config.yml")
    assert seen["role"] == "alert"
    assert seen["status"] == {"state": "offline", "text": "Offline"}
    assert seen["roomHidden"] and seen["nameEditable"]
    # the browser itself logs the refused websocket; nothing else may go wrong
    assert [p for p in seen["problems"] if "WebSocket connection to" not in p] == []


def test_joining_in_a_second_window_ends_the_first_for_good(browser, chat_page):
    seen = drive("joinedElsewhere", browser=browser, page=chat_page)

    assert seen["problems"] == []
    assert seen["firstError"] == "You joined as heidi in another window, so this one left the chat."
    assert seen["firstStatus"]["state"] == "offline"
    assert seen["secondStatus"] == {"state": "online", "text": "Online as heidi"}
    assert seen["secondSeesOnline"] == ["heidi"]


def test_a_name_is_the_same_user_on_the_page_and_in_the_terminal_client():
    if shutil.which("node") is None:
        pytest.skip("node not installed")
    names = ["alice", "Bob", "Zoë", "李雷", "a name with spaces", "x" * 32]
    script = (f"import {{ userIdOf }} from {json.dumps((WEB / 'user-id.js').as_uri())};"
              f"console.log(JSON.stringify({json.dumps(names)}.map(userIdOf)));")
    result = check(subprocess.run(["node", "--input-type=module", "-e", script],
                                  capture_output=True, text=True, timeout=30))
    spec = importlib.util.spec_from_file_location("chat_client", ROOT / "examples" / "chat" / "client.py")
    terminal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(terminal)

    ids = json.loads(result.stdout)
    assert ids == [terminal.user_id_of(name) for name in names]
    assert all(0 < user_id < 2**31 for user_id in ids)


def test_the_vendored_bundle_is_the_one_clients_js_builds(bundle):  # noqa: F811 - the fixture
    assert VENDORED_BUNDLE.read_bytes() == bundle.read_bytes(), \
        f"{VENDORED_BUNDLE.relative_to(ROOT)} is stale; refresh it with: {REFRESH}"
