"""The text-to-text ids' input shapes: languages by code or name, the refusals that name the
field, indictrans2's targets and their M2M100 equivalents."""

from __future__ import annotations

from typing import Any

import pytest

from wai.catalog import BART_CNN, DISTILBERT_SST2, INDICTRANS2, M2M100
from wai.errors import InvalidInput
from wai.schemas.text2text import (
    INDICTRANS2_TARGETS,
    M2M100_CODES,
    M2M100_NAMES,
    ClassificationInput,
    SummaryInput,
    TranslationInput,
    m2m100_language,
    parse_text2text,
)
from wai.weights.seq2seq import M2M100_LANGUAGES


def test_every_m2m100_language_has_a_name_and_the_converter_knows_it() -> None:
    assert set(M2M100_NAMES.values()) == set(M2M100_LANGUAGES) == M2M100_CODES
    assert len(M2M100_LANGUAGES) == 100


@pytest.mark.parametrize(
    ("given", "code"),
    [("fr", "fr"), ("French", "fr"), ("  chinese ", "zh"), ("pt-BR", "pt"), ("zh_CN", "zh"),
     ("ceb", "ceb"), ("scottish gaelic", "gd")],
)  # fmt: skip
def test_a_language_is_a_code_or_an_english_name(given: str, code: str) -> None:
    assert m2m100_language(given, "target_lang") == code


@pytest.mark.parametrize("given", ["klingon", "", "xx-YY", 3, None, "e"])
def test_an_unknown_language_is_refused_naming_the_field(given: Any) -> None:
    with pytest.raises(InvalidInput, match="'/source_lang'"):
        m2m100_language(given, "source_lang")


def test_each_id_parses_to_its_input() -> None:
    t = parse_text2text(M2M100, "translation", {"text": "Hi", "target_lang": "german"})
    assert t == TranslationInput(("Hi",), "en", "de", "m2m100", "german")
    i = parse_text2text(
        INDICTRANS2, "translation", {"text": ["a", "b"], "target_language": "tam_Taml"}
    )
    assert isinstance(i, TranslationInput) and i.texts == ("a", "b") and i.shape == "indictrans2"
    s = parse_text2text(BART_CNN, "summarization", {"input_text": "News.", "options": {}})
    assert s == SummaryInput("News.", 1024)
    c = parse_text2text(DISTILBERT_SST2, "text-classification", {"text": "Good"})
    assert c == ClassificationInput("Good")


def test_indictrans2_targets_are_its_schema_enum_and_map_to_m2m100_codes() -> None:
    assert len(INDICTRANS2_TARGETS) == 34 and INDICTRANS2_TARGETS["hin_Deva"] == "hi"
    assert all(c is None or c in M2M100_CODES for c in INDICTRANS2_TARGETS.values())
    assert sum(c is not None for c in INDICTRANS2_TARGETS.values()) == 13  # eng_Latn and 12
    from wai.catalog import Catalog

    spec = Catalog().get(INDICTRANS2)
    assert spec is not None and spec.schema is not None
    enum = spec.schema["input"]["properties"]["target_language"]["enum"]
    assert list(INDICTRANS2_TARGETS) == enum


def test_a_batch_body_is_a_bad_input_naming_the_queue() -> None:
    from wai.catalog import Catalog
    from wai.schemas import parse_inputs

    spec = Catalog().get(M2M100)
    assert spec is not None
    with pytest.raises(InvalidInput, match="queueRequest"):
        parse_inputs(spec, {"requests": [{"text": "Hi", "target_lang": "fr"}]})
