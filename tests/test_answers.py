"""wai/answers.py (the Workers AI code and shape of every outcome) and the web layer's status
for each code (api/framing.py)."""

from __future__ import annotations

import pytest

from wai.answers import cf_result, classify, failed_code, json_answer, usage_dict
from wai.api.framing import status_for
from wai.backends.base import (
    EngineBusy,
    EngineStopped,
    Failed,
    Finished,
    PromptTooLong,
    ToolCall,
    UpstreamError,
    Usage,
)
from wai.errors import InvalidInput, ModelUnavailable, UnknownModel
from wai.schemas.text_generation import parse_text_generation


@pytest.mark.parametrize(
    ("exc", "status", "code", "retry"),
    [
        (UnknownModel("x"), 400, 5007, None),
        (ModelUnavailable("x", "bad file"), 503, 3043, None),
        (EngineStopped("stopping"), 503, 3043, 1),
        (InvalidInput("no"), 400, 5006, None),
        (PromptTooLong("long"), 400, 5006, None),
        (EngineBusy("busy"), 429, 3040, 1),
        (UpstreamError(3007, "slow"), 408, 3007, None),
        (UpstreamError(3043, "down", retry_after=1), 503, 3043, 1),
        (RuntimeError("bug"), 500, 5000, None),
    ],
)
def test_classify(exc: Exception, status: int, code: int, retry: int | None) -> None:
    f = classify(exc)
    assert (status_for(f.code), f.code, f.retry_after) == (status, code, retry)
    assert "bug" not in f.message  # internal errors never leak their text


def test_a_failure_after_queueing_keeps_its_code() -> None:
    assert failed_code(Failed("engine died", crashed=True)) == 3043
    assert failed_code(Failed("upstream slow", code=3007)) == 3007
    assert failed_code(Failed("decode failed")) == 5000


def test_usage_names_cached_tokens_only_when_there_are_some() -> None:
    assert usage_dict(Usage(5, 2)) == {
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "total_tokens": 7,
    }
    assert usage_dict(Usage(5, 2, 4))["prompt_tokens_details"] == {"cached_tokens": 4}


def test_a_whole_answer_with_tools_and_in_json_mode() -> None:
    done = Finished("stop", Usage(3, 4))
    call = ToolCall("call_1", "f", {"x": 1})
    with_tools = parse_text_generation(
        {"prompt": "x", "tools": [{"name": "f", "description": "", "parameters": {}}]}
    )
    assert cf_result("hi", [call], done, with_tools) == {
        "response": "hi",
        "tool_calls": [{"name": "f", "arguments": {"x": 1}}],
        "usage": usage_dict(done.usage),
    }
    json_mode = parse_text_generation({"prompt": "x", "response_format": {"type": "json_object"}})
    assert cf_result('{"a": 1}', [], done, json_mode)["response"] == {"a": 1}


def test_json_mode_cut_off_before_it_closed_is_workers_ai_s_error() -> None:
    with pytest.raises(InvalidInput, match="JSON Mode couldn't be met"):
        json_answer('{"a": 1}', Finished("length", Usage(1, 1)))
    with pytest.raises(InvalidInput):
        json_answer("{", Finished("stop", Usage(1, 1)))
