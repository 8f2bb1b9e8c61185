"""runtime.py: id resolution, limits and failure classification (no model is loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wai.catalog import EMBEDDED_NAME, embedded_model_path
from wai.engine.base import EngineBusy, EngineStopped, PromptTooLong
from wai.errors import InvalidInput, ModelUnavailable, UnknownModel
from wai.runtime import Runtime, classify
from wai.schemas.text_generation import parse_text_generation
from wai.settings import Settings

LLAMA2 = "@cf/meta/llama-2-7b-chat-int8"


@pytest.mark.parametrize(
    ("exc", "status", "code", "retry"),
    [
        (UnknownModel("x"), 400, 5007, None),
        (ModelUnavailable("x", "bad file"), 503, 3043, None),
        (EngineStopped("stopping"), 503, 3043, 1),
        (InvalidInput("no"), 400, 5006, None),
        (PromptTooLong("long"), 400, 5006, None),
        (EngineBusy("busy"), 429, 3040, 1),
        (RuntimeError("bug"), 500, 5000, None),
    ],
)
def test_classify(exc: Exception, status: int, code: int, retry: int | None) -> None:
    f = classify(exc)
    assert (f.status, f.code, f.retry_after) == (status, code, retry)
    assert "bug" not in f.message  # internal errors never leak their text


def test_the_embedded_model_answers_unmapped_ids_even_with_models_configured() -> None:
    rt = Runtime(
        Settings.model_validate(
            {"models": {"mine": {"path": str(embedded_model_path()), "serves": ["@cf/acme/mine"]}}}
        )
    )
    assert rt.local_name_for(LLAMA2) == EMBEDDED_NAME
    assert rt.local_name_for("@cf/acme/mine") == "mine"
    assert rt.local_name_for("@cf/acme/none") is None
    assert set(rt.local_models()) == {"mine", EMBEDDED_NAME}


def test_a_configured_default_model_replaces_the_embedded_one(tmp_path: Path) -> None:
    rt = Runtime(Settings.model_validate({"default_model": str(tmp_path / "x.gguf")}))
    assert rt.local_name_for(LLAMA2) == "x" and set(rt.local_models()) == {"x"}


def test_max_tokens_cap() -> None:
    rt = Runtime(Settings.model_validate({"limits": {"max_tokens": 100}}))
    assert (
        rt.max_tokens(EMBEDDED_NAME, parse_text_generation({"prompt": "x"})) == 100
    )  # default lowered
    assert (
        rt.max_tokens(EMBEDDED_NAME, parse_text_generation({"prompt": "x", "max_tokens": 50})) == 50
    )
    with pytest.raises(InvalidInput):
        rt.max_tokens(EMBEDDED_NAME, parse_text_generation({"prompt": "x", "max_tokens": 101}))


def test_a_model_s_own_limits_override_the_server_s(tmp_path: Path) -> None:
    rt = Runtime(
        Settings.model_validate(
            {
                "limits": {"max_tokens": 100, "max_prompt_chars": 50},
                "models": {
                    "small": {"path": str(tmp_path / "s.gguf"), "limits": {"max_tokens": 10}}
                },
            }
        )
    )
    assert rt.max_tokens("small", parse_text_generation({"prompt": "x"})) == 10
    assert rt.max_tokens(EMBEDDED_NAME, parse_text_generation({"prompt": "x"})) == 100
    with pytest.raises(InvalidInput):
        rt.max_tokens("small", parse_text_generation({"prompt": "x", "max_tokens": 11}))
    assert rt.limits("small").max_prompt_chars == 50  # not overridden: the server's


def test_limits_on_prompt_and_messages() -> None:
    rt = Runtime(
        Settings.model_validate(
            {"limits": {"max_prompt_chars": 5, "max_messages": 2, "max_message_chars": 3}}
        )
    )
    with pytest.raises(InvalidInput, match="prompt"):
        rt.check_limits(EMBEDDED_NAME, parse_text_generation({"prompt": "too long"}))
    msgs = [{"role": "user", "content": "hi"}] * 3
    with pytest.raises(InvalidInput, match="more than 2"):
        rt.check_limits(EMBEDDED_NAME, parse_text_generation({"messages": msgs}))
    with pytest.raises(InvalidInput, match="messages/0"):
        rt.check_limits(
            EMBEDDED_NAME,
            parse_text_generation({"messages": [{"role": "user", "content": "four"}]}),
        )
