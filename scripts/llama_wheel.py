"""Build (once per CPU) and install llama-cpp-python, the one native dependency.

pip's own wheel cache is keyed by package version only, so a `-march=native` wheel built on one
CPU would be reinstalled on any other (and crash there with SIGILL). This script keeps its own
wheelhouse under `$WAI_CACHE_DIR/wheels/<key>/`, where the key names the CPU model, every CPU
flag, the Python ABI and the build arguments (see wai/machine.py): a second clone on the same
machine installs in seconds, a different CPU or a GPU build compiles anew.

The build leaves out llama.cpp's x86 AMX matmul path: built by GCC 12 it loads an invalid tile
configuration and crashes the process on the first matmul (llama.cpp issue 20824), and for the
formats wai serves it brings no speed. Usage (the Makefile runs it):

    python scripts/llama_wheel.py [--gpu cuda|metal|vulkan] [--cache-dir DIR]

CMAKE_ARGS in the environment is passed on to llama.cpp's build (and is part of the key).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import ModuleType

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
NO_AMX = ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
GPU_ARGS = {
    "cuda": ["-DGGML_CUDA=on"],
    "metal": ["-DGGML_METAL=on"],
    "vulkan": ["-DGGML_VULKAN=on"],
}
ROOT = Path(__file__).resolve().parent.parent


def _machine() -> ModuleType:
    # wai/machine.py by path: wai's own dependencies are not installed yet.
    spec = importlib.util.spec_from_file_location("wai_machine", ROOT / "wai" / "machine.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses looks the module up while building classes
    spec.loader.exec_module(module)
    return module


def compiler_accepts(flags: tuple[str, ...]) -> bool:
    """Whether the C compiler knows these flags (GCC < 11 has no AMX options at all, and then
    cannot emit AMX code either)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("int main(void) { return 0; }\n")
        try:
            r = subprocess.run(
                [cc, *flags, "-c", str(src), "-o", str(Path(tmp) / "t.o")],
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError):
            return False
    return r.returncode == 0


def cmake_args(user: str, gpu: str | None, x86: bool, no_amx_ok: bool) -> list[str]:
    """The user's CMAKE_ARGS, plus the GPU backend, plus the AMX opt-out merged into any
    CMAKE_C_FLAGS/CMAKE_CXX_FLAGS the user gave."""
    args = shlex.split(user)
    args += GPU_ARGS.get(gpu or "", [])
    if x86 and no_amx_ok:
        for var in ("CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS"):
            prefix = f"-D{var}="
            mine = [a for a in args if a.startswith(prefix)]
            theirs = mine[-1][len(prefix) :] if mine else ""
            args = [a for a in args if not a.startswith(prefix)]
            args.append(prefix + " ".join(filter(None, [theirs, *NO_AMX])))
    return args


_PERCENT = re.compile(r"\[\s*(\d+)%\]")
_NINJA = re.compile(r"^\s*\[(\d+)/(\d+)\]")


def _progress(line: str) -> int | None:
    m = _PERCENT.search(line)
    if m:
        return int(m.group(1))
    m = _NINJA.search(line)
    if m and int(m.group(2)):
        return 100 * int(m.group(1)) // int(m.group(2))
    return None


def build(wheelhouse: Path, args: list[str], log_path: Path) -> Path:
    env = {**os.environ, "CMAKE_ARGS": shlex.join(args), "FORCE_CMAKE": "1"}
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
    out = Path(tempfile.mkdtemp(prefix="wheel-", dir=wheelhouse.parent))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-v",
        "--no-deps",
        "--no-cache-dir",
        "--no-binary",
        PACKAGE,
        "-w",
        str(out),
        f"{PACKAGE}=={VERSION}",
    ]
    print(
        f"wai: building llama.cpp ({PACKAGE} {VERSION}) for this CPU; this is the one long "
        f"step of the first install (about 5 minutes on 2 cores). Log: {log_path}",
        flush=True,
    )
    print(f"wai: CMAKE_ARGS={shlex.join(args)}", flush=True)
    start = time.monotonic()
    shown = -10
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            pct = _progress(line)
            if pct is not None and pct >= shown + 10:
                shown = pct - pct % 10
                print(f"wai: llama.cpp build {pct:3d}%  ({_elapsed(start)})", flush=True)
    if proc.returncode != 0:
        tail = log_path.read_text().splitlines()[-30:]
        sys.exit(
            "wai: the llama.cpp build failed:\n" + "\n".join(tail) + f"\n(full log: {log_path})"
        )
    wheels = list(out.glob("*.whl"))
    if len(wheels) != 1:
        sys.exit(f"wai: expected one wheel in {out}, found {wheels}")
    target = wheelhouse / wheels[0].name
    wheelhouse.mkdir(parents=True, exist_ok=True)
    wheels[0].replace(target)
    shutil.rmtree(out, ignore_errors=True)
    seconds = time.monotonic() - start
    print(f"wai: llama.cpp built in {_elapsed(start)}: {target}", flush=True)
    (wheelhouse / "build.json").write_text(
        json.dumps(
            {"cmake_args": args, "seconds": round(seconds, 1), "wheel": target.name}, indent=1
        )
    )
    return target


def _elapsed(start: float) -> str:
    s = int(time.monotonic() - start)
    return f"{s // 60}m{s % 60:02d}s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", choices=sorted(GPU_ARGS), default=os.environ.get("GPU") or None)
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("WAI_CACHE_DIR") or Path.home() / ".cache" / "wai"),
    )
    opts = ap.parse_args()

    machine = _machine()
    cpu = machine.this_cpu()
    args = cmake_args(
        os.environ.get("CMAKE_ARGS", ""),
        opts.gpu,
        cpu.is_x86,
        cpu.is_x86 and compiler_accepts(NO_AMX),
    )
    tag = f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"
    key = machine.build_key(
        cpu, package=f"{PACKAGE}=={VERSION}", python_tag=tag, build_args=shlex.join(args)
    )
    marker = Path(sys.prefix) / ".wai-llama-build"
    if marker.exists() and marker.read_text().strip() == key:
        return  # this environment already has the build for this CPU
    wheelhouse = opts.cache_dir / "wheels" / key
    wheelhouse.mkdir(parents=True, exist_ok=True)
    found = sorted(wheelhouse.glob("llama_cpp_python-*.whl"))
    if found:
        print(f"wai: llama.cpp for this CPU from {wheelhouse}", flush=True)
        wheel = found[-1]
    else:
        wheel = build(wheelhouse, args, wheelhouse / "build.log")
    # --no-deps: `pip install -e .` right after brings the pure-Python dependencies.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--force-reinstall",
            str(wheel),
        ],
        check=True,
    )
    marker.write_text(key + "\n")


if __name__ == "__main__":
    main()
