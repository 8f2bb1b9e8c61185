"""engine/output.py: tokens to text, and the end rules, on the real vocabulary."""

from __future__ import annotations

import pytest

from wai.catalog import embedded_model_path
from wai.engines.llamacpp.gguf import LlamaTokenizer, load_tokenizer
from wai.engines.llamacpp.output import Output


@pytest.fixture(scope="module")
def tok() -> LlamaTokenizer:
    return load_tokenizer(embedded_model_path())


def run(out: Output, tokens: list[int]) -> tuple[str, str | None]:
    text, reason = "", None
    for t in tokens:
        piece, reason = out.push(t)
        text += piece or ""
        if reason:
            break
    return text + out.tail(), reason


def test_length_ends_at_max_tokens(tok: LlamaTokenizer) -> None:
    ids = tok.tokenize("one two three four", add_special=False, parse_special=False)
    assert run(Output(tok, stop=(), max_tokens=2, ignore_eos=False), ids) == (
        tok.piece(ids[0]).decode() + tok.piece(ids[1]).decode(),
        "length",
    )


def test_end_of_generation_is_not_text_unless_ignored(tok: LlamaTokenizer) -> None:
    ids = [*tok.tokenize("hi", add_special=False, parse_special=False), tok.eos_id]
    assert run(Output(tok, stop=(), max_tokens=9, ignore_eos=False), ids) == ("hi", "stop")
    text, reason = run(Output(tok, stop=(), max_tokens=9, ignore_eos=True), ids)
    assert (text, reason) == ("hi", None)  # counted, generation goes on, special text hidden


def test_stop_string_across_tokens(tok: LlamaTokenizer) -> None:
    ids = tok.tokenize("alpha beta gamma", add_special=False, parse_special=False)
    assert run(Output(tok, stop=("a g",), max_tokens=20, ignore_eos=False), ids) == (
        "alpha bet",
        "stop",
    )


def test_a_character_cut_by_the_end_is_dropped(tok: LlamaTokenizer) -> None:
    ids = tok.tokenize("ok 😀", add_special=False, parse_special=False)
    assert len(ids) > 2  # the emoji is split over byte tokens
    text, reason = run(Output(tok, stop=(), max_tokens=len(ids) - 1, ignore_eos=False), ids)
    assert reason == "length" and text == "ok " and "\ufffd" not in text
