"""The Python client: Ai and AsyncAi against a running wai, and Ai.local() in-process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import LLAMA2, TOKEN, Server
from wai import Ai, AiError, AsyncAi


def test_sync_run_and_stream(server: Server) -> None:
    with Ai(base_url=f"{server.url}/client/v4", token=TOKEN, account_id="acc") as ai:
        out = ai.run(LLAMA2, {"prompt": "Tell me a joke", "max_tokens": 8, "temperature": 0})
        assert out["response"] and out["usage"]["completion_tokens"] <= 8
        events = list(ai.run(LLAMA2, {"prompt": "Tell me a joke", "max_tokens": 8,
                                      "temperature": 0, "stream": True}))
        assert "".join(e["response"] for e in events) == out["response"]
        assert events[-1]["usage"] == out["usage"]


def test_errors_are_typed_with_the_cloudflare_code(server: Server) -> None:
    with Ai(base_url=f"{server.url}/client/v4", token=TOKEN) as ai:
        with pytest.raises(AiError) as info:
            ai.run("@cf/acme/none", {"prompt": "hi"})
        assert info.value.code == 5007 and info.value.status == 400
        with pytest.raises(AiError) as info:
            ai.run(LLAMA2, {"prompt": "hi", "temperature": 9})
        assert info.value.code == 5006
    with Ai(base_url=f"{server.url}/client/v4", token="wrong") as ai, \
            pytest.raises(AiError) as info:
        ai.run(LLAMA2, {"prompt": "hi"})
    assert info.value.code == 10000


def test_async_run_and_stream(server: Server) -> None:
    async def go() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with AsyncAi(base_url=f"{server.url}/client/v4", token=TOKEN) as ai:
            out = await ai.run(LLAMA2, {"prompt": "Hello", "max_tokens": 6, "temperature": 0})
            stream = await ai.run(LLAMA2, {"prompt": "Hello", "max_tokens": 6,
                                           "temperature": 0, "stream": True})
            events = [e async for e in stream]
            with pytest.raises(AiError):
                await ai.run("@cf/acme/none", {"prompt": "hi"})
            return out, events

    out, events = asyncio.run(go())
    assert "".join(e["response"] for e in events) == out["response"]


def test_local_runs_the_engine_in_process(server: Server) -> None:
    body = {"prompt": "Tell me a joke", "max_tokens": 8, "temperature": 0}
    with Ai(base_url=f"{server.url}/client/v4", token=TOKEN) as remote:
        expected = remote.run(LLAMA2, body)
    with Ai.local(engine={"slots": 1}) as ai:
        out = ai.run(LLAMA2, body)
        assert out == expected
        events = list(ai.run(LLAMA2, {**body, "stream": True}))
        assert "".join(e["response"] for e in events) == expected["response"]
        with pytest.raises(AiError) as info:
            ai.run("@cf/acme/none", {"prompt": "hi"})
        assert info.value.code == 5007
