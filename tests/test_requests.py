"""wai/requests.py: validated input to a backend's request, with the server's limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from wai.backends.base import Message
from wai.catalog import EMBEDDED_NAME, ModelSpec
from wai.errors import InvalidInput
from wai.models import ModelTable
from wai.requests import check_limits, generation_request, max_tokens
from wai.schemas.text_generation import parse_text_generation
from wai.settings import Settings


def test_max_tokens_cap() -> None:
    limits = ModelTable(Settings.model_validate({"limits": {"max_tokens": 100}})).limits(
        EMBEDDED_NAME
    )
    assert max_tokens(limits, parse_text_generation({"prompt": "x"})) == 100
    assert max_tokens(limits, parse_text_generation({"prompt": "x", "max_tokens": 50})) == 50
    with pytest.raises(InvalidInput, match="at most 100"):
        max_tokens(limits, parse_text_generation({"prompt": "x", "max_tokens": 101}))


def test_a_model_s_own_limits_override_the_server_s(tmp_path: Path) -> None:
    table = ModelTable(
        Settings.model_validate(
            {
                "limits": {"max_tokens": 100, "max_prompt_chars": 50},
                "models": {
                    "small": {"path": str(tmp_path / "s.gguf"), "limits": {"max_tokens": 10}}
                },
            }
        )
    )
    assert max_tokens(table.limits("small"), parse_text_generation({"prompt": "x"})) == 10
    assert max_tokens(table.limits(EMBEDDED_NAME), parse_text_generation({"prompt": "x"})) == 100
    with pytest.raises(InvalidInput):
        max_tokens(table.limits("small"), parse_text_generation({"prompt": "x", "max_tokens": 11}))
    assert table.limits("small").max_prompt_chars == 50  # not overridden: the server's


def test_limits_on_prompt_and_messages() -> None:
    limits = ModelTable(
        Settings.model_validate(
            {"limits": {"max_prompt_chars": 5, "max_messages": 2, "max_message_chars": 3}}
        )
    ).limits(EMBEDDED_NAME)
    with pytest.raises(InvalidInput, match="prompt"):
        check_limits(limits, parse_text_generation({"prompt": "too long"}))
    msgs = [{"role": "user", "content": "hi"}] * 3
    with pytest.raises(InvalidInput, match="more than 2"):
        check_limits(limits, parse_text_generation({"messages": msgs}))
    with pytest.raises(InvalidInput, match="messages/0"):
        check_limits(
            limits, parse_text_generation({"messages": [{"role": "user", "content": "four"}]})
        )


def test_a_prompt_is_one_user_turn_after_the_default_system_prompt() -> None:
    limits = Settings().limits
    spec = ModelSpec("@cf/x/y", "x", default_system="Be brief.")
    req = generation_request(spec, limits, parse_text_generation({"prompt": "hi", "seed": 3}))
    assert req.messages == (Message("system", "Be brief."), Message("user", "hi"))
    assert req.prompt is None and req.sampling.seed == 3
    raw = generation_request(spec, limits, parse_text_generation({"prompt": "hi", "raw": True}))
    assert raw.prompt == "hi" and raw.messages is None


def test_earlier_tool_calls_become_objects_and_bad_arguments_are_named() -> None:
    limits, spec = Settings().limits, ModelSpec("@cf/x/y", "x")
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    history = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    req = generation_request(spec, limits, parse_text_generation({"messages": history}))
    assert req.messages is not None
    assert req.messages[1].tool_calls[0]["function"]["arguments"] == {"a": 1}
    call["function"]["arguments"] = "[1"
    with pytest.raises(InvalidInput, match="messages/1/tool_calls/0/function/arguments"):
        generation_request(spec, limits, parse_text_generation({"messages": history}))
