from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from wai.backends.factory import BackendFactory
from wai.settings import (
    ModelConfig,
    Settings,
    SettingsError,
    env_var_for,
    is_loopback,
    load_settings,
)


def test_sources_in_order_file_env_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "wai.toml"
    cfg.write_text('port = 9000\ntokens = ["from-file"]\n[engine]\nslots = 2\n')
    s = load_settings(
        cfg,
        env={"WAI_PORT": "9001", "WAI_TOKENS": "a, b"},
        overrides={"engine.slots": 3, "host": None},
    )
    assert (s.port, s.tokens, s.engine.slots, s.host) == (9001, ["a", "b"], 3, "127.0.0.1")


def test_unknown_keys_and_bad_values_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "wai.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(SettingsError):
        load_settings(cfg, env={})
    with pytest.raises(SettingsError):
        load_settings(None, env={"WAI_PORT": "eighty"})


@pytest.mark.parametrize(
    ("host", "loop"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_engine_portability_settings_from_the_environment() -> None:
    s = load_settings(
        None,
        env={
            "WAI_GPU_LAYERS": "20",
            "WAI_EXTRA_BUFFERS": "off",
            "WAI_PROBE_FAULT": "extra_buffers,converted",
        },
    )
    assert (s.engine.gpu_layers, s.engine.extra_buffers, s.engine.probe_fault) == (
        20,
        "off",
        "extra_buffers,converted",
    )
    assert load_settings(None, env={}).engine.gpu_layers == -1
    with pytest.raises(SettingsError):
        load_settings(None, env={"WAI_EXTRA_BUFFERS": "maybe"})
    with pytest.raises(SettingsError):
        load_settings(None, env={"WAI_GPU_LAYERS": "-2"})
    with pytest.raises(SettingsError):  # a typo would silently inject nothing
        load_settings(None, env={"WAI_PROBE_FAULT": "extra_bufers"})


def test_engine_isolation_and_batching_settings_from_the_environment() -> None:
    s = load_settings(None, env={})
    assert (s.engine.isolation, s.engine.batch_invariant) == ("process", True)
    s = load_settings(None, env={"WAI_ENGINE_ISOLATION": "thread", "WAI_BATCH_INVARIANT": "false"})
    assert (s.engine.isolation, s.engine.batch_invariant) == ("thread", False)
    with pytest.raises(SettingsError):
        load_settings(None, env={"WAI_ENGINE_ISOLATION": "container"})
    with pytest.raises(SettingsError):
        load_settings(None, env={"WAI_BATCH_INVARIANT": "sometimes"})


def test_the_prompt_cache_size_from_the_environment_reaches_the_engine() -> None:
    model = ModelConfig(path=Path("m.gguf"))
    s = load_settings(None, env={})
    assert s.engine.prompt_cache_bytes is None  # sized from free memory at load
    assert BackendFactory(s).llama_config("m", model).prompt_cache_bytes == -1
    s = load_settings(None, env={"WAI_PROMPT_CACHE_BYTES": "1GiB"})
    assert BackendFactory(s).llama_config("m", model).prompt_cache_bytes == 1 << 30
    s = load_settings(None, env={"WAI_PROMPT_CACHE_BYTES": "0"})
    assert BackendFactory(s).llama_config("m", model).prompt_cache_bytes == 0
    with pytest.raises(SettingsError):
        load_settings(None, env={"WAI_PROMPT_CACHE_BYTES": "lots"})


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _leaf_keys(ann, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_key_has_a_variable_and_a_readme_row_that_says_so() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    # models and access: the file's tables
    keys = [k for k in _leaf_keys(Settings) if k not in ("models", "access")]
    assert "engine.slots" in keys and "limits.max_tokens" in keys and "memory_budget" in keys
    for key in keys:
        var = env_var_for(key)
        assert var is not None, f"{key} has no WAI_* variable"
        assert re.search(rf"^\| `{re.escape(key)}` \| `{var}`", readme, re.M), (
            f"README's settings tables have no row for {key} with {var}"
        )


def test_per_task_rate_limits_from_the_environment() -> None:
    s = load_settings(None, env={"WAI_RATE_LIMITS": "text-embeddings=3000, reranking=5"})
    assert s.rate_limits == {"text-embeddings": 3000, "reranking": 5}
    assert load_settings(None, env={}).rate_limits == {}
    for bad in ("images=3", "text-embeddings=-1", "text-embeddings=many"):
        with pytest.raises(SettingsError):
            load_settings(None, env={"WAI_RATE_LIMITS": bad})


def test_speculation_settings_reach_the_engine() -> None:
    model = ModelConfig(path=Path("m.gguf"), draft="d.gguf")
    config = BackendFactory(load_settings(None, env={})).llama_config("m", model)
    assert (config.speculation, config.draft_max, config.draft_min) == ("ngram", 16, 0)
    assert config.draft_path == Path("d.gguf")
    env = {"WAI_SPECULATION": "off", "WAI_DRAFT_MAX": "8", "WAI_DRAFT_MIN": "2"}
    config = BackendFactory(load_settings(None, env=env)).llama_config("m", model)
    assert (config.speculation, config.draft_max, config.draft_min) == ("off", 8, 2)
    assert config.draft_path is None  # speculation off: no draft model loaded
    for bad in ({"WAI_SPECULATION": "eagle"}, {"WAI_DRAFT_MAX": "64"}, {"WAI_DRAFT_MIN": "20"}):
        with pytest.raises(SettingsError):  # draft_min above draft_max among them
            load_settings(None, env=bad)
