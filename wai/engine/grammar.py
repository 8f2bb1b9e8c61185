"""JSON mode: a JSON Schema compiled to a llama.cpp grammar (GBNF), which the sampler chain
then enforces token by token, so the output always parses, whatever the model.

The conversion is llama-cpp-python's JSON-Schema -> GBNF converter. Keywords it does not turn
into grammar are refused up front by name, never silently ignored (the output would then not
validate): numeric ranges (`minimum`, `maximum`, ...) among them, for now. Schemas are bounded
in size and depth, and compiled grammars are cached by the schema's hash.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

import llama_cpp as L
from llama_cpp.llama_grammar import json_schema_to_gbnf

MAX_SCHEMA_BYTES = 64 * 1024
MAX_DEPTH = 24
_CACHE_SIZE = 256

# keywords the converter turns into grammar, and annotations that constrain nothing
SUPPORTED = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "prefixItems",
        "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions",
        "minItems", "maxItems", "minLength", "maxLength", "pattern", "format",
        "title", "description", "default", "examples", "$schema", "$id", "$comment",
    }
)  # fmt: skip
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


class GrammarError(ValueError):
    """The schema cannot be turned into a grammar: the message names the keyword."""


def _check(schema: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise GrammarError(f"'{path or '/'}': the schema is nested deeper than {MAX_DEPTH}")
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise GrammarError(f"'{path or '/'}': a schema must be an object")
    for key, value in schema.items():
        if key not in SUPPORTED:
            raise GrammarError(
                f"'{path}/{key}': the JSON Schema keyword '{key}' is not supported in JSON mode"
            )
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                _check(sub, f"{path}/{key}/{name}", depth + 1)
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                _check(sub, f"{path}/{key}/{i}", depth + 1)
        elif key in ("items", "additionalProperties") and isinstance(value, dict | bool):
            _check(value, f"{path}/{key}", depth + 1)


_cache: OrderedDict[str, str] = OrderedDict()
_lock = threading.Lock()


def schema_grammar(schema: dict[str, Any]) -> str:
    """The GBNF for a JSON Schema (cached). Raises GrammarError."""
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_SCHEMA_BYTES:
        raise GrammarError(f"the JSON schema is larger than {MAX_SCHEMA_BYTES} bytes")
    key = hashlib.sha256(text.encode()).hexdigest()
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    _check(schema, "", 0)
    try:
        gbnf: str = json_schema_to_gbnf(text)
    except (ValueError, KeyError, TypeError, NotImplementedError) as e:
        raise GrammarError(f"the JSON schema cannot be compiled: {e}") from None
    with _lock:
        _cache[key] = gbnf
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return gbnf


def grammar_sampler(vocab: Any, gbnf: str) -> Any:
    """llama.cpp's grammar sampler for `gbnf` (the caller frees it); GrammarError when
    llama.cpp's parser refuses the grammar."""
    sampler = L.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    if not sampler:
        raise GrammarError("the JSON schema compiles to a grammar llama.cpp refuses")
    return sampler


def check_grammar(vocab: Any, gbnf: str) -> None:
    """Parse the grammar as the engine will (llama.cpp's parser only: no model, no kernel);
    raises GrammarError when llama.cpp refuses it."""
    L.llama_sampler_free(grammar_sampler(vocab, gbnf))
