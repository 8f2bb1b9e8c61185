"""Streaming: framing, padding, usage, [DONE], equality with non-streamed text, UTF-8 safety."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import LLAMA2, Server
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
    body = {
        "messages": [{"role": "user", "content": "Describe the sea in two sentences."}],
        "max_tokens": 48,
        "temperature": 0,
    }
    whole = _post(server, **body).json()["result"]
    events = read_events(_post(server, stream=True, **body))
    streamed = "".join(ev["response"] for ev in events[:-1])
    assert streamed == whole["response"]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert events[-2]["usage"][key] == whole["usage"][key]


def test_utf8_safe_streaming_with_accents_and_emoji(server: Server) -> None:
    body = {
        "prompt": "Réponds en français avec des emoji 😀🎉: qu'est-ce qu'un café crème ?",
        "raw": True,
        "max_tokens": 64,
        "temperature": 0,
    }
    r = _post(server, stream=True, **body)
    # read_events decodes the whole body as strict UTF-8, and each event's JSON separately.
    events = read_events(r)
    streamed = "".join(ev["response"] for ev in events[:-1])
    assert "\ufffd" not in streamed
    assert streamed == _post(server, **body).json()["result"]["response"]


EMOJI = "Reply with ten emoji: 😀😃😄"  # greedy: tokens 1, 2, 4, 5, … end inside a character


@pytest.mark.parametrize("max_tokens", [1, 2, 4])
def test_a_character_cut_by_max_tokens_is_dropped_on_every_route(
    server: Server, max_tokens: int
) -> None:
    body = {"prompt": EMOJI, "max_tokens": max_tokens, "temperature": 0}
    texts = []
    whole = _post(server, **body).json()["result"]
    assert whole["usage"]["completion_tokens"] == max_tokens  # the token still counts
    texts.append(whole["response"])
    events = read_events(_post(server, stream=True, **body))
    texts.append("".join(ev["response"] for ev in events[:-1]))
    binding = requests.post(
        f"{server.url}/run?version=3",
        timeout=60,
        json={"inputs": body},
        headers={**server.auth, "cf-consn-model-id": LLAMA2},
    )
    texts.append(binding.json()["response"])
    chat = requests.post(
        f"{server.url}/v1/chat/completions",
        headers=server.auth,
        timeout=60,
        json={
            "model": LLAMA2,
            "messages": [{"role": "user", "content": EMOJI}],
            "max_tokens": max_tokens,
            "temperature": 0,
        },
    )
    texts.append(chat.json()["choices"][0]["message"]["content"])
    for text in texts:
        assert "\ufffd" not in text
    assert len(set(texts[:3])) == 1
