"""The repository's docs stand alone: every file they point at is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# repository paths written in backticks or as link targets: a/b/c.ext or a/b/
GENERATED = ("bench/.build/", "bench/out/")  # made by the benchmarks, not in the repository
PATH = re.compile(r"(?:`|\]\()((?:\.\./|\./)?[\w.-]+/[\w./-]*\w(?:\.\w+)?/?)(?:`|\))")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_link_leaves_the_repository(doc: Path) -> None:
    text = doc.read_text()
    assert "../" not in text, "docs must not point outside the repository"
    for match in PATH.finditer(text):
        ref = match.group(1)
        if ref.startswith(("http", "@", "/")) or "<" in ref or "*" in ref or "…" in ref:
            continue
        if not ref.startswith(
            ("wai/", "tests/", "bench/", "scripts/", "docs/", "integrations/", ".ci/")
        ) or ref.startswith(GENERATED):
            continue
        assert (ROOT / ref.split("#")[0]).exists(), f"{doc.name} points at missing {ref}"
