"""wai/machine.py: reading the CPU, and the key that names a native build."""

from __future__ import annotations

from wai.machine import Cpu, build_key, parse_cpuinfo

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
EPYC = """processor\t: 0
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512_vnni avx512_bf16
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp sve
CPU implementer\t: 0x41
"""


def test_parse_intel_amx() -> None:
    cpu = parse_cpuinfo(SAPPHIRE_RAPIDS, "x86_64")
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8488C"
    assert cpu.has_amx and cpu.is_x86 and "avx512f" in cpu.flags


def test_parse_amd_without_amx() -> None:
    cpu = parse_cpuinfo(EPYC, "x86_64")
    assert cpu.model == "AMD EPYC 9R14" and not cpu.has_amx


def test_parse_arm_features() -> None:
    cpu = parse_cpuinfo(GRAVITON, "aarch64")
    assert "sve" in cpu.flags and not cpu.is_x86 and not cpu.has_amx


def _key(cpu: Cpu, **kw: str) -> str:
    args = {
        "package": "llama-cpp-python==0.3.36",
        "python_tag": "cpython-311-linux-x86_64",
        "build_args": "",
    } | kw
    return build_key(cpu, **args)


def test_build_key_names_the_cpu_and_the_build() -> None:
    intel = parse_cpuinfo(SAPPHIRE_RAPIDS, "x86_64")
    amd = parse_cpuinfo(EPYC, "x86_64")
    assert _key(intel) == _key(parse_cpuinfo(SAPPHIRE_RAPIDS, "x86_64"))  # stable
    assert _key(intel) != _key(amd)
    # same model name, one flag fewer (a VM that hides AMX): another build
    hidden = Cpu(intel.arch, intel.model, intel.flags - {"amx_tile"})
    assert _key(hidden) != _key(intel)
    assert _key(amd, build_args="-DGGML_CUDA=on") != _key(amd)
    assert _key(amd, package="llama-cpp-python==0.3.37") != _key(amd)
    assert _key(amd, python_tag="cpython-312-linux-x86_64") != _key(amd)
