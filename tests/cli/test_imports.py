"""The build and upgrade commands load an app without importing the server (Sanic, the
gateway): app loading lives in hetu/appfile.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_build_and_upgrade_do_not_import_the_server(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("import hetu\n\n\nclass Item(hetu.BaseComponent):\n    value: int = 0\n")
    probe = (
        "import sys\n"
        "import hetu.cli.build, hetu.cli.upgrade\n"
        "from hetu.appfile import load_app_file\n"
        f"module = load_app_file({str(app)!r})\n"
        "assert hasattr(module, 'Item')\n"
        "print(sorted(m for m in sys.modules if m.startswith('hetu.server') or m == 'sanic'))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
