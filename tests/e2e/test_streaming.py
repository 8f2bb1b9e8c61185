"""Streaming: framing, padding, usage, [DONE], equality with non-streamed text, UTF-8 safety."""

from __future__ import annotations

import requests

from tests.conftest import Server
from tests.e2e.sse import read_events


def _post(server: Server, **body: object) -> requests.Response:
    return requests.post(server.run_url(), headers=server.auth, json=body, timeout=120)


def test_stream_format(server: Server) -> None:
    r = _post(server, prompt="Say hello", stream=True, max_tokens=8, temperature=0)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    events = read_events(r)
    assert events[-1] == "[DONE]"
    usage_event = events[-2]
    assert usage_event["response"] == ""
    usage = usage_event["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    deltas = events[:-2]
    # one event per generated token, each padded
    assert len(deltas) == usage["completion_tokens"]
    for ev in deltas:
        assert set(ev) == {"response", "p"}
        assert isinstance(ev["p"], str) and ev["p"]


def test_streamed_text_equals_non_streamed_at_temperature_0(server: Server) -> None:
    body = {"messages": [{"role": "user", "content": "Describe the sea in two sentences."}],
            "max_tokens": 48, "temperature": 0}
    whole = _post(server, **body).json()["result"]
    events = read_events(_post(server, stream=True, **body))
    streamed = "".join(ev["response"] for ev in events[:-1])
    assert streamed == whole["response"]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert events[-2]["usage"][key] == whole["usage"][key]


def test_utf8_safe_streaming_with_accents_and_emoji(server: Server) -> None:
    body = {"prompt": "Réponds en français avec des emoji 😀🎉: qu'est-ce qu'un café crème ?",
            "raw": True, "max_tokens": 64, "temperature": 0}
    r = _post(server, stream=True, **body)
    # read_events decodes the whole body as strict UTF-8, and each event's JSON separately.
    events = read_events(r)
    streamed = "".join(ev["response"] for ev in events[:-1])
    assert "\ufffd" not in streamed
    assert streamed == _post(server, **body).json()["result"]["response"]
