"""engine/weights.py: Q4_1/Q5_1 files computed as Q8_0, converted once into the cache."""

from __future__ import annotations

from pathlib import Path

from wai.catalog import embedded_model_path
from wai.engines.llamacpp.gguf import read_metadata
from wai.weights.quantize import compute_path, file_type


def test_q4_1_is_converted_once_and_reused(tmp_path: Path) -> None:
    src = embedded_model_path()
    meta = read_metadata(src)
    assert file_type(meta) == 3  # Q4_1
    out = compute_path(src, meta, "auto", tmp_path)
    assert out != src and out.parent == tmp_path and out.name.endswith(".q8_0.gguf")
    assert file_type(read_metadata(out)) == 7  # Q8_0
    mtime = out.stat().st_mtime_ns
    assert compute_path(src, meta, "auto", tmp_path) == out
    assert out.stat().st_mtime_ns == mtime  # not converted again
    assert not list(tmp_path.glob("*.tmp*"))


def test_as_is_and_other_formats_are_left_alone(tmp_path: Path) -> None:
    src = embedded_model_path()
    assert compute_path(src, read_metadata(src), "as-is", tmp_path) == src
    assert compute_path(src, {"general.file_type": "7"}, "auto", tmp_path) == src
    assert compute_path(src, {}, "auto", tmp_path) == src
    assert not list(tmp_path.iterdir())
