"""Consuming a Generation from a request handler: streamed (cancelled when the response stream is
closed early) or collected whole (cancelled when the client disconnects). Shared by every
framing: Workers AI REST, the Worker binding, OpenAI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request

from wai.engine.base import Delta, Event, Failed, Finished, Generation


async def guarded(generation: Generation) -> AsyncIterator[Event]:
    """The generation's events; if the consumer stops early (client gone, server stopping),
    the generation is cancelled so its slot is freed at the next engine step."""
    done = False
    try:
        async for ev in generation:
            done = isinstance(ev, Finished | Failed)
            yield ev
    finally:
        if not done:
            generation.cancel()


@dataclass(frozen=True, slots=True)
class Completed:
    text: str
    final: Finished | Failed


async def collect(request: Request, generation: Generation) -> Completed | None:
    """The whole text, or None when the client disconnected first (generation cancelled)."""
    task = asyncio.ensure_future(_collect(generation))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            generation.cancel()
    if task.cancelled() or not task.done():
        return None
    return task.result()


async def _collect(generation: Generation) -> Completed:
    parts: list[str] = []
    async for ev in generation:
        if isinstance(ev, Delta):
            parts.append(ev.text)
        else:
            return Completed("".join(parts), ev)
    raise RuntimeError("generation ended without a final event")


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
