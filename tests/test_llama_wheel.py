"""scripts/llama_wheel.py: the build arguments for llama.cpp, decided per machine."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lw() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "llama_wheel", ROOT / "scripts" / "llama_wheel.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def test_x86_builds_leave_amx_out(lw: ModuleType) -> None:
    assert lw.cmake_args("", None, x86=True, no_amx_ok=True) == [
        f"-DCMAKE_C_FLAGS={NO_AMX}",
        f"-DCMAKE_CXX_FLAGS={NO_AMX}",
    ]


def test_user_flags_are_kept_and_merged(lw: ModuleType) -> None:
    args = lw.cmake_args("-DGGML_BLAS=ON -DCMAKE_C_FLAGS=-O2", "cuda", x86=True, no_amx_ok=True)
    assert args == [
        "-DGGML_BLAS=ON",
        "-DGGML_CUDA=on",
        f"-DCMAKE_C_FLAGS=-O2 {NO_AMX}",
        f"-DCMAKE_CXX_FLAGS={NO_AMX}",
    ]


@pytest.mark.parametrize(("x86", "ok"), [(False, True), (True, False)])
def test_no_amx_flags_where_they_do_not_apply(lw: ModuleType, x86: bool, ok: bool) -> None:
    # Arm compilers reject -mno-amx-*, and a compiler without AMX options cannot emit AMX
    assert lw.cmake_args("", "metal", x86=x86, no_amx_ok=ok) == ["-DGGML_METAL=on"]


def test_this_compiler_is_asked(lw: ModuleType) -> None:
    assert lw.compiler_accepts(("-O2",))
    assert not lw.compiler_accepts(("-mno-such-option-at-all",))


@pytest.mark.parametrize(
    ("line", "pct"),
    [
        ("  [12/193] /usr/bin/g++ -c ggml.cpp", 6),
        ("[ 45%] Building CXX object x.o", 45),
        ("  running cmake", None),
    ],
)
def test_build_progress_is_read_from_ninja_and_make(
    lw: ModuleType, line: str, pct: int | None
) -> None:
    assert lw._progress(line) == pct
