"""engine/probe.py: the warm-up child, its fallbacks and its memory, with the real engine and
the real embedded model (the children are real processes; faults are injected in them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wai.catalog import embedded_model_path
from wai.engines.llamacpp.gguf import ModelLoadError
from wai.engines.llamacpp.params import LoadPlan, fallbacks
from wai.engines.llamacpp.probe import choose, fault_matches

RUN = {"n_ctx": 128, "n_batch": 64, "threads": 0, "flash_attn": True, "fault": ""}
IDENTITY = {"test": True}


def plans(weights: Path, converted: bool = True) -> list[LoadPlan]:
    first = LoadPlan(weights, converted, extra_buffers=True, gpu_layers=0)
    return fallbacks(first, embedded_model_path())


def test_fallbacks_go_from_configured_to_safest() -> None:
    src = embedded_model_path()
    conv = Path("/cache/x.q8_0.gguf")
    got = fallbacks(LoadPlan(conv, True, True, 999), src)
    assert got == [
        LoadPlan(conv, True, True, 999),
        LoadPlan(conv, True, False, 999),
        LoadPlan(src, False, False, 999),
        LoadPlan(src, False, False, 0),
    ]
    # nothing to fall back to twice: duplicates are dropped
    assert fallbacks(LoadPlan(src, False, False, 0), src) == [LoadPlan(src, False, False, 0)]


@pytest.mark.parametrize(
    ("fault", "plan", "hit"),
    [
        ("", LoadPlan(Path("w"), True, True, 9), False),
        ("any", LoadPlan(Path("w"), False, False, 0), True),
        ("extra_buffers", LoadPlan(Path("w"), False, True, 0), True),
        ("extra_buffers", LoadPlan(Path("w"), True, False, 0), False),
        ("converted, gpu", LoadPlan(Path("w"), False, False, 3), True),
        ("converted", LoadPlan(Path("w"), False, False, 3), False),
    ],
)
def test_fault_matching(fault: str, plan: LoadPlan, hit: bool) -> None:
    assert fault_matches(fault, plan) is hit


def test_a_passing_warm_up_is_remembered(tmp_path: Path) -> None:
    ps = plans(embedded_model_path(), converted=False)
    first = choose(ps, run=RUN, identity=IDENTITY, cache_dir=tmp_path)
    assert first.plan == ps[0] and first.note == "warm-up passed"
    again = choose(ps, run=RUN, identity=IDENTITY, cache_dir=tmp_path)
    assert again.plan == ps[0] and "remembered" in again.note


def test_a_crashing_setting_falls_back_to_a_safer_one(tmp_path: Path) -> None:
    ps = plans(embedded_model_path(), converted=False)
    verdict = choose(
        ps, run={**RUN, "fault": "extra_buffers"}, identity=IDENTITY, cache_dir=tmp_path
    )
    assert verdict.plan == LoadPlan(embedded_model_path(), False, False, 0)
    assert "was killed by SIGABRT" in verdict.note and "chose extra buffers off" in verdict.note
    remembered = choose(
        ps, run={**RUN, "fault": "extra_buffers"}, identity=IDENTITY, cache_dir=tmp_path
    )
    assert remembered.plan == verdict.plan


def test_when_every_setting_crashes_the_model_fails_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="crashed on this machine with every setting"):
        choose(
            plans(embedded_model_path()),
            run={**RUN, "fault": "any"},
            identity=IDENTITY,
            cache_dir=tmp_path,
        )
    assert not list(tmp_path.rglob("*.json"))  # a failure is not remembered


def test_a_file_that_does_not_load_is_not_a_crash(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    ps = [LoadPlan(junk, False, True, 0), LoadPlan(junk, False, False, 0)]
    verdict = choose(ps, run=RUN, identity=IDENTITY, cache_dir=tmp_path)
    assert verdict.plan == ps[0] and "inconclusive" in verdict.note
