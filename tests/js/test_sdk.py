"""The SDK's own checks: its vitest suite passes and its bundle stands alone."""

from __future__ import annotations

import re
import subprocess

from tests.js.conftest import SDK, check, npm


def test_npm_test_passes(node_modules):
    result = check(npm("test", timeout=180))
    summary = re.search(r"Tests\s+(\d+) passed", result.stdout)
    assert summary and int(summary.group(1)) > 0, result.stdout


def test_the_bundle_imports_nothing_but_what_node_lacks(bundle):
    source = bundle.read_text()
    static_imports = re.findall(r'(?:^|[;\s])import\s*[\w{*][^;]*?from\s*"([^"]+)"', source)
    dynamic_imports = set(re.findall(r'import\("([^"]+)"\)', source))
    assert static_imports == []
    # loaded only where there is no global WebSocket / Web Crypto (Node)
    assert dynamic_imports == {"ws", "node:crypto"}


def test_the_bundle_loads_in_node_and_exports_the_api(bundle):
    script = (
        f"const m = await import({str(bundle)!r});"
        "console.log(Object.keys(m).sort().join(','));"
        "console.log(typeof m.MAX_INT64, String(m.int64('9007199254740993')));"
    )
    out = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True,
                         timeout=30, cwd=SDK)
    assert out.returncode == 0, out.stderr
    names, values = out.stdout.splitlines()
    for name in ("HeTuClient", "HeTuSession", "LiveRange", "LiveRow", "CallRejected", "CallFailed",
                 "ConnectionClosed", "HandshakeError", "int64", "MAX_INT64"):
        assert name in names.split(",")
    assert values == "bigint 9007199254740993"


def test_type_declarations_are_built(bundle):
    declarations = (SDK / "dist" / "types" / "index.d.ts").read_text()
    assert "HeTuClient" in declarations and "HeTuSession" in declarations
    assert (SDK / "dist" / "hetu-client.d.ts").read_text().strip() == 'export * from "./types/index.js";'
