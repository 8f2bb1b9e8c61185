"""engine/grammar.py: schemas in, grammars out; what cannot be enforced is refused by name."""

from __future__ import annotations

import pytest

from wai.catalog import embedded_model_path
from wai.engine import grammar
from wai.engine.gguf import load_tokenizer


def test_a_nested_schema_compiles_and_llama_cpp_parses_it() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
            "inner": {"$ref": "#/$defs/inner"},
        },
        "required": ["tags"],
        "$defs": {"inner": {"type": "object", "properties": {"x": {"type": "number"}}}},
    }
    gbnf = grammar.schema_grammar(schema)
    assert "root ::=" in gbnf
    assert grammar.schema_grammar(dict(schema)) is gbnf  # cached by content
    grammar.check_grammar(load_tokenizer(embedded_model_path()).vocab, gbnf)


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "integer", "minimum": 1}, "'/minimum'"),
        ({"properties": {"n": {"type": "number", "multipleOf": 2}}}, "'/properties/n/multipleOf'"),
        ({"items": {"uniqueItems": True}}, "'/items/uniqueItems'"),
        ({"anyOf": [{"type": "string"}, {"not": {}}]}, "'/anyOf/1/not'"),
        ({"$defs": {"d": {"patternProperties": {}}}}, "'/$defs/d/patternProperties'"),
    ],
)
def test_keywords_that_cannot_be_enforced_are_named(schema: dict[str, object], where: str) -> None:
    with pytest.raises(grammar.GrammarError, match=where.replace("$", r"\$")):
        grammar.schema_grammar(schema)


def test_size_and_depth_are_bounded() -> None:
    deep: dict[str, object] = {"type": "string"}
    for _ in range(grammar.MAX_DEPTH + 2):
        deep = {"type": "array", "items": deep}
    with pytest.raises(grammar.GrammarError, match="deeper"):
        grammar.schema_grammar(deep)
    big = {"enum": ["x" * 100] * 1000}
    with pytest.raises(grammar.GrammarError, match="larger"):
        grammar.schema_grammar(big)


def test_llama_cpp_refusing_a_grammar_is_an_error_not_a_crash() -> None:
    with pytest.raises(grammar.GrammarError):
        grammar.check_grammar(load_tokenizer(embedded_model_path()).vocab, "root ::= (")
