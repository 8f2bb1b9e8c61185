"""The Python client: Ai and AsyncAi against a running wai, and Ai.local() in-process."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LLAMA2, TOKEN, Server, answer_only, start_server, stop_server
from wai import Ai, AiError, AsyncAi
from wai.client import _event


def test_sync_run_and_stream(server: Server) -> None:
    with Ai(base_url=f"{server.url}/client/v4", token=TOKEN, account_id="acc") as ai:
        out = ai.run(LLAMA2, {"prompt": "Tell me a joke", "max_tokens": 8, "temperature": 0})
        assert out["response"] and out["usage"]["completion_tokens"] <= 8
        events = list(
            ai.run(
                LLAMA2,
                {"prompt": "Tell me a joke", "max_tokens": 8, "temperature": 0, "stream": True},
            )
        )
        assert "".join(e["response"] for e in events) == out["response"]
        assert answer_only(events[-1]["usage"]) == answer_only(out["usage"])


def test_errors_are_typed_with_the_cloudflare_code(server: Server) -> None:
    with Ai(base_url=f"{server.url}/client/v4", token=TOKEN) as ai:
        with pytest.raises(AiError) as info:
            ai.run("@cf/acme/none", {"prompt": "hi"})
        assert info.value.code == 5007 and info.value.status == 400
        with pytest.raises(AiError) as info:
            ai.run(LLAMA2, {"prompt": "hi", "temperature": 9})
        assert info.value.code == 5006
    with (
        Ai(base_url=f"{server.url}/client/v4", token="wrong") as ai,
        pytest.raises(AiError) as info,
    ):
        ai.run(LLAMA2, {"prompt": "hi"})
    assert info.value.code == 10000


def test_async_run_and_stream(server: Server) -> None:
    async def go() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with AsyncAi(base_url=f"{server.url}/client/v4", token=TOKEN) as ai:
            out = await ai.run(LLAMA2, {"prompt": "Hello", "max_tokens": 6, "temperature": 0})
            stream = await ai.run(
                LLAMA2, {"prompt": "Hello", "max_tokens": 6, "temperature": 0, "stream": True}
            )
            events = [e async for e in stream]
            with pytest.raises(AiError):
                await ai.run("@cf/acme/none", {"prompt": "hi"})
            return out, events

    out, events = asyncio.run(go())
    assert "".join(e["response"] for e in events) == out["response"]


TOOL = {
    "name": "add",
    "description": "Add two numbers",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}


def test_local_runs_the_engine_in_process(server: Server, tmp_path: Path) -> None:
    body = {"prompt": "Tell me a joke", "max_tokens": 8, "temperature": 0}
    calling = {
        "messages": [{"role": "user", "content": "What is 2 + 3?"}],
        "tools": [TOOL],
        "tool_choice": "required",
        "max_tokens": 64,
        "temperature": 0,
    }
    json_mode = {**body, "response_format": {"type": "json_object"}, "max_tokens": 64}
    with Ai(base_url=f"{server.url}/client/v4", token=TOKEN) as remote:
        expected = remote.run(LLAMA2, body)
        expected_call = remote.run(LLAMA2, calling)
        expected_json = remote.run(LLAMA2, json_mode)
    assert expected_call["tool_calls"][0]["name"] == "add"
    with Ai.local(engine={"slots": 1}, usage_db=tmp_path / "usage.db") as ai:
        out = ai.run(LLAMA2, body)
        assert answer_only(out) == answer_only(expected)
        # the batch queue, in this process too
        batch = {"requests": [body, {**body, "external_reference": "second"}]}
        queued = ai.run(LLAMA2, batch, queue_request=True)
        assert queued["status"] == "queued"
        polled = queued
        while "responses" not in polled:
            time.sleep(0.1)
            polled = ai.run(LLAMA2, {"request_id": queued["request_id"]}, queue_request=True)
        first, second = polled["responses"]
        assert first["result"]["response"] == second["result"]["response"] == out["response"]
        assert second["external_reference"] == "second"
        # tool calls and JSON mode answer as the binding does (usage aside: the server's
        # prefix cache may have served part of the prompt)
        for inputs, want in ((calling, expected_call), (json_mode, expected_json)):
            got = ai.run(LLAMA2, inputs)
            assert {**got, "usage": None} == {**want, "usage": None}
        events = list(ai.run(LLAMA2, {**body, "stream": True}))
        assert "".join(e["response"] for e in events) == expected["response"]
        with pytest.raises(AiError) as info:
            ai.run("@cf/acme/none", {"prompt": "hi"})
        assert info.value.code == 5007


def test_breaking_out_of_a_local_stream_cancels_the_generation() -> None:
    with Ai.local(engine={"slots": 1}) as ai:
        body = {
            "prompt": "Tell me a long story",
            "max_tokens": 400,
            "ignore_eos": True,
            "stream": True,
        }
        for _ in ai.run(LLAMA2, body):
            break
        stats = next(iter(ai._runtime.stats().values()))
        deadline = time.monotonic() + 10
        while stats.slots_busy and time.monotonic() < deadline:
            time.sleep(0.05)
            stats = next(iter(ai._runtime.stats().values()))
        assert stats.slots_busy == 0 and stats.requests_cancelled == 1
        assert stats.tokens_generated < 400


def test_a_mid_stream_error_event_raises() -> None:
    # the exact event wai's stream carries when inference fails after the response started
    line = 'data: {"response":"","error":{"code":5000,"message":"inference failed"}}'
    with pytest.raises(AiError) as info:
        _event(line)
    assert info.value.code == 5000 and "inference failed" in info.value.message
    assert _event('data: {"response":"hi","p":"xx"}') == {"response": "hi", "p": "xx"}
    assert _event("data: [DONE]") is None


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("one-slot"),
        "--token",
        TOKEN,
        env={"WAI_SLOTS": "1", "WAI_MAX_WAITING": "0"},
    )
    yield srv
    stop_server(srv)


def test_a_busy_server_is_retried_after_retry_after(one_slot: Server) -> None:
    # one request holds the only slot for about a second; the client's first try gets 429
    # (Retry-After: 1), its retry gets the slot
    hold = {"prompt": "Tell me a story", "max_tokens": 60, "ignore_eos": True}
    body = {"prompt": "Hi", "max_tokens": 2}
    with (
        Ai(base_url=f"{one_slot.url}/client/v4", token=TOKEN) as ai,
        Ai(base_url=f"{one_slot.url}/client/v4", token=TOKEN, max_retries=0) as impatient,
    ):
        holder = threading.Thread(target=ai.run, args=(LLAMA2, hold))
        holder.start()
        deadline = time.monotonic() + 10
        while one_slot.stats()["slots_busy"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(AiError) as info:
            impatient.run(LLAMA2, body)
        assert info.value.code == 3040 and info.value.status == 429
        assert holder.is_alive()
        t0 = time.monotonic()
        out = ai.run(LLAMA2, body)
        waited = time.monotonic() - t0
        holder.join()
    assert out["usage"]["completion_tokens"] == 2
    assert waited >= 0.9  # it was answered 429 and waited out Retry-After before retrying
    log = one_slot.log.read_text()
    assert "Traceback" not in log
