"""JSON mode and tool calls: JSON Schemas compiled to llama.cpp grammars (GBNF), which the
engine's sampler then enforces token by token (engine/grammar.py), so the output always parses,
whatever the model.

The conversion is llama-cpp-python's JSON-Schema -> GBNF converter, extended here with numeric
ranges (`minimum`, `maximum`, and for integers the exclusive forms too). Keywords no grammar
enforces are refused up front by name, never silently ignored (the output would then not
validate). Schemas are bounded in size and depth; a local backend keeps the grammars it has
compiled and checked in a bounded cache (`GrammarCache`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import llama_cpp as L
from llama_cpp.llama_grammar import RESERVED_NAMES, SchemaConverter

from wai.engines.llamacpp.grammar import grammar_sampler

MAX_SCHEMA_BYTES = 64 * 1024
MAX_DEPTH = 24
CACHE_SIZE = 256  # grammars kept per model

RANGE_KEYWORDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
# keywords the converter turns into grammar, and annotations that constrain nothing
SUPPORTED = RANGE_KEYWORDS | frozenset(
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
    if RANGE_KEYWORDS & schema.keys():
        _range_bounds(schema, path)  # refuses what no grammar below can express


def check_schema(schema: Any, path: str) -> None:
    """Refuse, by name, what JSON mode cannot enforce in `schema` (found at JSON pointer
    `path` of the request). Raises GrammarError."""
    _check(schema, path, 0)


# --- numeric ranges ----------------------------------------------------------------------------


def _same_length(lo: str, hi: str) -> str:
    """GBNF for the decimal strings of one length from lo to hi (lo <= hi, leading zeros
    allowed: callers pass lengths whose numbers have none)."""
    n = len(lo)
    if lo == hi:
        return f'"{lo}"'
    if lo == "0" * n and hi == "9" * n:
        return "[0-9]" if n == 1 else f"[0-9]{{{n}}}"
    if n == 1:
        return f"[{lo}-{hi}]"
    if lo[0] == hi[0]:
        return f'"{lo[0]}" ({_same_length(lo[1:], hi[1:])})'
    alts = [f'"{lo[0]}" ({_same_length(lo[1:], "9" * (n - 1))})']
    if int(hi[0]) - int(lo[0]) > 1:
        alts.append(
            f"[{int(lo[0]) + 1}-{int(hi[0]) - 1}] {_same_length('0' * (n - 1), '9' * (n - 1))}"
        )
    alts.append(f'"{hi[0]}" ({_same_length("0" * (n - 1), hi[1:])})')
    return " | ".join(alts)


def _naturals(lo: int, hi: int | None) -> str:
    """GBNF for the integers lo..hi (0 <= lo; hi None: no upper bound), without leading zeros."""
    assert lo >= 0 and (hi is None or lo <= hi)
    top = len(str(hi)) if hi is not None else len(str(lo))
    alts = []
    for digits in range(len(str(lo)), top + 1):
        low = lo if digits == len(str(lo)) else 10 ** (digits - 1)
        high = hi if hi is not None and digits == top else 10**digits - 1
        alts.append(_same_length(str(low), str(high)))
    if hi is None:  # and every longer number
        alts.append(f"[1-9] [0-9]{{{top}}} [0-9]*")
    return " | ".join(f"({a})" for a in alts)


def _magnitudes(lo: int, hi: int | None, fraction: bool) -> str:
    """GBNF for unsigned decimals whose value lies in [lo, hi] (integer bounds; hi None: no
    upper bound); `fraction`: numbers may have a fractional part."""
    if not fraction:
        return _naturals(lo, hi)
    frac = '("." [0-9]+)?'
    if hi is None:
        return f"({_naturals(lo, None)}) {frac}"
    exact = f'"{hi}" ("." "0"+)?'  # hi itself, however written
    if hi == lo:
        return exact
    return f"({_naturals(lo, hi - 1)}) {frac} | {exact}"


def _range_bounds(schema: dict[str, Any], path: str) -> tuple[int | None, int | None, bool]:
    """A numeric range as inclusive integer bounds, and whether fractions are allowed.
    Raises GrammarError for what the grammar cannot express."""
    kind = schema.get("type")
    if kind not in ("integer", "number"):
        key = sorted(RANGE_KEYWORDS & schema.keys())[0]
        raise GrammarError(f'\'{path}/{key}\': a range needs "type": "integer" or "number"')
    bounds: dict[str, int] = {}
    for key in RANGE_KEYWORDS & schema.keys():
        value = schema[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise GrammarError(f"'{path}/{key}': must be a number")
        if kind == "number" and (key.startswith("exclusive") or value != int(value)):
            raise GrammarError(
                f'\'{path}/{key}\': for "type": "number", JSON mode enforces only inclusive '
                'whole-number bounds (use "type": "integer", or widen the bound)'
            )
        if key == "minimum":
            bounds[key] = math.ceil(value)
        elif key == "exclusiveMinimum":
            bounds[key] = math.floor(value) + 1
        elif key == "maximum":
            bounds[key] = math.floor(value)
        else:
            bounds[key] = math.ceil(value) - 1
    lows = [bounds[k] for k in ("minimum", "exclusiveMinimum") if k in bounds]
    highs = [bounds[k] for k in ("maximum", "exclusiveMaximum") if k in bounds]
    lo, hi = (max(lows) if lows else None), (min(highs) if highs else None)
    if lo is not None and hi is not None and lo > hi:
        raise GrammarError(f"'{path or '/'}': the range admits no {kind}")
    for bound in (lo, hi):
        if bound is not None and abs(bound) > 10**15:
            raise GrammarError(f"'{path or '/'}': range bounds beyond 10^15 are not supported")
    return lo, hi, kind == "number"


def range_rule(lo: int | None, hi: int | None, fraction: bool) -> str:
    """GBNF for the JSON numbers in [lo, hi] (None: unbounded on that side); integers only
    unless `fraction`. No exponents: a bounded number is written out in full."""
    alts = []
    if hi is None or hi >= 0:  # the non-negative part
        alts.append(_magnitudes(max(lo or 0, 0), hi, fraction))
    if lo is None or lo < 0:  # the negative part: magnitudes from max(0, -hi) (or 1) up to -lo
        smallest = max(-hi, 0) if hi is not None else 0
        if not fraction:
            smallest = max(smallest, 1)
        alts.append(f'"-" ({_magnitudes(smallest, None if lo is None else -lo, fraction)})')
    return " | ".join(f"({a})" for a in alts)


_Base: Any = SchemaConverter  # untyped upstream


class _Converter(_Base):  # type: ignore[misc]
    """llama-cpp-python's converter, plus numeric ranges."""

    def __init__(self) -> None:
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)

    def visit(self, schema: Any, name: str) -> str:
        if isinstance(schema, dict) and RANGE_KEYWORDS & schema.keys():
            rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
            rule = range_rule(*_range_bounds(schema, ""))
            key: str = self._add_rule(rule_name, f"({rule}) space")
            return key
        out: str = super().visit(schema, name)
        return out


