"""api/framing.py: the HTTP status of each Workers AI code, the Cloudflare error of a failure,
and Workers AI's event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from wai.api.errors import CFError
from wai.api.framing import cf_sse, failed_error, refuse_json_stream, status_for, to_cf_error
from wai.backends.base import (
    Delta,
    EngineBusy,
    Event,
    Failed,
    Finished,
    Generation,
    ToolCall,
    ToolCalls,
    UpstreamError,
    Usage,
)
from wai.schemas.text_generation import parse_text_generation


def test_every_code_wai_answers_with_has_its_status() -> None:
    statuses = {code: status_for(code) for code in (5006, 5007, 3007, 3040, 3043, 5000)}
    assert statuses == {5006: 400, 5007: 400, 3007: 408, 3040: 429, 3043: 503, 5000: 500}
    assert status_for(9999) == 500  # a code without a status of its own: an internal error


def test_a_lower_layer_failure_becomes_its_cloudflare_error() -> None:
    err = to_cf_error(EngineBusy("Capacity temporarily exceeded"))
    assert (err.status, err.code, err.headers) == (429, 3040, {"retry-after": "1"})
    assert err.message == "AiError: Capacity temporarily exceeded"
    upstream = to_cf_error(UpstreamError(3007, "slow"))
    assert (upstream.status, upstream.code, upstream.headers) == (408, 3007, {})
    same = CFError(401, 10000, "no")
    assert to_cf_error(same) is same


def test_a_failure_after_queueing_says_whether_to_retry() -> None:
    crashed = failed_error(Failed("engine died", crashed=True))
    assert (crashed.status, crashed.code, crashed.headers) == (503, 3043, {"retry-after": "1"})
    broken = failed_error(Failed("decode failed"))
    assert (broken.status, broken.code, broken.headers) == (500, 5000, {})


def test_json_mode_does_not_stream() -> None:
    inp = parse_text_generation(
        {"prompt": "x", "stream": True, "response_format": {"type": "json_object"}}
    )
    with pytest.raises(CFError, match="does not stream"):
        refuse_json_stream(inp)
    refuse_json_stream(parse_text_generation({"prompt": "x", "stream": True}))


async def _events(*events: Event) -> AsyncIterator[Event]:
    for ev in events:
        yield ev


def _payloads(generation: Generation[Event]) -> list[object]:
    async def go() -> list[bytes]:
        return [chunk async for chunk in cf_sse(generation)]

    out: list[object] = []
    for chunk in asyncio.run(go()):
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
        body = chunk[6:-2]
        out.append(body.decode() if body == b"[DONE]" else json.loads(body))
    return out


def test_the_stream_pads_each_token_then_the_calls_the_usage_and_done() -> None:
    call = ToolCall("c1", "f", {"x": 1})
    generation = Generation(
        _events(Delta("Hi", 1), ToolCalls([call]), Finished("stop", Usage(3, 1))), lambda: None
    )
    first, calls, usage, done = _payloads(generation)
    assert isinstance(first, dict) and first["response"] == "Hi" and "p" in first
    assert calls == {"response": "", "tool_calls": [{"name": "f", "arguments": {"x": 1}}]}
    assert usage == {
        "response": "",
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    assert done == "[DONE]"


def test_a_failure_mid_stream_is_an_error_event_then_done() -> None:
    generation = Generation(_events(Delta("a", 1), Failed("gone", crashed=True)), lambda: None)
    _, error, done = _payloads(generation)
    assert error == {"response": "", "error": {"code": 3043, "message": "gone"}}
    assert done == "[DONE]"
