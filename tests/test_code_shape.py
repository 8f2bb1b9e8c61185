"""The shape of the code: no function in wai/ outgrows a screen (60 lines, decorators and
docstring included), so that each says what it does in one reading."""

from __future__ import annotations

import ast
from pathlib import Path

MAX_LINES = 60
WAI = Path(__file__).resolve().parent.parent / "wai"


def long_functions(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = (node.end_lineno or node.lineno) - first + 1
                if lines > MAX_LINES:
                    where = path.relative_to(root.parent)
                    found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_a_screen() -> None:
    assert long_functions(WAI) == []


def test_the_check_sees_a_long_function_and_counts_its_decorators(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES - 2))
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "ok.py").write_text(f"def fits():\n{body}\n    return 1\n")
    (pkg / "long.py").write_text(f"@staticmethod\ndef too_long():\n{body}\n    return 1\n")
    assert long_functions(pkg) == [f"pkg/long.py:2 too_long ({MAX_LINES + 1} lines)"]
