"""api/generation.py: a generation answered whole or streamed, and cancelled, structurally,
whenever the answer ends before it does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from wai.api.generation import GenerationResponse, collect
from wai.backends.base import Delta, Event, Finished, Generation, ToolCall, ToolCalls, Usage


class Cancels:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _request(disconnect: asyncio.Event) -> Request:
    async def receive() -> Message:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "headers": []}, receive)


async def _slow(*events: Event, gap: float = 0.0) -> AsyncIterator[Event]:
    for ev in events:
        await asyncio.sleep(gap)
        yield ev


def test_a_whole_answer_collects_text_calls_and_the_final_event() -> None:
    async def go() -> None:
        cancels = Cancels()
        call = ToolCall("c", "f", {})
        done = Finished("stop", Usage(2, 2))
        events = _slow(Delta("a", 1), Delta("b", 2), ToolCalls([call]), done)
        completed = await collect(_request(asyncio.Event()), Generation(events, cancels))
        assert completed is not None
        assert (completed.text, completed.calls, completed.final) == ("ab", [call], done)
        assert cancels.count == 0  # it ended by itself: nothing to cancel

    asyncio.run(go())


def test_a_client_that_goes_away_cancels_the_generation() -> None:
    async def go() -> None:
        cancels = Cancels()
        gone = asyncio.Event()
        events = _slow(*(Delta("x", i) for i in range(1000)), gap=0.01)
        generation = Generation(events, cancels)
        asyncio.get_running_loop().call_later(0.05, gone.set)
        assert await collect(_request(gone), generation) is None
        assert cancels.count == 1 and generation.done

    asyncio.run(go())


def test_a_stream_that_ends_early_cancels_its_generation() -> None:
    async def go() -> None:
        cancels = Cancels()
        generation = Generation(_slow(*(Delta("x", i) for i in range(100))), cancels)

        async def body() -> AsyncIterator[bytes]:
            async for ev in generation:
                yield ev.text.encode() if isinstance(ev, Delta) else b""

        response = GenerationResponse(generation, body(), {"x-wai-model": "m"})
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)
            if len(sent) == 3:  # the status line and two chunks: then the socket breaks
                raise OSError("connection reset")

        async def receive() -> Message:
            await asyncio.sleep(10)
            return {"type": "http.disconnect"}

        scope = {"type": "http", "method": "GET", "headers": [], "asgi": {"spec_version": "2.4"}}
        with contextlib.suppress(ClientDisconnect):
            await response(scope, receive, send)
        assert cancels.count == 1 and generation.done
        headers = dict(sent[0]["headers"])
        assert headers[b"content-type"] == b"text/event-stream"  # exactly, no charset
        assert headers[b"x-wai-model"] == b"m"

    asyncio.run(go())
