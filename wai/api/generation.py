"""Answering with a Generation[Event]: streamed, or collected whole. Either way the generation is
cancelled, structurally, when the answer ends before it does (client gone, server stopping,
an error while sending), so its slot and KV are freed at the engine's next step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from wai.answers import Completed, completed
from wai.api import sse
from wai.backends.base import (
    Event,
    Generation,
)


class GenerationResponse(StreamingResponse):
    """An event stream over one generation. Whatever ends the response, the generation is
    cancelled in `finally` (a no-op once it has finished), as llama.cpp's server reader does in
    its destructor: every disconnect path is the same path."""

    def __init__(
        self, generation: Generation[Event], body: AsyncIterator[bytes], headers: Mapping[str, str]
    ) -> None:
        super().__init__(body, headers={**sse.HEADERS, **headers})
        self.generation = generation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.generation.cancel()


async def collect(request: Request, generation: Generation[Event]) -> Completed | None:
    """The whole text, or None when the client disconnected first (generation cancelled)."""
    task = asyncio.ensure_future(completed(generation))
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


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
