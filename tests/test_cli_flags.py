"""`wai serve` flags become settings, as their WAI_* variables and config keys do."""

from __future__ import annotations

from pathlib import Path

import pytest

from wai.cli import _settings, build_parser
from wai.settings import Settings


def _parse(*argv: str) -> Settings:
    return _settings(build_parser().parse_args(["serve", *argv]))


def test_engine_flags_set_their_keys() -> None:
    s = _parse("--slots", "3", "--ctx-per-slot", "1024", "--gpu-layers", "0", "--threads", "2")
    e = s.engine
    assert (e.slots, e.ctx_per_slot, e.gpu_layers, e.threads) == (3, 1024, 0, 2)
    s = _parse("--memory-budget", "2GiB", "--log-level", "debug")
    assert s.memory_budget is not None and int(s.memory_budget) == 2 << 30
    assert s.log_level == "debug"


def test_model_without_serves_replaces_the_default(tmp_path: Path) -> None:
    s = _parse("--model", str(tmp_path / "m.gguf"))
    assert s.default_model == tmp_path / "m.gguf" and s.models == {}


def test_model_with_serves_is_an_eager_model_for_those_ids(tmp_path: Path) -> None:
    path = tmp_path / "llama-2-7b.Q4_K_M.gguf"
    s = _parse("--model", str(path), "--serves", "@cf/a/b", "--serves", "@cf/c/d")
    (name, m), *rest = s.models.items()
    assert not rest and name == "llama-2-7b-Q4_K_M"
    assert (m.path, m.serves, m.load) == (path, ["@cf/a/b", "@cf/c/d"], "eager")


def test_bad_values_fail_at_start_naming_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        _parse("--slots", "0")
    assert "engine.slots" in str(e.value)
    with pytest.raises(SystemExit) as e:
        _parse("--memory-budget", "lots")
    assert "memory_budget" in str(e.value)
    with pytest.raises(SystemExit) as e:
        _parse("--serves", "@cf/a/b")
    assert "--serves needs --model" in str(e.value)
