"""A speech model served on this machine, in its own engine process (engines/speech/): Whisper
(a request's audio sent as the client sent it: the engine decodes it) or a Piper voice (text in,
encoded audio out).

Its answer is one `SpeechResult` and `Finished` (usage: the audio's seconds, or the text's
characters); a failure is a `Failed` with the Workers AI code that says why (input the engine
cannot take: 5006; audio longer than the model takes: 3006; the engine died under it:
`crashed`, 3043)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from wai.backends.base import (
    Event,
    Failed,
    Finished,
    Generation,
    ModelLoadError,
    SpeechOptions,
    SpeechOutput,
    SpeechResult,
    SpokenAudio,
    SynthesisRequest,
    TaskRequest,
    TranscriptionRequest,
    TurnQuery,
    TurnRequest,
    Usage,
    Voice,
)
from wai.backends.local.engine_backed import EngineBacked
from wai.engines.speech.engine import EngineLost, SpeechEngine
from wai.engines.speech.types import SpeechFailed
from wai.errors import BAD_INPUT, INTERNAL, REQUEST_TOO_LARGE, InvalidInput

_DOES = {"asr": "transcribes audio", "tts": "speaks text", "turn": "detects turns in audio"}
_CODES = {"bad_audio": BAD_INPUT, "too_long": REQUEST_TOO_LARGE, "error": INTERNAL}


class LocalSpeechBackend(EngineBacked[SpeechEngine]):
    def __init__(
        self,
        engine: SpeechEngine,
        max_waiting: int = 64,
        prepare: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(engine, max_waiting)
        self.kind = engine.config.kind
        self._prepare = prepare  # weights to write before the first start (off the loop)

    async def start(self) -> None:
        if self._prepare is not None:
            try:
                await asyncio.to_thread(self._prepare)
            except (OSError, ValueError) as e:
                raise ModelLoadError(f"{self.name}: {e}") from e
            self._prepare = None
        await self.engine.start()

    async def submit(self, request: TaskRequest) -> Generation[Event]:
        job: SpeechOptions | Voice | TurnQuery
        if isinstance(request, TranscriptionRequest) and self.kind == "asr":
            job, audio, characters = request.options, request.audio, 0
        elif isinstance(request, TurnRequest) and self.kind == "turn":
            job, audio, characters = request.query, request.audio, 0
        elif isinstance(request, SynthesisRequest) and self.kind == "tts":
            self._check_language(request.language)
            job, audio, characters = request.voice, b"", len(request.voice.text)
        else:
            raise InvalidInput(f"{self.name} {_DOES[self.kind]}: it does not take this input")
        rid, result = self.engine.submit(
            job, audio, reject_if_busy=request.reject_if_busy, background=request.background
        )
        return Generation(_events(result, characters), lambda: self.engine.cancel(rid))

    def _check_language(self, language: str) -> None:
        """A voice speaks its one language: text in another is refused, not read with the
        wrong phonemes."""
        speaks = self.engine.language.split("-")[0]
        if speaks and language.split("-")[0].lower() != speaks:
            raise InvalidInput(
                f"no {language!r} voice here: {self.name} speaks {speaks!r} (serve a Piper voice "
                f"for {language!r} with [models.NAME] path = <voice>.onnx and serves = [the id])"
            )


async def _events(result: asyncio.Future[SpeechOutput], characters: int) -> AsyncIterator[Event]:
    try:
        output = await result
    except SpeechFailed as e:
        yield Failed(e.message, code=_CODES[e.kind])
        return
    except EngineLost as e:
        yield Failed(str(e), crashed=True)
        return
    yield SpeechResult(output)
    seconds = output.seconds if isinstance(output, SpokenAudio) else output.duration
    yield Finished("stop", Usage(0, 0, audio_seconds=seconds, characters=characters))
