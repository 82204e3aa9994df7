"""`hetu upgrade` and `hetu start` on a changed app, as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import free_port

APP = '''
import numpy as np
import hetu

@hetu.define_component(namespace="ops", permission=hetu.Permission.EVERYBODY)
class Hero(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, unique=True)
{extra}

@hetu.define_system(namespace="ops", components=(Hero,), permission=hetu.Permission.EVERYBODY)
async def make(ctx, owner: int):
    row = Hero.new_row()
    row.owner = owner
    await ctx.repo[Hero].insert(row)
'''


def hetu_cmd(*args, cwd: Path, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    return subprocess.run([sys.executable, "-m", "hetu", *args], cwd=cwd, input=stdin, text=True,
                          capture_output=True, timeout=timeout, env=env)


def write_project(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "app.py").write_text(APP.format(extra=extra))
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "APP_FILE": "app.py", "NAMESPACE": "ops", "INSTANCES": ["main"], "DEBUG": 0,
        "LISTEN": f"127.0.0.1:{free_port()}", "WORKER_NUM": 1,
        "BACKENDS": {"default": {"master": "sqlite:///./ops.db"}},
    }))
    return config


def add_heroes(tmp_path: Path, n: int) -> None:
    code = (
        "import asyncio\nfrom hetu.testing import Sandbox\nimport app\n"
        "async def main():\n"
        f"    sb = await Sandbox.create('ops', app, instance_name='main', db_path={str(tmp_path / 'ops.db')!r})\n"
        f"    for i in range({n}):\n        await sb.call_system('make', i + 1)\n"
        "    await sb.aclose()\n"
        "asyncio.run(main())\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{Path(__file__).parents[2]}:{tmp_path}")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path, timeout=60)


def test_upgrade_then_start_refuses_a_changed_schema_until_upgraded(tmp_path):
    config = write_project(tmp_path, "")
    first = hetu_cmd("upgrade", f"--config={config}", "-y", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "+ Hero: created" in first.stdout
    add_heroes(tmp_path, 3)

    write_project(tmp_path, '    hp: np.int32 = hetu.property_field(100)')
    refused = hetu_cmd("start", f"--config={config}", cwd=tmp_path, timeout=30)
    assert refused.returncode != 0
    assert "hetu upgrade" in refused.stdout + refused.stderr

    upgraded = hetu_cmd("upgrade", f"--config={config}", "-y", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "~ Hero: migrated (3 rows)" in upgraded.stdout
    assert "hp is added" in upgraded.stdout
    assert list((tmp_path / "maint" / "migration").glob("Hero_v*_to_v*.py"))
    assert "wrote migration script" in upgraded.stderr and "saved 3 rows of Hero" in upgraded.stderr

    # a lossy change is refused, then applied with --drop-data (asked twice without -y)
    write_project(tmp_path, "")
    lossy = hetu_cmd("upgrade", f"--config={config}", "-y", cwd=tmp_path)
    assert lossy.returncode == 1 and "--drop-data" in lossy.stderr and "hp is removed" in lossy.stdout
    cancelled = hetu_cmd("upgrade", f"--config={config}", "--drop-data", cwd=tmp_path, stdin="n\n")
    assert cancelled.returncode != 0 and "Aborted" in cancelled.stderr
    dropped = hetu_cmd("upgrade", f"--config={config}", "--drop-data", cwd=tmp_path, stdin="y\ny\n")
    assert dropped.returncode == 0, dropped.stderr
    assert "~ Hero: migrated (3 rows)" in dropped.stdout


def test_upgrade_needs_a_namespace_and_instance_without_config(tmp_path):
    result = hetu_cmd("upgrade", "-y", cwd=tmp_path)
    assert result.returncode == 2 and "--namespace and --instance" in result.stderr
