"""models.py: which configured model answers each id (no model is loaded)."""

from __future__ import annotations

from pathlib import Path

from wai.catalog import EMBEDDED_EMBEDDING_NAME, EMBEDDED_NAME, embedded_model_path
from wai.models import ModelTable
from wai.settings import Settings

LLAMA2 = "@cf/meta/llama-2-7b-chat-int8"


def test_the_embedded_model_answers_unmapped_ids_even_with_models_configured() -> None:
    table = ModelTable(
        Settings.model_validate(
            {"models": {"mine": {"path": str(embedded_model_path()), "serves": ["@cf/acme/mine"]}}}
        )
    )
    assert table.model_for(LLAMA2) == EMBEDDED_NAME
    assert table.model_for("@cf/acme/mine") == "mine"
    assert table.model_for("@cf/acme/none") is None
    assert set(table.configs) == {"mine", EMBEDDED_NAME, EMBEDDED_EMBEDDING_NAME}


def test_a_configured_default_model_replaces_the_embedded_one(tmp_path: Path) -> None:
    table = ModelTable(Settings.model_validate({"default_model": str(tmp_path / "x.gguf")}))
    assert table.model_for(LLAMA2) == "x"
    assert set(table.configs) == {"x", EMBEDDED_EMBEDDING_NAME}


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
