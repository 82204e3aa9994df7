"""The config file: the documented template, interpolation, !eval, !include, TLS."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from hetu.client import HeTuClient
from hetu.common.yamlloader import load_config
from tests.conftest import free_port
from tests.ops.test_upgrade_command import hetu_cmd
from tests.server.conftest import APP, ServerProcess, stop_group

TEMPLATE = Path(__file__).parents[2] / "config.yml"


def test_the_template_documents_every_key_the_server_reads():
    config = load_config(str(TEMPLATE))
    for key in ("APP_FILE", "NAMESPACE", "INSTANCES", "DEBUG", "LISTEN", "WORKER_NUM", "ACCESS_LOG",
                "WEBSOCKET_MAX_SIZE", "WEBSOCKET_PING_INTERVAL", "WEBSOCKET_PING_TIMEOUT",
                "ENDPOINT_CALL_IDLE_TIMEOUT", "MAX_ANONYMOUS_CONNECTION_BY_IP", "CLIENT_SEND_LIMITS",
                "SERVER_SEND_LIMITS", "MAX_ROW_SUBSCRIPTION", "MAX_INDEX_SUBSCRIPTION", "PACKET_LAYERS",
                "BACKENDS", "LOGGING", "PROXIES_COUNT", "WORKER_LEASE_SECONDS"):
        assert key in config, key
    text = TEMPLATE.read_text()
    for key in ("CERT_CHAIN", "STATIC_DIR", "STATIC_URL"):
        assert f"# {key}:" in text, key  # documented, commented out
    for key in ("servants", "master_weight", "replica_probe_interval", "replica_max_lag"):
        assert f"#   {key}:" in text, key  # keys of a Redis backend entry, commented out
    assert config["WEBSOCKET_MAX_SIZE"] == 2**19 and config["ENDPOINT_CALL_IDLE_TIMEOUT"] == 120


def test_the_template_serves_an_app(tmp_path):
    shutil.copy(TEMPLATE, tmp_path / "config.yml")
    shutil.copy(APP, tmp_path / "app.py")
    text = (tmp_path / "config.yml").read_text().replace("NAMESPACE: game_short_name", "NAMESPACE: pytest_srv")
    (tmp_path / "config.yml").write_text(text)
    port = free_port()
    env = dict(os.environ, HETU_LISTEN=f"127.0.0.1:{port}", HETU_AUTH_KEY="k3y", HETU_WORKERS="2",
               PYTHONPATH=str(Path(__file__).parents[2]))
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["python", "-m", "hetu", "start", "--config", str(tmp_path / "config.yml")],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert "HeTu" in _wait_http(f"http://127.0.0.1:{port}/", proc)
        _wait_for(lambda: log.read_text().count("accepting connections") == 2)  # HETU_WORKERS
        assert (tmp_path / "hetu.db").exists()  # the relative SQLite path, next to the config
        assert "INFO HeTu.root" in log.read_text()  # the template's LOGGING format
        # past Sanic's startup-ack window: a bounded wait, see tests/ops/test_shutdown.py
        time.sleep(3.0)
    finally:
        proc.terminate()  # a clean stop: workers release their ids and exit
        try:
            proc.wait(30)
        finally:
            stop_group(proc)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text
    assert text.count("released worker id") == 2


def _wait_for(predicate, timeout=40.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _wait_http(url, proc, context=None) -> str:
    import time

    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("server exited")
        try:
            return urllib.request.urlopen(url, timeout=1, context=context).read().decode()
        except OSError:
            time.sleep(0.2)
    raise AssertionError("server did not answer")


def test_environment_interpolation_and_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("HETU_T_HOST", "db.internal")
    monkeypatch.delenv("HETU_T_MISSING", raising=False)
    monkeypatch.delenv("HETU_T_OTHER", raising=False)
    path = tmp_path / "c.yml"
    path.write_text(
        'A: "redis://${HETU_T_HOST}:${HETU_T_MISSING:-6379}/0"\n'
        "B: ${HETU_T_MISSING:-}\n"
        "C: '${HETU_T_MISSING:-a:b:c}'\n"
        "D: 5\n"
        "E: !eval [\"${HETU_T_OTHER:-3} * 2\"]\n"
    )
    assert load_config(str(path)) == {"A": "redis://db.internal:6379/0", "B": "", "C": "a:b:c", "D": 5, "E": 6}
    monkeypatch.setenv("HETU_T_MISSING", "")
    assert load_config(str(path))["B"] == ""  # set but empty wins over the default


def test_a_missing_variable_is_a_clear_startup_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HETU_T_NOPE", raising=False)
    path = tmp_path / "config.yml"
    path.write_text("NAMESPACE: x\nINSTANCES: [a]\nBACKENDS: {default: {master: '${HETU_T_NOPE}'}}\n")
    result = hetu_cmd("start", f"--config={path}", cwd=tmp_path)
    assert result.returncode == 1
    assert "HETU_T_NOPE" in result.stderr and "not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_app_file_is_a_clear_startup_error(tmp_path):
    result = hetu_cmd("start", f"--app-file={tmp_path / 'nope.py'}", "--namespace=x", "--instance=y",
                      f"--db=sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert result.returncode == 1
    assert "nope.py does not exist" in result.stderr and "Traceback" not in result.stderr


def test_include_and_eval_errors(tmp_path):
    (tmp_path / "backends.yml").write_text("default: {master: 'sqlite:///./x.db'}\n")
    (tmp_path / "layers.json").write_text('[{"type": "jsonb"}]')
    (tmp_path / "motd.txt").write_text("hello")
    path = tmp_path / "c.yml"
    path.write_text("BACKENDS: !include backends.yml\nPACKET_LAYERS: !include layers.json\n"
                    "MOTD: !include motd.txt\n")
    assert load_config(str(path)) == {"BACKENDS": {"default": {"master": "sqlite:///./x.db"}},
                                      "PACKET_LAYERS": [{"type": "jsonb"}], "MOTD": "hello"}
    path.write_text("X: !eval 5\n")
    with pytest.raises(yaml.YAMLError, match="sequence"):
        load_config(str(path))
    path.write_text("- a\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(str(path))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
async def test_cert_directory_serves_wss(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(certs / "privkey.pem"), "-out", str(certs / "fullchain.pem")],
                   check=True, capture_output=True)
    srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'tls.db'}", CERT_CHAIN=str(certs), ready_scheme="https")
    try:
        context = ssl.create_default_context(cafile=str(certs / "fullchain.pem"))
        client = await HeTuClient.connect(srv.url.replace("ws://", "wss://"), auth_key="password123", ssl=context)
        assert await client.call("post", 1, 2) > 0
        await client.close()
    finally:
        srv.stop()
