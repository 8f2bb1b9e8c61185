"""A speech recognition model served on this machine: Whisper in its own engine process
(engines/speech/), a request's audio sent as the client sent it (the engine decodes it).

Its answer is one `Transcript` and `Finished`; a failure is a `Failed` with the Workers AI code
that says why (audio that cannot be decoded: 5006; longer than the model takes: 3006; the
engine died under it: `crashed`, 3043)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from wai.backends.base import (
    Backend,
    EngineInfo,
    EngineStats,
    Event,
    Failed,
    Finished,
    Generation,
    TaskRequest,
    Transcript,
    TranscriptionRequest,
    Usage,
)
from wai.engines.speech.engine import EngineLost, SpeechEngine
from wai.engines.speech.types import SpeechFailed, Transcription
from wai.errors import BAD_INPUT, INTERNAL, REQUEST_TOO_LARGE, InvalidInput

_CODES = {"bad_audio": BAD_INPUT, "too_long": REQUEST_TOO_LARGE, "error": INTERNAL}


class LocalSpeechBackend(Backend):
    def __init__(self, engine: SpeechEngine, max_waiting: int = 64) -> None:
        self.engine = engine
        self.name = engine.name
        self._max_waiting = max_waiting

    async def start(self) -> None:
        await self.engine.start()

    async def submit(self, request: TaskRequest) -> Generation[Event]:
        if not isinstance(request, TranscriptionRequest):
            raise InvalidInput(f"{self.name} transcribes audio: it does not take text")
        rid, result = self.engine.submit(
            request.audio,
            request.options,
            reject_if_busy=request.reject_if_busy,
            background=request.background,
        )
        return Generation(_events(result), lambda: self.engine.cancel(rid))

    def stats(self) -> EngineStats:
        return self.engine.stats()

    def report(self) -> EngineInfo | None:
        return self.engine.info

    def memory_bytes(self) -> int:
        return self.engine.memory_bytes()

    @property
    def failure(self) -> str | None:
        return self.engine.failure

    def unready(self) -> str | None:
        info = self.engine.info
        if info is not None and info.state != "up":
            return f"engine {info.state}"
        waiting = self.engine.stats().waiting
        return f"queue full ({waiting} waiting)" if waiting >= self._max_waiting else None

    async def close(self) -> None:
        await self.engine.close()


async def _events(result: asyncio.Future[Transcription]) -> AsyncIterator[Event]:
    try:
        transcription = await result
    except SpeechFailed as e:
        yield Failed(e.message, code=_CODES[e.kind])
        return
    except EngineLost as e:
        yield Failed(str(e), crashed=True)
        return
    yield Transcript(transcription)
    yield Finished("stop", Usage(0, 0, audio_seconds=transcription.duration))
