"""Choosing the weight format the CPU computes with.

llama.cpp's CPU backend multiplies a batch of rows with GEMM kernels (llamafile's tinyBLAS, or
repacked layouts) for F32/F16/BF16, Q8_0, Q4_0, Q5_0 and IQ4_NL, but Q4_1 and Q5_1 weights only
have a dot product per row: batching many sequences then buys almost nothing. Measured with
SmolLM2-135M on 2 cores, 16 sequences per step: Q4_1 56 ms, the same weights as Q8_0 34 ms.

So in `auto` mode wai converts Q4_1/Q5_1 files to Q8_0 once, into its cache directory, and
serves that. Going up from 4/5 bits to 8 adds little error (Q8_0's step is about 1/16 of
Q4_1's), but the output is not bit-identical to llama.cpp running the original file; `as-is`
keeps the file untouched.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path
from typing import Literal

import llama_cpp as L

from wai.progress import Progress, watch_file

log = logging.getLogger("wai.weights")

# "auto": the format the CPU computes fastest with; "as-is": the file as it is
WeightsMode = Literal["auto", "as-is"]


# llama_ftype values (llama.h)
_FTYPE_Q4_1 = 3
_FTYPE_Q5_1 = 9
_FTYPE_Q8_0 = 7
_NO_BATCHED_KERNEL = {_FTYPE_Q4_1: "Q4_1", _FTYPE_Q5_1: "Q5_1"}


def file_type(meta: dict[str, str]) -> int | None:
    value = meta.get("general.file_type")
    return int(value) if value is not None and value.isdigit() else None


def _converted(path: Path, cache_dir: Path) -> Path:
    st = path.stat()
    return cache_dir / f"{path.stem}.{st.st_size}-{st.st_mtime_ns}.q8_0.gguf"


def compute_path(path: Path, meta: dict[str, str], mode: WeightsMode, cache_dir: Path) -> Path:
    """The file to load for `path`: itself, or its cached Q8_0 conversion."""
    ftype = file_type(meta)
    if mode == "as-is" or ftype not in _NO_BATCHED_KERNEL:
        return path
    target = _converted(path, cache_dir)
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    log.info(
        "converting %s (%s) to Q8_0 for batched CPU kernels: %s",
        path.name,
        _NO_BATCHED_KERNEL[ftype],
        target,
    )
    params = L.llama_model_quantize_default_params()
    params.ftype = _FTYPE_Q8_0
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    progress = Progress(f"converting {path.name} to Q8_0")
    stop = watch_file(
        lambda: tmp.stat().st_size if tmp.exists() else 0,
        compute_size(path, {"general.file_type": str(ftype)}, "auto", cache_dir),
        progress,
    )
    try:
        rc = L.llama_model_quantize(str(path).encode(), str(tmp).encode(), ctypes.byref(params))
    finally:
        stop()
    if rc == 0:
        progress.done()
    if rc != 0:
        tmp.unlink(missing_ok=True)
        log.warning("Q8_0 conversion of %s failed (rc=%d); serving the file as is", path, rc)
        return path
    tmp.replace(target)
    return target


# bits per weight: what a Q4_1/Q5_1 file grows by when computed as Q8_0 (8.5 bits)
_GROWTH = {_FTYPE_Q4_1: 8.5 / 5.0, _FTYPE_Q5_1: 8.5 / 6.0}


def compute_size(path: Path, meta: dict[str, str], mode: WeightsMode, cache_dir: Path) -> int:
    """Bytes of the weights the engine will load for `path` (its conversion's, if one is or
    would be made), without converting anything."""
    size = path.stat().st_size
    ftype = file_type(meta)
    if mode == "as-is" or ftype not in _NO_BATCHED_KERNEL:
        return size
    target = _converted(path, cache_dir)
    if target.exists():
        return target.stat().st_size
    return int(size * _GROWTH[ftype])
