"""backends/local/json_schema.py (schemas in, grammars out; what cannot be enforced is refused by
name) and engine/grammar.py (a grammar fed text, as the engine does)."""

from __future__ import annotations

import pytest

from wai.backends.local import json_schema as grammar
from wai.catalog import embedded_model_path
from wai.engines.llamacpp.gguf import load_tokenizer
from wai.engines.llamacpp.grammar import accepts


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
    grammar.check_grammar(load_tokenizer(embedded_model_path()).vocab, gbnf)


def test_a_model_keeps_its_checked_grammars_by_content_and_bounded() -> None:
    cache = grammar.GrammarCache(load_tokenizer(embedded_model_path()).vocab, size=2)
    built: list[int] = []

    def build(n: int) -> str:
        built.append(n)
        return f'root ::= "{n}"'

    gbnf = cache.get({"n": 1, "x": [1]}, lambda: build(1))
    assert cache.get({"x": [1], "n": 1}, lambda: build(1)) is gbnf  # cached by content
    assert built == [1]
    cache.get(2, lambda: build(2))
    cache.get(3, lambda: build(3))  # the least recently used (1) goes
    assert len(cache) == 2
    cache.get({"n": 1, "x": [1]}, lambda: build(1))
    assert built == [1, 2, 3, 1]
    with pytest.raises(grammar.GrammarError):  # llama.cpp refuses it: never kept
        cache.get(4, lambda: "root ::= (")
    assert len(cache) == 2


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "number", "minimum": 0.5}, "'/minimum'"),
        ({"type": "number", "exclusiveMaximum": 3}, "'/exclusiveMaximum'"),
        ({"type": "string", "maximum": 3}, "'/maximum'"),
        ({"type": "integer", "minimum": 5, "maximum": 4}, "admits no integer"),
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


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ({"type": "integer", "minimum": -15, "maximum": 230}, ["-15", "0", "7", "99", "230"],
         ["-16", "231", "1000", "07", "1.5", "-0"]),
        ({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10.5}, ["1", "10"],
         ["0", "11"]),
        ({"type": "integer", "minimum": 100}, ["100", "5000", "123456789"], ["99", "-1"]),
        ({"type": "integer", "maximum": -12}, ["-12", "-13", "-900"], ["-11", "0", "5"]),
        ({"type": "number", "minimum": 0, "maximum": 1}, ["0", "0.25", "1", "1.000"],
         ["1.01", "-0.5", "2", "1e0"]),
        ({"type": "number", "minimum": -3, "maximum": 7}, ["-3", "-2.5", "-0.1", "6.99", "7.0"],
         ["-3.5", "7.5", "-4"]),
    ],
)  # fmt: skip
def test_numeric_ranges_are_enforced(
    schema: dict[str, object], good: list[str], bad: list[str]
) -> None:
    """Ranges become grammar (llama-cpp-python's converter has none): every accepted number is
    in range, and every number in range can be written."""
    tok = load_tokenizer(embedded_model_path())
    gbnf = grammar.schema_grammar(schema)
    for text in good:
        assert accepts(tok, gbnf, text), text
    for text in bad:
        assert not accepts(tok, gbnf, text), text


def test_range_rules_against_every_small_number() -> None:
    """The digit-by-digit construction, checked exhaustively on small bounds."""
    tok = load_tokenizer(embedded_model_path())
    for lo, hi in [(0, 9), (5, 123), (-45, 7), (-200, -37), (19, 20)]:
        gbnf = "root ::= " + grammar.range_rule(lo, hi, fraction=False)
        for n in range(-250, 250):
            assert accepts(tok, gbnf, str(n)) == (lo <= n <= hi), (lo, hi, n)