def _convert(schema: dict[str, Any], name: str, extra: dict[str, str]) -> str:
    converter: Any = _Converter()
    # resolve_refs rewrites "$ref"s in place: never in the caller's (the request's) schema
    resolved = converter.resolve_refs(copy.deepcopy(schema), "stdin")
    converter.visit(resolved, name)
    for rule, body in extra.items():
        converter._rules[rule] = body
    text: str = converter.format_grammar()
    return text


class GrammarCache:
    """Grammars compiled from schemas and checked by llama.cpp's parser for one vocabulary,
    least recently used out first. Keyed by the SHA-256 of what they were built from."""

    def __init__(self, vocab: Any, size: int = CACHE_SIZE) -> None:
        self._vocab = vocab
        self._size = size
        self._lock = threading.Lock()
        self._grammars: OrderedDict[str, str] = OrderedDict()

    def get(self, key_parts: Any, build: Callable[[], str]) -> str:
        """The grammar for `key_parts`, built (and checked) on a miss. Raises GrammarError."""
        text = json.dumps(key_parts, sort_keys=True, separators=(",", ":"))
        if len(text) > MAX_SCHEMA_BYTES:
            raise GrammarError(f"the JSON schema is larger than {MAX_SCHEMA_BYTES} bytes")
        key = hashlib.sha256(text.encode()).hexdigest()
        with self._lock:
            if key in self._grammars:
                self._grammars.move_to_end(key)
                return self._grammars[key]
        gbnf = _compiled(build)
        check_grammar(self._vocab, gbnf)
        with self._lock:
            self._grammars[key] = gbnf
            while len(self._grammars) > self._size:
                self._grammars.popitem(last=False)
        return gbnf

    def __len__(self) -> int:
        return len(self._grammars)


def _compiled(build: Callable[[], str]) -> str:
    """What `build` compiles, its converter's failures as GrammarError."""
    try:
        return build()
    except GrammarError:
        raise
    except (ValueError, KeyError, TypeError, NotImplementedError, AssertionError) as e:
        raise GrammarError(f"the JSON schema cannot be compiled: {e}") from None


def _check_size(parts: Any) -> None:
    if len(json.dumps(parts, separators=(",", ":"))) > MAX_SCHEMA_BYTES:
        raise GrammarError(f"the JSON schema is larger than {MAX_SCHEMA_BYTES} bytes")


def schema_grammar(schema: dict[str, Any]) -> str:
    """The GBNF for a JSON Schema. Raises GrammarError."""

    def build() -> str:
        _check_size(schema)
        _check(schema, "", 0)
        return _convert(schema, "", {})

    return _compiled(build)


def wrapped_grammar(schema: dict[str, Any], rule: str, root: str) -> str:
    """A grammar whose rule `rule` is the JSON Schema `schema` and whose `root` is the GBNF
    expression `root`, which may use `rule` (a tool call's syntax around its JSON object).
    Raises GrammarError."""

    def build() -> str:
        _check_size(schema)
        _check(schema, "", 0)
        return _convert(schema, rule, {"root": root})

    return _compiled(build)


def check_grammar(vocab: Any, gbnf: str) -> None:
    """Parse the grammar as the engine will (llama.cpp's parser only: no model, no kernel);
    raises GrammarError when llama.cpp refuses it."""
    sampler = grammar_sampler(vocab, gbnf)
    if sampler is None:
        raise GrammarError("the JSON schema compiles to a grammar llama.cpp refuses")
    L.llama_sampler_free(sampler)
