"""A text-to-text model served on this machine, in its own engine process (engines/text2text/):
translation (M2M100), summarization (BART) or sentiment (DistilBERT).

Its answer is one `Text2TextResult` and `Finished` (usage: the tokens read and written); a
failure is a `Failed` with the Workers AI code that says why (input the model cannot take:
5006; the engine died under it: `crashed`, 3043)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from wai.backends.base import (
    Event,
    Failed,
    Finished,
    Generation,
    ModelLoadError,
    TaskRequest,
    Text2TextRequest,
    Text2TextResult,
    Usage,
)
from wai.backends.local.engine_backed import EngineBacked
from wai.engines.text2text.engine import EngineLost, Text2TextEngine
from wai.engines.text2text.types import (
    Classify,
    Result,
    Scores,
    Summarize,
    Text2TextFailed,
    Translate,
)
from wai.errors import BAD_INPUT, INTERNAL, InvalidInput

_JOBS = {"translation": Translate, "summarization": Summarize, "text-classification": Classify}
_DOES = {
    "translation": "translates",
    "summarization": "summarizes",
    "text-classification": "classifies text",
}


class LocalText2TextBackend(EngineBacked[Text2TextEngine]):
    def __init__(
        self,
        engine: Text2TextEngine,
        max_waiting: int = 64,
        prepare: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(engine, max_waiting)
        self.kind = engine.config.kind
        self._prepare = prepare  # the converted weights, written before the first start

    async def start(self) -> None:
        if self._prepare is not None:
            try:
                await asyncio.to_thread(self._prepare)
            except (OSError, ValueError, KeyError) as e:
                raise ModelLoadError(f"{self.name}: {e}") from e
            self._prepare = None
        await self.engine.start()

    @property
    def languages(self) -> list[str]:
        """A translation model's language codes (empty until it has loaded)."""
        ready = self.engine.ready_msg
        return ready.languages if ready is not None else []

    async def submit(self, request: TaskRequest) -> Generation[Event]:
        if not isinstance(request, Text2TextRequest) or not isinstance(
            request.job, _JOBS[self.kind]
        ):
            raise InvalidInput(f"{self.name} {_DOES[self.kind]}: it does not take this input")
        job = request.job
        if isinstance(job, Translate) and self.languages:
            for lang in (job.source, job.target):
                if lang not in self.languages:
                    raise InvalidInput(f"{self.name} does not translate {lang!r}")
        rid, result = self.engine.submit(
            job, reject_if_busy=request.reject_if_busy, background=request.background
        )
        return Generation(_events(result), lambda: self.engine.cancel(rid))


async def _events(result: asyncio.Future[Result]) -> AsyncIterator[Event]:
    try:
        output = await result
    except Text2TextFailed as e:
        yield Failed(e.message, code=BAD_INPUT if e.kind == "bad_input" else INTERNAL)
        return
    except EngineLost as e:
        yield Failed(str(e), crashed=True)
        return
    yield Text2TextResult(output)
    if isinstance(output, Scores):
        yield Finished("stop", Usage(output.input_tokens, 0))
    else:
        yield Finished("stop", Usage(output.input_tokens, output.output_tokens))
