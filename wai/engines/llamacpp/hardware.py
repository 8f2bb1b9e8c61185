"""Where a model runs, and with which of llama.cpp's optional code paths.

Three decisions, each a pure function so that every branch is unit tested on any machine:

- `extra_buffers`: llama.cpp's "extra buffer types" hold weights repacked for special kernels
  (x86 AMX tiles, Arm/x86 repacked Q4_0). A llama.cpp built with its AMX path by GCC 12 loads
  an invalid tile configuration and dies with SIGSEGV on the first matmul on every AMX CPU
  (Sapphire Rapids and newer; llama.cpp issue 20824). wai's own build leaves AMX out; for a
  build that has it (one the user brought), `auto` turns extra buffers off on a CPU that
  reports AMX. Elsewhere they stay on.
- `gpu_layers`: -1 (auto) offloads every layer when the build has a GPU backend, else none.
- the device a model runs on, named for /healthz and `wai models`.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import llama_cpp as L

from wai.engines.llamacpp.config import ExtraBuffers
from wai.machine import Cpu, this_cpu

log = logging.getLogger("wai.engines")

ALL_LAYERS = 999  # llama.cpp clamps to the model's layer count


def use_extra_buffers(
    mode: ExtraBuffers, build_has_amx: bool, cpu_has_amx: bool
) -> tuple[bool, str]:
    """Whether to load weights into extra buffer types, and why (for the log)."""
    if mode == "on":
        return True, "engine.extra_buffers = on"
    if mode == "off":
        return False, "engine.extra_buffers = off"
    if build_has_amx and cpu_has_amx:
        return False, "llama.cpp was built with AMX and this CPU has AMX (crash-prone path)"
    return True, "no AMX path in play"


def gpu_layers(setting: int, gpu_available: bool) -> int:
    """Layers to offload: the setting, or with -1 (auto) all of them when there is a GPU."""
    if setting >= 0:
        return setting if gpu_available else 0
    return ALL_LAYERS if gpu_available else 0


SYSTEM_LIB_DIRS = ("/usr/lib", "/lib", "/usr/lib64", "/lib64", "/usr/local/lib")


def foreign_libstdcxx(maps: str) -> str | None:
    """A libstdc++ this process loaded from outside the system's library directories (a conda
    or PyTorch environment ships its own), from /proc/self/maps; None if there is none. A CUDA
    build of llama.cpp linked against the system one crashes at model load beside it."""
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        path = parts[5].strip() if len(parts) == 6 else ""
        if "/libstdc++.so" in path and not path.startswith(SYSTEM_LIB_DIRS):
            return path
    return None


def libstdcxx_advice(n_gpu_layers: int, maps: str) -> str | None:
    """What to tell the user before offloading to a GPU beside a foreign libstdc++."""
    foreign = foreign_libstdcxx(maps) if n_gpu_layers > 0 else None
    if foreign is None:
        return None
    return (
        f"this Python process loaded its own libstdc++ ({foreign}); a GPU build of "
        "llama.cpp can crash at model load beside it. If the GPU warm-up fails, start wai "
        "with LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libstdc++.so.6 (your system's libstdc++)"
    )


def process_maps() -> str:
    try:
        return Path("/proc/self/maps").read_text()
    except OSError:  # not Linux
        return ""


def build_has_amx(system_info: str) -> bool:
    return "AMX_INT8 = 1" in system_info


@dataclass(frozen=True, slots=True)
class Device:
    name: str  # "CPU", "CUDA0", ...
    description: str  # "AMD EPYC 9R14", "NVIDIA H200", ...
    kind: Literal["cpu", "gpu", "igpu", "accel", "other"]


_KINDS: dict[int, Literal["cpu", "gpu", "igpu", "accel", "other"]] = {
    0: "cpu",
    1: "gpu",
    2: "igpu",
    3: "accel",
}


@functools.cache
def system_info() -> str:
    return bytes(L.llama_print_system_info()).decode("utf-8", "replace")


@functools.cache
def cpu() -> Cpu:
    return this_cpu()


@functools.cache
def devices() -> tuple[Device, ...]:
    """The devices llama.cpp's backends registered (through ggml's C API: llama-cpp-python
    does not bind it). Falls back to just the CPU if the library does not export it."""
    try:
        lib = ctypes.CDLL(str(_ggml_library()))
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        for fn in (lib.ggml_backend_dev_name, lib.ggml_backend_dev_description):
            fn.restype = ctypes.c_char_p
            fn.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_type.restype = ctypes.c_int
        lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        found = []
        for i in range(lib.ggml_backend_dev_count()):
            dev = lib.ggml_backend_dev_get(i)
            found.append(
                Device(
                    (lib.ggml_backend_dev_name(dev) or b"?").decode(),
                    (lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace"),
                    _KINDS.get(lib.ggml_backend_dev_type(dev), "other"),
                )
            )
        if found:
            return tuple(found)
    except (OSError, AttributeError) as e:
        log.debug("cannot list ggml devices: %s", e)
    return (Device("CPU", cpu().model, "cpu"),)


def _ggml_library() -> Path:
    lib_dir = Path(L.__file__).parent / "lib"
    for name in ("libggml.so", "libggml.dylib", "ggml.dll"):
        if (lib_dir / name).exists():
            return lib_dir / name
    raise OSError(f"no ggml library in {lib_dir}")


def gpu_available() -> bool:
    return bool(L.llama_supports_gpu_offload()) and any(
        d.kind in ("gpu", "igpu") for d in devices()
    )


def background_shares_steps(n_gpu_layers: int, gpus: bool) -> bool:
    """Whether a queued batch's sequences may compute in steps that carry interactive work.
    On a GPU with every layer offloaded, a decode step reads the weights once whatever its
    rows (memory-bound): extra rows cost the interactive ones almost nothing, so they ride
    along. On a CPU, or with layers left on it, every row costs compute the interactive rows
    would have had (measured on 2 cores: four queued rows beside four interactive ones cut the
    interactive requests finished in 30 s from 157 to 96), so they wait for a step without
    interactive work."""
    return gpus and n_gpu_layers >= ALL_LAYERS


def cpu_flash_attention(flash_attn: bool, n_gpu_layers: int, gpus: bool) -> bool:
    """Whether attention runs in ggml's CPU flash-attention kernels, whose measured behaviour
    the two guards below rest on: not without flash attention, nor with every layer on a GPU
    (its own kernels were not measured)."""
    return flash_attn and not (gpus and n_gpu_layers >= ALL_LAYERS)


SPLIT_KV_CELLS = 256  # a stream holding more takes llama.cpp's split-KV path for a lone row


def split_kv_cells(flash_attn: bool, n_gpu_layers: int, gpus: bool) -> int | None:
    """Past how many cells of its KV stream a lone decode row is computed differently (None:
    never). llama.cpp's CPU flash attention splits the KV of one query row in one stream over
    its threads once the view reaches 512 cells (a stream past 256 cells: views are padded to
    256), summing in another order than the rows of a call with several (ggml-cpu ops.cpp,
    `use_split_kv_path`). A verification's rows never take that path, so they would not give
    the tokens such a plain step gives (speculation.py). Without flash attention there is no
    such path; with every layer on a GPU the CPU's attention is not used."""
    return SPLIT_KV_CELLS if cpu_flash_attention(flash_attn, n_gpu_layers, gpus) else None


