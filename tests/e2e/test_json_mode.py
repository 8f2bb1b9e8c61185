"""JSON mode: the output is grammar-constrained to the schema, on every route, whatever the
model (the embedded 135M model included), greedy or seeded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import jsonschema  # type: ignore[import-untyped]
import openai
import pytest
import requests
from pydantic import BaseModel, Field

from tests.conftest import LLAMA2, TOKEN, Server
from tests.e2e.test_binding import _run

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "colors": {
            "type": "array",
            "items": {"enum": ["red", "green", "blue"]},
            "minItems": 1,
            "maxItems": 3,
        },
        "pet": {
            "type": "object",
            "properties": {
                "kind": {"enum": ["cat", "dog"]},
                "legs": {"type": "number", "minimum": 0, "maximum": 8},
            },
            "required": ["kind", "legs"],
            "additionalProperties": False,
        },
        "nickname": {"type": "string"},
    },
    "required": ["name", "age", "colors", "pet"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "user", "content": "Describe a person and their pet."}]
SAMPLING: list[dict[str, Any]] = [{"temperature": 0}, {"temperature": 0.9, "seed": 11}]


def _rest(server: Server, body: dict[str, Any]) -> requests.Response:
    return requests.post(server.run_url(LLAMA2), headers=server.auth, json=body, timeout=120)


@pytest.mark.parametrize("sampling", SAMPLING)
@pytest.mark.parametrize(
    "fmt",
    [
        {"type": "json_schema", "json_schema": SCHEMA},  # Workers AI's form
        {"type": "json_schema", "json_schema": {"name": "p", "strict": True, "schema": SCHEMA}},
    ],
)
def test_rest_returns_an_object_that_validates(
    server: Server, fmt: dict[str, Any], sampling: dict[str, Any]
) -> None:
    r = _rest(server, {"messages": MESSAGES, "response_format": fmt, "max_tokens": 300, **sampling})
    assert r.status_code == 200, r.text
    response = r.json()["result"]["response"]
    assert isinstance(response, dict)  # the object itself, as Workers AI returns it
    jsonschema.validate(response, SCHEMA)


def test_json_object_and_the_binding(server: Server) -> None:
    fmt = {"type": "json_object"}
    city = [{"role": "user", "content": "Return a JSON object with the name of a city."}]
    r = _rest(
        server, {"messages": city, "response_format": fmt, "max_tokens": 300, "temperature": 0}
    )
    assert r.status_code == 200 and isinstance(r.json()["result"]["response"], dict)
    body = {"messages": MESSAGES, "max_tokens": 300, "temperature": 0}
    b = _run(
        server,
        {"inputs": {**body, "response_format": {"type": "json_schema", "json_schema": SCHEMA}}},
    )
    assert b.status_code == 200, b.text
    jsonschema.validate(b.json()["response"], SCHEMA)


def test_json_mode_refusals_are_named(server: Server) -> None:
    fmt = {"type": "json_schema", "json_schema": SCHEMA}
    r = _rest(server, {"messages": MESSAGES, "response_format": fmt, "stream": True})
    assert r.status_code == 400 and "does not stream" in r.json()["errors"][0]["message"]
    ranged = {"type": "object", "properties": {"n": {"type": "number", "exclusiveMinimum": 0.5}}}
    r = _rest(
        server,
        {"prompt": "x", "response_format": {"type": "json_schema", "json_schema": ranged}},
    )
    err = r.json()["errors"][0]
    assert r.status_code == 400 and err["code"] == 5006
    assert "/properties/n/exclusiveMinimum" in err["message"], err
    r = _rest(server, {"prompt": "x", "response_format": {"type": "xml"}})
    assert r.status_code == 400
    # cut off by max_tokens before the object closes: Workers AI's message
    r = _rest(server, {"messages": MESSAGES, "response_format": fmt, "max_tokens": 3})
    assert r.status_code == 400 and "JSON Mode couldn't be met" in r.text


class Pet(BaseModel):
    kind: Literal["cat", "dog"]
    legs: int


class Person(BaseModel):
    name: str
    pet: Pet
    # bounded: the properties keep the schema's order, and a 135M model, once in a list, may
    # repeat an item until max_tokens
    colors: Annotated[list[Literal["red", "green", "blue"]], Field(max_length=3)]


@pytest.fixture
def oai(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=TOKEN, base_url=f"{server.url}/v1", max_retries=0) as client:
        yield client


def test_the_openai_sdk_parses_into_a_pydantic_model(oai: openai.OpenAI) -> None:
    done = oai.chat.completions.parse(
        model=LLAMA2,
        messages=[{"role": "user", "content": "Describe a person and their pet."}],
        response_format=Person,
        max_tokens=300,
        temperature=0,
    )
    parsed = done.choices[0].message.parsed
    assert isinstance(parsed, Person) and parsed.pet.kind in ("cat", "dog")


def test_openai_streams_json_that_assembles_to_a_valid_object(oai: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}
    stream = oai.chat.completions.create(
        model=LLAMA2,
        messages=MESSAGES,  # type: ignore[arg-type]
        response_format=fmt,
        max_tokens=300,
        temperature=0,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    jsonschema.validate(json.loads(text), SCHEMA)
    done = oai.completions.create(
        model=LLAMA2,
        prompt="A person as JSON:",
        extra_body={"response_format": fmt},  # the SDK has no such argument here; wai takes it
        max_tokens=300,
        temperature=0,
    )
    jsonschema.validate(json.loads(done.choices[0].text), SCHEMA)
