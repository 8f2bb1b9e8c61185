"""Build (once per CPU) llama.cpp's own `llama-server` and `llama-bench` from the llama.cpp
sources vendored in the llama-cpp-python sdist that wai runs, and print the folder holding them.

The upstream tests run real llama-server processes behind wai, and the benchmarks measure wai
against llama-server; both call this. The binaries are kept under
`$WAI_CACHE_DIR/llama-server/<key>/bin/`, outside the clone, so a fresh clone (and CI) builds
them once per machine. The key names the CPU model and flags and the build arguments, as for
the llama-cpp-python wheel (scripts/llama_wheel.py), and the build leaves out llama.cpp's x86
AMX path for the same reason (GCC 12 builds it broken: llama.cpp issue 20824).

    python scripts/llama_server.py [--cache-dir DIR]    # about 6 minutes on 2 cores, once
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_wheel

TARGETS = ("llama-server", "llama-bench")
# The server is left without its web UI and without curl (it serves local files only).
SERVER_ARGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_CURL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
]


def sources(into: Path) -> Path:
    """llama.cpp as vendored in the sdist, unpacked under `into`."""
    sdist_dir = into / "sdist"
    sdist_dir.mkdir(parents=True, exist_ok=True)
    name = f"llama_cpp_python-{llama_wheel.VERSION}.tar.gz"
    if not (sdist_dir / name).exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"{llama_wheel.PACKAGE}=={llama_wheel.VERSION}",
                "-d",
                str(sdist_dir),
            ],
            check=True,
            stdout=sys.stderr,
        )
    src = into / "src"
    shutil.rmtree(src, ignore_errors=True)
    prefix = f"llama_cpp_python-{llama_wheel.VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist_dir / name) as tar:
        members = []
        for m in tar.getmembers():
            if m.name.startswith(prefix) and len(m.name) > len(prefix):
                m.name = m.name[len(prefix) :]
                members.append(m)
        tar.extractall(src, members=members, filter="data")
    return src


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("WAI_CACHE_DIR") or Path.home() / ".cache" / "wai"),
    )
    opts = ap.parse_args()
    cpu = llama_wheel._machine().this_cpu()
    args = SERVER_ARGS + llama_wheel.cmake_args(
        "", None, cpu.is_x86, cpu.is_x86 and llama_wheel.compiler_accepts(llama_wheel.NO_AMX)
    )
    key = llama_wheel._machine().build_key(
        cpu,
        package=f"llama-server {llama_wheel.VERSION}",
        python_tag="-",
        build_args=" ".join(args),
    )
    home = opts.cache_dir / "llama-server" / key
    bin_dir = home / "bin"
    if all((bin_dir / t).is_file() for t in TARGETS):
        print(bin_dir)
        return
    home.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    print(
        f"wai: building llama-server for this CPU (once; about 6 minutes on 2 cores) in {home}",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=home) as tmp:
        src = sources(Path(tmp))
        build = Path(tmp) / "build"
        log = home / "build.log"
        with log.open("w") as out:
            for cmd in (
                ["cmake", "-S", str(src), "-B", str(build), *args],
                [
                    "cmake",
                    "--build",
                    str(build),
                    f"-j{os.cpu_count() or 1}",
                    "--target",
                    *TARGETS,
                ],
            ):
                if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode:
                    tail = log.read_text().splitlines()[-30:]
                    sys.exit("wai: the llama-server build failed:\n" + "\n".join(tail))
        staged = Path(tmp) / "bin"
        staged.mkdir()
        for t in TARGETS:
            shutil.copy2(build / "bin" / t, staged / t)
        shutil.rmtree(bin_dir, ignore_errors=True)
        staged.replace(bin_dir)  # whole, or not at all
    s = int(time.monotonic() - start)
    print(f"wai: llama-server built in {s // 60}m{s % 60:02d}s", file=sys.stderr, flush=True)
    print(bin_dir)


if __name__ == "__main__":
    main()