FA_TILE_ROWS = 64  # ggml's CPU flash attention tiles chunks of this many query rows or more


def rows_computed_alone(flash_attn: bool, n_gpu_layers: int, gpus: bool) -> int:
    """The most rows of one sequence's prompt chunk that are each computed as if alone (0: not
    known). With ggml's CPU flash attention a chunk of fewer than 64 rows is computed row by
    row (matrix products are row-invariant, attention per row), so consecutive short pieces
    give bit-identical KV whether computed in one call or several (measured on SmolLM2: 39
    tokens as 39, 20+19, 20+15+4, 5+34 and 63 as 62+1, all identical; 100 tokens as 64+36 not:
    64 rows or more are tiled). The scheduler then computes them in one call. Not measured
    without flash attention nor on a GPU."""
    return FA_TILE_ROWS - 1 if cpu_flash_attention(flash_attn, n_gpu_layers, gpus) else 0


def placement(n_gpu_layers: int) -> str:
    """Where a model with this many offloaded layers runs, in words."""
    gpus = [d for d in devices() if d.kind in ("gpu", "igpu")]
    cpu_text = f"CPU ({cpu().model or cpu().arch})"
    if n_gpu_layers <= 0 or not gpus:
        return cpu_text
    names = ", ".join(f"{d.name} ({d.description})" for d in gpus)
    return names if n_gpu_layers >= ALL_LAYERS else f"{names} ({n_gpu_layers} layers) + {cpu_text}"


PROMPT_CACHE_MAX = 8 << 30  # as llama-server's --cache-ram default


def prompt_cache_bytes(setting: int, available: int) -> int:
    """The RAM prompt cache's limit: the setting (>= 0), or for -1 an eighth of the memory
    available (`available`: 0 when unknown, then 256 MiB), at most PROMPT_CACHE_MAX."""
    if setting >= 0:
        return setting
    if available <= 0:
        return 256 << 20
    return min(PROMPT_CACHE_MAX, available // 8)


def available_memory() -> int:
    """Memory the system can give without swapping (Linux: MemAvailable), 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # other Unixes: free pages (a lower bound)
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0
