"""What this machine is: the CPU's model and feature flags, and a key naming a native build.

Standard library only: `scripts/llama_wheel.py` loads this file before any of wai's
dependencies are installed, to decide whether a llama.cpp wheel built earlier fits this CPU.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# The x86 AMX features llama.cpp's AMX matmul path is compiled for (ggml-cpu/amx).
AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})


@dataclass(frozen=True, slots=True)
class Cpu:
    arch: str  # platform.machine(): x86_64, aarch64, arm64, ...
    model: str  # "AMD EPYC 9R14", "Apple M2", ...
    flags: frozenset[str]

    @property
    def has_amx(self) -> bool:
        return bool(self.flags & AMX_FLAGS)

    @property
    def is_x86(self) -> bool:
        return self.arch.lower() in {"x86_64", "amd64", "i686", "i386"}


def parse_cpuinfo(text: str, arch: str) -> Cpu:
    """Linux /proc/cpuinfo: the first processor's model name and flags (x86 `flags`, Arm
    `Features`)."""
    model = ""
    flags: frozenset[str] = frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return Cpu(arch, model, flags)


def _sysctl(name: str) -> str:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def this_cpu() -> Cpu:
    arch = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        return parse_cpuinfo(cpuinfo.read_text(errors="replace"), arch)
    if sys.platform == "darwin":
        features = " ".join(
            _sysctl(k) for k in ("machdep.cpu.features", "machdep.cpu.leaf7_features")
        )
        return Cpu(
            arch,
            _sysctl("machdep.cpu.brand_string"),
            frozenset(f.lower().replace(".", "_") for f in features.split()),
        )
    return Cpu(arch, platform.processor(), frozenset())


def build_key(cpu: Cpu, *, package: str, python_tag: str, build_args: str) -> str:
    """Names one native build: the same key means the same compiled code fits. Keyed by the
    CPU's model and every feature flag (a -march=native build may use any of them), the
    package version, the Python ABI and the build arguments (GPU backend, CMake flags)."""
    h = hashlib.sha256()
    for part in (cpu.arch, cpu.model, " ".join(sorted(cpu.flags)), package, python_tag, build_args):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
