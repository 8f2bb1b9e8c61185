"""api/openapi.py: the document says what the server takes (built without loading a model)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from wai.api.app import create_app
from wai.api.openapi import integer_pattern
from wai.settings import Settings


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    document: dict[str, Any] = create_app(Settings()).openapi()
    return document


def test_every_path_parameter_is_defined(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert set(re.findall(r"{(\w+)", path)) == declared, f"{method.upper()} {path}"


def test_the_binding_routes_document_their_body_and_headers(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/run"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BindingRequest"
    }
    header = next(p for p in op["parameters"] if p["name"] == "cf-consn-model-id")
    assert "@cf/meta/llama-2-7b-chat-int8" in header["schema"]["enum"]


@pytest.mark.parametrize("n", [1, 7, 10, 32000, 49152, 128256, 151936])
def test_integer_pattern_is_exactly_the_range(n: int) -> None:
    pattern = re.compile(integer_pattern(n))
    for k in [*range(0, 120), n - 2, n - 1, n, n + 1, 10 * n, 99999999]:
        assert bool(pattern.match(str(k))) is (0 <= k < n), k
    assert not pattern.match("01") and not pattern.match("-1")
