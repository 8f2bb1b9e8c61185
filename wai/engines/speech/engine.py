"""A speech model as the server holds it (Whisper, or a Piper voice): its engine process
(worker.py), kept by the shared supervisor, with the requests it has taken
(engines/process/jobs.py: admission bounded by the engine's slots plus `max_waiting`, a future
per request settled by the engine's `Done` or `Failure`, cancellation, requests failed at once
with `EngineLost` when the engine dies; those that arrive while it restarts wait in the
backlog)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from wai.engines.process.jobs import JobEngine, Outcome
from wai.engines.process.stats import EngineInfo, EngineStats
from wai.engines.process.supervisor import RestartPolicy
from wai.engines.speech import wire
from wai.engines.speech.types import Job, Result, SpeechConfig, SpeechFailed, Transcription


class EngineLost(Exception):
    """The engine process died (or the model stopped) with the request in it."""


class SpeechEngine(JobEngine[wire.FromEngine]):
    worker_module = "wai.engines.speech.worker"

    def __init__(self, config: SpeechConfig, policy: RestartPolicy | None = None) -> None:
        super().__init__(config.name, wire.from_engine, config.n_slots, config.max_waiting, policy)
        self.config = config
        self.weights_bytes = 0
        self.multilingual = True
        self.language = ""  # a voice's
        self.audio_seconds = 0.0
        self._ready_msg: wire.Ready | None = None

    # -- the supervisor's hooks --

    def _ready(self, msg: wire.FromEngine) -> bool:
        if not isinstance(msg, wire.Ready):
            return False
        self._ready_msg = msg
        self.weights_bytes = msg.weights_bytes
        self.multilingual = msg.multilingual
        self.language = msg.language
        return True

    def _outcome(self, msg: wire.FromEngine) -> Outcome | None:
        if isinstance(msg, wire.Done):
            return Outcome(msg.rid, msg.result, seconds=msg.seconds)
        elif isinstance(msg, wire.Failure):
            return Outcome(msg.rid, error=SpeechFailed(msg.kind, msg.message))
        return None

    def _finished(self, result: Any) -> None:
        if isinstance(result, Transcription):
            self.audio_seconds += result.duration

    def _cancel_frame(self, rid: int) -> bytes:
        return wire.frame(wire.Cancel(rid))

    def _lost(self, message: str) -> BaseException:
        return EngineLost(message)

    # -- requests --

    def submit(
        self,
        job: Job,
        audio: bytes = b"",
        *,
        reject_if_busy: bool = False,
        background: bool = False,
    ) -> tuple[int, asyncio.Future[Result]]:
        """Queue a job (a transcription of `audio`, or a text to speak): its id (for `cancel`)
        and its result to come. Raises EngineBusy or EngineStopped."""
        rid, fut = self._admit(reject_if_busy, background)
        self._send(rid, wire.frame(wire.Run(rid, job, audio)))
        return rid, fut

    # -- reports --

    @property
    def info(self) -> EngineInfo | None:
        r = self._ready_msg
        if r is None:
            return None
        weights = f"{Path(self.config.path).name} ({r.detail})"
        return self.job_info(r.device, weights, converted=False, probe="warm-up passed")

    def stats(self) -> EngineStats:
        return self.job_stats()

    def memory_bytes(self) -> int:
        return self.weights_bytes
