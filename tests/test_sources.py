"""sources.py: hf: paths in a Hugging Face cache laid out as huggingface_hub writes it, and
model_roots (no '..', no symlink escape)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wai.sources import ModelSourceError, hf_cache_dir, resolve


def _cache(tmp: Path) -> Path:
    """models--org--repo with refs/main -> snapshot abc, whose file links into blobs/."""
    repo = tmp / "hub" / "models--org--repo"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "sha").write_bytes(b"GGUF")
    snap = repo / "snapshots" / "abc" / "sub"
    snap.mkdir(parents=True)
    (snap / "m.gguf").symlink_to(repo / "blobs" / "sha")
    old = repo / "snapshots" / "old"
    old.mkdir()
    (old / "only-old.gguf").write_bytes(b"GGUF")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc\n")
    return tmp / "hub"


def test_the_cache_location_follows_huggingface_hub() -> None:
    assert hf_cache_dir({"HF_HUB_CACHE": "/a"}) == Path("/a")
    assert hf_cache_dir({"HF_HOME": "/h"}) == Path("/h/hub")
    assert hf_cache_dir({}) == Path.home() / ".cache" / "huggingface" / "hub"


def test_an_hf_path_resolves_to_the_main_snapshot_then_any(tmp_path: Path) -> None:
    env = {"HF_HUB_CACHE": str(_cache(tmp_path))}
    got = resolve(Path("hf:org/repo/sub/m.gguf"), [], env)
    assert got.name == "m.gguf" and "snapshots/abc" in str(got) and got.read_bytes() == b"GGUF"
    assert resolve(Path("hf:org/repo/only-old.gguf"), [], env).parent.name == "old"


@pytest.mark.parametrize(
    "spec, why",
    [
        ("hf:org/repo/missing.gguf", "not in the Hugging Face cache"),
        ("hf:org/other/m.gguf", "not in the Hugging Face cache"),
        ("hf:org/repo", "expected hf:ORG/REPO/FILE.gguf"),
        ("hf:org/repo/../../x.gguf", "expected hf:ORG/REPO/FILE.gguf"),
    ],
)
def test_hf_paths_that_do_not_resolve_say_why(tmp_path: Path, spec: str, why: str) -> None:
    env = {"HF_HUB_CACHE": str(_cache(tmp_path))}
    with pytest.raises(ModelSourceError, match=why):
        resolve(Path(spec), [], env)


def test_model_roots_keep_paths_inside(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    inside = root / "a.gguf"
    inside.write_bytes(b"GGUF")
    outside = tmp_path / "secret.gguf"
    outside.write_bytes(b"GGUF")
    assert resolve(inside, [root]) == inside
    assert resolve(outside, []) == outside  # no roots: anything
    with pytest.raises(ModelSourceError, match="outside model_roots"):
        resolve(outside, [root])
    with pytest.raises(ModelSourceError, match=r"'\.\.'"):
        resolve(root / ".." / "models" / "a.gguf", [root])
    escape = root / "link.gguf"
    escape.symlink_to(outside)
    with pytest.raises(ModelSourceError, match="resolves to"):
        resolve(escape, [root])
    # a root given through a symlink still contains its files
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    assert resolve(alias / "a.gguf", [alias]) == alias / "a.gguf"
    assert os.path.exists(alias / "a.gguf")
