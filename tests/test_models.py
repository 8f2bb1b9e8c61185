"""models.py: which configured model answers each id (no model is loaded)."""

from __future__ import annotations

from pathlib import Path

from wai.catalog import EMBEDDED_NAME, embedded_model_path
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
    assert set(table.configs) == {"mine", EMBEDDED_NAME}


def test_a_configured_default_model_replaces_the_embedded_one(tmp_path: Path) -> None:
    table = ModelTable(Settings.model_validate({"default_model": str(tmp_path / "x.gguf")}))
    assert table.model_for(LLAMA2) == "x" and set(table.configs) == {"x"}
