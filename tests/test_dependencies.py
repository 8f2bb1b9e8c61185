"""Every package wai imports is installed by wai's declared dependencies (not by the dev extras,
not by whatever the venv happens to hold): `pip install .` alone must give a working server."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

WAI = Path(__file__).resolve().parent.parent / "wai"


def _imports() -> set[str]:
    names: set[str] = set()
    for path in WAI.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"wai", "__future__"}


def _closure(dist: str) -> set[str]:
    """Distributions installed by `pip install dist` (no extras), normalised names."""
    seen: set[str] = set()
    todo = [dist]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        for line in md.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_every_import_is_a_declared_dependency() -> None:
    installed = _closure("wai")
    providers = md.packages_distributions()
    missing = {}
    for name in _imports():
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(name, [])}
        if not dists & installed:
            missing[name] = sorted(dists)
    assert not missing, f"imported but not installed by wai's dependencies: {missing}"


def test_fastapis_own_imports_come_along() -> None:
    # fastapi 0.163 imports opentelemetry at import time
    assert "opentelemetry-api" in _closure("wai")
