"""models.py: which configured model answers each id (no model is loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wai.catalog import (
    EMBEDDED_ASR_NAME,
    EMBEDDED_EMBEDDING_NAME,
    EMBEDDED_NAME,
    EMBEDDED_TTS_NAME,
    EMBEDDED_TURN_NAME,
    embedded_model_path,
)
from wai.models import ModelTable
from wai.settings import Settings

LLAMA2 = "@cf/meta/llama-2-7b-chat-int8"
TINY = "@cf/tinyllama/tinyllama-1.1b-chat-v1.0"


# the embedded speech models: Whisper base, the Piper voice, smart-turn
SPEECH = {EMBEDDED_ASR_NAME, EMBEDDED_TTS_NAME, EMBEDDED_TURN_NAME}


def test_the_embedded_model_answers_unmapped_ids_even_with_models_configured() -> None:
    table = ModelTable(
        Settings.model_validate(
            {"models": {"mine": {"path": str(embedded_model_path()), "serves": ["@cf/acme/mine"]}}}
        )
    )
    assert table.model_for(LLAMA2) == EMBEDDED_NAME
    assert table.model_for("@cf/acme/mine") == "mine"
    assert table.model_for("@cf/acme/none") is None
    assert set(table.configs) == {"mine", EMBEDDED_NAME, EMBEDDED_EMBEDDING_NAME, *SPEECH}


def test_a_configured_default_model_replaces_the_embedded_one(tmp_path: Path) -> None:
    table = ModelTable(Settings.model_validate({"default_model": str(tmp_path / "x.gguf")}))
    assert table.model_for(LLAMA2) == "x"
    assert set(table.configs) == {"x", EMBEDDED_EMBEDDING_NAME, *SPEECH}


def test_each_task_has_its_own_stand_in(tmp_path: Path) -> None:
    table = ModelTable(Settings.model_validate({"cache_dir": str(tmp_path)}))
    assert table.model_for("@cf/baai/bge-base-en-v1.5") == EMBEDDED_EMBEDDING_NAME
    assert table.model_for("@cf/baai/bge-m3") == EMBEDDED_EMBEDDING_NAME
    assert table.model_for(LLAMA2) == EMBEDDED_NAME
    assert table.configs[EMBEDDED_EMBEDDING_NAME].task == "text-embeddings"
    spec = table.spec_for("@cf/baai/bge-small-en-v1.5")
    assert spec.task.name == "Text Embeddings" and spec.dimensions == 384


def test_an_embedding_model_that_cannot_be_written_is_failed_with_why(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    table = ModelTable(Settings.model_validate({"cache_dir": str(blocker)}))
    assert EMBEDDED_EMBEDDING_NAME in table.failed
    assert table.model_for("@cf/baai/bge-base-en-v1.5") == EMBEDDED_EMBEDDING_NAME
    assert table.model_for(LLAMA2) == EMBEDDED_NAME  # text generation is not affected


def _pulled_cache(tmp_path: Path) -> tuple[Path, Path]:
    """A Hugging Face cache holding one file, as huggingface_hub lays it out, and a sources
    file that maps an id to it."""
    cache = tmp_path / "hub"
    repo = cache / "models--wai-test--smollm2-gguf"
    snapshot = repo / "snapshots" / ("c" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "smollm2.Q4_1.gguf").symlink_to(embedded_model_path())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c" * 40)
    sources = tmp_path / "sources.json"
    entry = {"repo": "wai-test/smollm2-gguf", "file": "smollm2.Q4_1.gguf", "quant": "Q4_1"}
    sources.write_text(json.dumps({"sources": {TINY: entry}}))
    return cache, sources


def test_a_pulled_id_is_served_by_its_file_and_a_config_entry_still_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, sources = _pulled_cache(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    table = ModelTable(Settings.model_validate({"hub_sources": str(sources)}))
    assert table.model_for(TINY) == "smollm2.Q4_1" and table.pulled == {TINY: "smollm2.Q4_1"}
    assert table.stand_in(TINY) == (False, None)
    assert table.stand_in(LLAMA2) == (True, f"wai pull {LLAMA2}")  # packaged source, not pulled
    mapped = {"mine": {"path": str(embedded_model_path()), "serves": [TINY]}}
    table = ModelTable(Settings.model_validate({"hub_sources": str(sources), "models": mapped}))
    assert table.model_for(TINY) == "mine" and table.pulled == {}


def test_a_draft_is_another_entrys_file_or_a_path_held_to_the_model_roots(tmp_path: Path) -> None:
    small, big = tmp_path / "small.gguf", tmp_path / "big.gguf"
    models = {
        "small": {"path": str(small), "serves": ["@cf/acme/small"]},
        "by-name": {"path": str(big), "serves": ["@cf/acme/a"], "draft": "small"},
        "by-path": {"path": str(big), "serves": ["@cf/acme/b"], "draft": str(small)},
        "outside": {"path": str(big), "serves": ["@cf/acme/c"], "draft": "/elsewhere/x.gguf"},
    }
    table = ModelTable(Settings.model_validate({"models": models, "model_roots": [str(tmp_path)]}))
    assert table.configs["by-name"].draft == str(small)
    assert table.configs["by-path"].draft == str(small)
    assert "outside" not in table.configs or "outside" in table.failed
    assert "draft model" in table.failed["outside"] and "model_roots" in table.failed["outside"]


def test_an_upstream_model_has_no_draft() -> None:
    with pytest.raises(ValueError, match="draft"):
        Settings.model_validate(
            {"models": {"u": {"upstreams": [{"url": "http://h:1/v1"}], "draft": "x"}}}
        )
