"""Tool calls through real clients, with the embedded model. Its template knows no tools, so
wai's generic syntax applies; with tool_choice "required" (or a named function) the call is
grammar-constrained: a known name, arguments valid against that tool's parameters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import cloudflare
import jsonschema  # type: ignore[import-untyped]
import openai
import pytest
import requests

from tests.conftest import LLAMA2, TOKEN, Server
from tests.e2e.sse import read_events
from tests.e2e.test_binding import _run

WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "hours": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": 23},
            "maxItems": 4,
        },
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}
TIME: dict[str, Any] = {
    "type": "object",
    "properties": {"zone": {"type": "string", "maxLength": 40}},
    "required": ["zone"],
}
OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather forecast",
            "parameters": WEATHER,
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "Time", "parameters": TIME},
    },
]
LEGACY_TOOLS = [
    {"name": "get_weather", "description": "Weather forecast", "parameters": WEATHER},
    {"name": "get_time", "description": "Time in a zone", "parameters": TIME},
]
ASK: list[Any] = [{"role": "user", "content": "What will the weather be in Paris this week?"}]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}


def _valid(name: str, arguments: dict[str, Any]) -> None:
    jsonschema.validate(arguments, SCHEMAS[name])


@pytest.fixture
def oai(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=TOKEN, base_url=f"{server.url}/v1", max_retries=0) as client:
        yield client


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 0.9, "seed": 5}])
def test_openai_required_call_validates(oai: openai.OpenAI, sampling: dict[str, Any]) -> None:
    done = oai.chat.completions.create(
        model=LLAMA2,
        messages=ASK,
        tools=OPENAI_TOOLS,
        tool_choice="required",
        max_tokens=200,
        **sampling,
    )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function" and calls[0].id.startswith("call_")
    fn = calls[0].function  # type: ignore[union-attr]
    _valid(fn.name, json.loads(fn.arguments))


def test_the_streamed_call_assembles_to_the_same_call(oai: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": LLAMA2,
        "messages": ASK,
        "tools": OPENAI_TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 200,
        "temperature": 0,
    }
    whole = oai.chat.completions.create(**kwargs).choices[0]
    assert whole.message.tool_calls is not None
    expected = whole.message.tool_calls[0].function  # type: ignore[union-attr]
    assert expected.name == "get_weather"  # the named function, and only it
    parts: dict[int, dict[str, str]] = {}
    reasons = []
    for chunk in oai.chat.completions.create(**kwargs, stream=True):
        for choice in chunk.choices:
            reasons.append(choice.finish_reason)
            for d in choice.delta.tool_calls or []:
                part = parts.setdefault(d.index, {"name": "", "arguments": "", "id": ""})
                part["id"] += d.id or ""
                part["name"] += (d.function.name or "") if d.function else ""
                part["arguments"] += (d.function.arguments or "") if d.function else ""
    assert reasons[-1] == "tool_calls"
    assert list(parts) == [0] and parts[0]["id"].startswith("call_")
    assert parts[0]["name"] == expected.name
    assert json.loads(parts[0]["arguments"]) == json.loads(expected.arguments)
    _valid("get_weather", json.loads(parts[0]["arguments"]))


def test_a_tool_result_turn_renders_and_answers(oai: openai.OpenAI) -> None:
    messages: list[Any] = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city": "Paris", "days": 3, "unit": "celsius"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"forecast": "sunny, 21 C"}'},
    ]
    done = oai.chat.completions.create(
        model=LLAMA2, messages=messages, tools=OPENAI_TOOLS, max_tokens=40, temperature=0
    )
    choice = done.choices[0]
    assert choice.finish_reason in ("stop", "length", "tool_calls")
    assert choice.message.content or choice.message.tool_calls
    bad = [
        *messages[:1],
        {**messages[1], "tool_calls": [{"function": {"name": "x", "arguments": "{"}}]},
    ]
    with pytest.raises(openai.BadRequestError, match="arguments"):
        oai.chat.completions.create(model=LLAMA2, messages=bad, max_tokens=4)


def test_the_cloudflare_sdk_gets_tool_calls(server: Server) -> None:
    with cloudflare.Cloudflare(
        api_token=TOKEN, base_url=f"{server.url}/client/v4", max_retries=0
    ) as cf:
        out: Any = cf.ai.run(
            LLAMA2,
            account_id="local",
            messages=ASK,
            tools=LEGACY_TOOLS,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=200,
            extra_body={"tool_choice": "required"},  # OpenAI's, which wai takes here too
        )
    calls = out["tool_calls"]
    assert len(calls) == 1 and isinstance(calls[0]["arguments"], dict)
    _valid(calls[0]["name"], calls[0]["arguments"])


def _rest(server: Server, body: dict[str, Any], **kw: Any) -> requests.Response:
    return requests.post(server.run_url(LLAMA2), headers=server.auth, json=body, timeout=120, **kw)


def test_rest_binding_and_stream_agree(server: Server) -> None:
    body = {
        "messages": ASK,
        "tools": OPENAI_TOOLS,  # Workers AI's newer form
        "tool_choice": "required",
        "max_tokens": 200,
        "temperature": 0,
    }
    r = _rest(server, body)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    calls = result["tool_calls"]
    assert len(calls) == 1 and result["response"] == ""
    _valid(calls[0]["name"], calls[0]["arguments"])
    b = _run(server, {"inputs": body})
    assert b.status_code == 200 and b.json()["tool_calls"] == calls
    with _rest(server, {**body, "stream": True}, stream=True) as s:
        evs = read_events(s)
    streamed = [e["tool_calls"] for e in evs if isinstance(e, dict) and e.get("tool_calls")]
    assert streamed == [calls]
    assert "usage" in evs[-2] and evs[-1] == "[DONE]"
    # without a call, tool_calls is there and empty; tool_choice none shows no tools at all
    r = _rest(server, {**body, "tool_choice": "none", "max_tokens": 8})
    assert r.status_code == 200 and r.json()["result"]["tool_calls"] == []


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"tools": [{"name": "f", "parameters": {"type": "object", "not": {}}}]},
            "/tools/0/parameters/not",
        ),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "no tool is named"),
        ({"response_format": {"type": "json_object"}}, "cannot be combined"),
        ({"tools": [*LEGACY_TOOLS, LEGACY_TOOLS[0]]}, "same name"),
        ({"tools": [{"name": "bad name!"}]}, "/tools/0"),
        ({"functions": [{"name": "f", "code": "x"}]}, "functions"),
        ({"n": 2}, "/n"),
    ],
)
def test_refusals_are_named(server: Server, change: dict[str, Any], needle: str) -> None:
    r = _rest(server, {"messages": ASK, "tools": LEGACY_TOOLS, **change})
    assert r.status_code == 400, r.text
    err = r.json()["errors"][0]
    assert err["code"] == 5006 and needle in err["message"], err


def test_openai_refusals_name_the_parameter(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(
            model=LLAMA2, messages=ASK, tool_choice="required", max_tokens=4
        )
    assert e.value.body["param"] == "tool_choice"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="function_call"):
        oai.chat.completions.create(
            model=LLAMA2,
            messages=ASK,
            function_call="auto",
            max_tokens=4,  # type: ignore[arg-type]
        )
