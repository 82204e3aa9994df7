"""`hetu build` TypeScript output works with the SDK: the chat example's rows type-check
against the SDK's built declarations (`tsc --noEmit`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.js.conftest import CHAT_APP, ROOT, SCRIPTS, SDK

TSC = SDK / "node_modules" / "typescript" / "bin" / "tsc"


def generate_chat_types(output: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hetu", "build", f"--app-file={CHAT_APP}", "--namespace=Chat", f"--output={output}"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0, result.stderr


def typecheck(folder: Path, *files: str) -> subprocess.CompletedProcess:
    config = {
        "compilerOptions": {
            "strict": True, "noEmit": True, "target": "ES2020", "module": "ESNext",
            "moduleResolution": "Bundler", "lib": ["ES2020", "DOM"], "types": [],
            "paths": {"hetu-client": [str(SDK / "dist" / "hetu-client.d.ts")]},
        },
        "files": list(files),
    }
    (folder / "tsconfig.json").write_text(json.dumps(config, indent=2))
    return subprocess.run(["node", str(TSC), "-p", str(folder / "tsconfig.json")], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def chat_types(tmp_path, bundle) -> Path:
    generate_chat_types(tmp_path / "components.ts")
    shutil.copy(SCRIPTS / "typed_chat.ts", tmp_path / "typed_chat.ts")
    return tmp_path


def test_generated_chat_types_type_check_with_the_sdk(chat_types):
    text = (chat_types / "components.ts").read_text()
    assert "export interface ChatMessage" in text and "export interface ComponentRows" in text
    result = typecheck(chat_types, "typed_chat.ts", "components.ts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_field_the_generated_types_lack_fails_the_check(chat_types):
    # the same usage against rows without `text`: the check must catch it
    components = chat_types / "components.ts"
    components.write_text(components.read_text().replace("  text: string;\n", ""))
    result = typecheck(chat_types, "typed_chat.ts", "components.ts")
    assert result.returncode != 0
    assert "text" in result.stdout
