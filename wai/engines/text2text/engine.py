"""A text-to-text model as the server holds it: its engine process (worker.py), kept by the
shared supervisor, with the jobs it has taken (engines/process/jobs.py: admission, futures,
cancellation, jobs lost with a dead engine)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from wai.engines.process.jobs import JobEngine, Outcome
from wai.engines.process.stats import EngineInfo, EngineStats
from wai.engines.process.supervisor import RestartPolicy
from wai.engines.text2text import wire
from wai.engines.text2text.types import Job, Result, Text2TextConfig, Text2TextFailed, Texts


class EngineLost(Exception):
    """The engine process died (or the model stopped) with the job in it."""


class Text2TextEngine(JobEngine[wire.FromEngine]):
    worker_module = "wai.engines.text2text.worker"

    def __init__(self, config: Text2TextConfig, policy: RestartPolicy | None = None) -> None:
        super().__init__(
            config.name, wire.from_engine, config.max_batch, config.max_waiting, policy
        )
        self.config = config
        self.ready_msg: wire.Ready | None = None
        self.tokens_out = 0

    def _ready(self, msg: wire.FromEngine) -> bool:
        if not isinstance(msg, wire.Ready):
            return False
        self.ready_msg = msg
        return True

    def _outcome(self, msg: wire.FromEngine) -> Outcome | None:
        if isinstance(msg, wire.Done):
            return Outcome(msg.rid, msg.result, seconds=msg.seconds)
        elif isinstance(msg, wire.Failure):
            return Outcome(msg.rid, error=Text2TextFailed(msg.kind, msg.message))
        return None

    def _finished(self, result: Any) -> None:
        if isinstance(result, Texts):
            self.tokens_out += result.output_tokens

    def _cancel_frame(self, rid: int) -> bytes:
        return wire.frame(wire.Cancel(rid))

    def _lost(self, message: str) -> BaseException:
        return EngineLost(message)

    def submit(
        self, job: Job, *, reject_if_busy: bool = False, background: bool = False
    ) -> tuple[int, asyncio.Future[Result]]:
        """Queue a job: its id (for `cancel`) and its result to come. Raises EngineBusy or
        EngineStopped."""
        rid, fut = self._admit(reject_if_busy, background)
        self._send(rid, wire.frame(wire.Run(rid, job)))
        return rid, fut

    @property
    def info(self) -> EngineInfo | None:
        r = self.ready_msg
        if r is None:
            return None
        weights = f"{Path(self.config.path).name} ({r.detail})"
        return self.job_info(r.device, weights, converted=True, probe="loaded")

    def stats(self) -> EngineStats:
        return self.job_stats(tokens_generated=self.tokens_out)

    def memory_bytes(self) -> int:
        return self.ready_msg.weights_bytes if self.ready_msg is not None else 0
