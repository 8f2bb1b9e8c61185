"""weights/whisper.py: the embedded Whisper base joined from its parts, hash-checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from wai.weights.whisper import SIDE_FILES, assembled, is_model_dir, model_bytes


def _parts(tmp: Path) -> list[Path]:
    src = tmp / "src"
    src.mkdir()
    for name in SIDE_FILES:
        (src / name).write_text(name)
    (src / "model.bin.part1").write_bytes(b"first half|")
    (tmp / "model.bin.part2").write_bytes(b"second half")
    return [src / "model.bin.part1", tmp / "model.bin.part2"]


def test_the_parts_are_joined_once_and_checked(tmp_path: Path) -> None:
    parts = _parts(tmp_path)
    digest = hashlib.sha256(b"first half|second half").hexdigest()
    out = assembled(parts, tmp_path / "cache", "whisper-base", digest)
    assert (out / "model.bin").read_bytes() == b"first half|second half"
    assert is_model_dir(out) and model_bytes(out) == 22
    assert all((out / f).read_text() == f for f in SIDE_FILES)
    mtime = (out / "model.bin").stat().st_mtime_ns
    assert assembled(parts, tmp_path / "cache", "whisper-base", digest) == out
    assert (out / "model.bin").stat().st_mtime_ns == mtime  # not joined again


def test_parts_that_do_not_make_the_file_leave_nothing(tmp_path: Path) -> None:
    parts = _parts(tmp_path)
    with pytest.raises(ValueError, match="SHA-256"):
        assembled(parts, tmp_path / "cache", "whisper-base", "0" * 64)
    assert not list((tmp_path / "cache" / "whisper-base").glob("model.bin*"))
    assert not is_model_dir(tmp_path / "cache" / "whisper-base")
