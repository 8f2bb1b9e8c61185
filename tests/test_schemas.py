from __future__ import annotations

import pytest

from wai.errors import InvalidInput
from wai.schemas.text_generation import parse_text_generation


def test_defaults_follow_the_spec() -> None:
    inp = parse_text_generation({"prompt": "hi"})
    assert (inp.max_tokens, inp.temperature, inp.raw, inp.stream) == (256, 0.6, False, False)


def test_content_parts_are_joined() -> None:
    inp = parse_text_generation(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ]
        }
    )
    assert inp.messages is not None and inp.messages[0].text() == "ab"


def test_reject_if_busy_option() -> None:
    inp = parse_text_generation({"prompt": "hi", "options": {"rejectIfBusy": True}})
    assert inp.options is not None and inp.options.reject_if_busy


def test_integers_are_accepted_for_numbers_but_strings_are_not() -> None:
    assert parse_text_generation({"prompt": "a", "temperature": 1}).temperature == 1.0
    with pytest.raises(InvalidInput, match="/temperature"):
        parse_text_generation({"prompt": "a", "temperature": "1"})
