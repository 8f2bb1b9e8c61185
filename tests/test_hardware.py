"""engine/hardware.py: every guard decision, on any machine."""

from __future__ import annotations

import pytest

from wai.engines.llamacpp import hardware
from wai.engines.llamacpp.hardware import ALL_LAYERS, build_has_amx, gpu_layers, use_extra_buffers

# llama_print_system_info() of a -march=native build on a Sapphire Rapids CPU, and of wai's own
AMX_BUILD = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "AVX512 = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | "
    "OPENMP = 1 | REPACK = 1 | "
)
NO_AMX_BUILD = AMX_BUILD.replace("AMX_INT8 = 1 | ", "")


def test_the_build_reports_its_amx_path() -> None:
    assert build_has_amx(AMX_BUILD)
    assert not build_has_amx(NO_AMX_BUILD)


def test_wai_builds_llama_cpp_without_amx() -> None:
    assert not build_has_amx(hardware.system_info())


@pytest.mark.parametrize(
    ("build_amx", "cpu_amx", "expected"),
    [
        (True, True, False),  # the crash-prone combination: AMX buffers off
        (True, False, True),
        (False, True, True),
        (False, False, True),
    ],
)
def test_auto_turns_extra_buffers_off_only_where_amx_would_run(
    build_amx: bool, cpu_amx: bool, expected: bool
) -> None:
    use, why = use_extra_buffers("auto", build_amx, cpu_amx)
    assert use is expected and why


@pytest.mark.parametrize("mode", ["on", "off"])
@pytest.mark.parametrize("amx", [True, False])
def test_an_explicit_setting_wins(mode: str, amx: bool) -> None:
    assert use_extra_buffers(mode, amx, amx)[0] is (mode == "on")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("setting", "gpu", "expected"),
    [
        (-1, True, ALL_LAYERS),
        (-1, False, 0),
        (0, True, 0),
        (12, True, 12),
        (12, False, 0),
    ],
)
def test_gpu_layers(setting: int, gpu: bool, expected: int) -> None:
    assert gpu_layers(setting, gpu) == expected


def test_this_machine_lists_a_cpu_device() -> None:
    devices = hardware.devices()
    assert any(d.kind == "cpu" for d in devices)
    assert hardware.placement(0).startswith("CPU")


CONDA_MAPS = """\
7f0000000000-7f0000100000 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 r-xp 00000000 08:01 456 /opt/conda/lib/libstdc++.so.6.0.33
7f0000400000-7f0000500000 rw-p 00000000 00:00 0
"""
SYSTEM_MAPS = CONDA_MAPS.replace("/opt/conda/lib/", "/usr/lib/x86_64-linux-gnu/")


def test_a_foreign_libstdcxx_is_found() -> None:
    assert hardware.foreign_libstdcxx(CONDA_MAPS) == "/opt/conda/lib/libstdc++.so.6.0.33"
    assert hardware.foreign_libstdcxx(SYSTEM_MAPS) is None
    assert hardware.foreign_libstdcxx("") is None


def test_libstdcxx_advice_only_when_offloading() -> None:
    advice = hardware.libstdcxx_advice(ALL_LAYERS, CONDA_MAPS)
    assert advice and "LD_PRELOAD=" in advice
    assert hardware.libstdcxx_advice(0, CONDA_MAPS) is None
    assert hardware.libstdcxx_advice(ALL_LAYERS, SYSTEM_MAPS) is None


def test_this_process_is_read() -> None:
    assert hardware.foreign_libstdcxx(hardware.process_maps()) is None  # this venv: system's


def test_background_rides_along_only_where_every_layer_is_on_a_gpu() -> None:
    from wai.engines.llamacpp.hardware import ALL_LAYERS, background_shares_steps

    assert background_shares_steps(ALL_LAYERS, gpus=True)
    assert not background_shares_steps(ALL_LAYERS, gpus=False)  # asked for, but no GPU
    assert not background_shares_steps(20, gpus=True)  # part of the model on the CPU
    assert not background_shares_steps(0, gpus=True)


@pytest.mark.parametrize(
    ("setting", "available", "expected"),
    [
        (0, 64 << 30, 0),  # off
        (123, 64 << 30, 123),  # as set, whatever the machine
        (-1, 16 << 30, 2 << 30),  # an eighth of what is available
        (-1, 512 << 30, hardware.PROMPT_CACHE_MAX),  # at most llama-server's default
        (-1, 0, 256 << 20),  # unknown: a modest default
    ],
)
def test_prompt_cache_size(setting: int, available: int, expected: int) -> None:
    assert hardware.prompt_cache_bytes(setting, available) == expected


def test_available_memory_is_known_here() -> None:
    assert hardware.available_memory() > 0


def test_lone_decode_rows_change_path_past_256_cells_only_with_cpu_flash_attention() -> None:
    from wai.engines.llamacpp.hardware import ALL_LAYERS, split_kv_cells

    assert split_kv_cells(True, 0, gpus=False) == 256
    assert split_kv_cells(True, ALL_LAYERS, gpus=False) == 256  # asked for, but no GPU
    assert split_kv_cells(True, 20, gpus=True) == 256  # part of the model on the CPU
    assert split_kv_cells(True, ALL_LAYERS, gpus=True) is None
    assert split_kv_cells(False, 0, gpus=False) is None


def test_short_prompt_pieces_ride_together_only_with_cpu_flash_attention() -> None:
    from wai.engines.llamacpp.hardware import ALL_LAYERS, rows_computed_alone

    assert rows_computed_alone(True, 0, gpus=False) == 63
    assert rows_computed_alone(True, 20, gpus=True) == 63  # attention of CPU layers
    assert rows_computed_alone(True, ALL_LAYERS, gpus=True) == 0
    assert rows_computed_alone(False, 0, gpus=False) == 0
