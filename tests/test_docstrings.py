"""Every public top-level class and function of the package says what it is for."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hetu"


def test_every_public_top_level_class_and_function_has_a_docstring():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                    and not node.name.startswith("_") and ast.get_docstring(node) is None):
                missing.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert missing == []
