"""A text-to-text model as the server holds it: its engine process (worker.py), kept by the
shared supervisor (engines/process/supervisor.py), and the jobs it has taken.

`submit` admits a job (bounded: `max_batch` in the engine plus `max_waiting`; a queued batch's
items do not count against interactive room) and returns its id and a future, settled by the
engine's `Done` or `Failure`. A dead engine's jobs fail at once (`EngineLost`), the engine
restarts, and jobs that arrive meanwhile wait in the backlog."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from wai.engines.process.errors import EngineBusy, EngineStopped
from wai.engines.process.stats import EngineInfo, EngineStats
from wai.engines.process.supervisor import RestartPolicy, Supervisor
from wai.engines.text2text import wire
from wai.engines.text2text.types import Job, Result, Text2TextConfig, Text2TextFailed, Texts


class EngineLost(Exception):
    """The engine process died (or the model stopped) with the job in it."""


@dataclass(slots=True)
class _Counts:
    finished: int = 0
    failed: int = 0
    cancelled: int = 0
    busy: int = 0
    waiting: int = 0
    tokens_out: int = 0
    compute_seconds: float = 0.0


class Text2TextEngine(Supervisor[wire.FromEngine]):
    worker_module = "wai.engines.text2text.worker"

    def __init__(self, config: Text2TextConfig, policy: RestartPolicy | None = None) -> None:
        super().__init__(config.name, wire.from_engine, policy)
        self.config = config
        self.ready_msg: wire.Ready | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Result]] = {}
        self._background: set[int] = set()
        self._counts = _Counts()
        self._admitting = True

    # -- the supervisor's hooks --

    def _spec(self, skip_plans: int) -> dict[str, Any]:
        return {"config": msgspec.to_builtins(self.config), "skip_plans": skip_plans}

    def _ready(self, msg: wire.FromEngine) -> bool:
        if not isinstance(msg, wire.Ready):
            return False
        self.ready_msg = msg
        return True

    def _deliver(self, msg: wire.FromEngine) -> None:
        if isinstance(msg, wire.Counts):
            self._counts.busy, self._counts.waiting = msg.busy, msg.waiting
            return
        if not isinstance(msg, wire.Done | wire.Failure):
            return
        fut = self._take(msg.rid)
        if fut is None or fut.done():
            return
        if isinstance(msg, wire.Done):
            self._counts.finished += 1
            if isinstance(msg.result, Texts):
                self._counts.tokens_out += msg.result.output_tokens
            self._counts.compute_seconds += msg.seconds
            fut.set_result(msg.result)
        else:
            self._counts.failed += msg.message != "cancelled"
            fut.set_exception(Text2TextFailed(msg.kind, msg.message))

    def _held(self) -> list[int]:
        return list(self._pending)

    def _lose(self, request_ids: list[int], message: str) -> None:
        for rid in request_ids:
            fut = self._take(rid)
            if fut is not None and not fut.done():
                self._counts.failed += 1
                fut.set_exception(EngineLost(message))
        self._counts.busy = self._counts.waiting = 0

    def _closed(self) -> None:
        self._admitting = False

    def _take(self, rid: int) -> asyncio.Future[Result] | None:
        self._background.discard(rid)
        self._backlog.pop(rid, None)
        return self._pending.pop(rid, None)

    # -- jobs --

    def submit(
        self, job: Job, *, reject_if_busy: bool = False, background: bool = False
    ) -> tuple[int, asyncio.Future[Result]]:
        """Queue a job: its id (for `cancel`) and its result to come. Raises EngineBusy or
        EngineStopped."""
        if not self._admitting:
            raise EngineStopped(f"the model {self.name} is shutting down")
        interactive = len(self._pending) - len(self._background)
        c = self.config
        room = c.max_batch if reject_if_busy else c.max_batch + c.max_waiting
        if interactive >= room and not background:
            raise EngineBusy("Capacity temporarily exceeded, please try again.")
        rid = next(self._ids)
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        if background:
            self._background.add(rid)
        self._send(rid, wire.frame(wire.Run(rid, job)))
        return rid, fut

    def cancel(self, rid: int) -> None:
        """The client went away: the job is dropped before its batch runs (one already in a
        batch finishes with it, unanswered)."""
        if rid not in self._pending:
            return
        if self._backlog.pop(rid, None) is not None or self._ready_child() is None:
            fut = self._take(rid)
            if fut is not None and not fut.done():
                fut.cancel()
        elif (child := self._ready_child()) is not None:
            child.send(wire.frame(wire.Cancel(rid)))
        self._counts.cancelled += 1

    # -- reports --

    @property
    def info(self) -> EngineInfo | None:
        r = self.ready_msg
        if r is None:
            return None
        return EngineInfo(
            device=r.device,
            gpu_layers=0,
            extra_buffers=False,
            weights=f"{Path(self.config.path).name} ({r.detail})",
            converted=True,
            probe="loaded",
            isolation="process",
            state=self.state(),
            pid=self.pid,
            restarts=self.restarts,
        )

    def stats(self) -> EngineStats:
        c = self._counts
        return EngineStats(
            slots_total=self.config.max_batch,
            slots_busy=c.busy,
            waiting=max(c.waiting, len(self._pending) - c.busy),
            requests_finished=c.finished,
            requests_cancelled=c.cancelled,
            requests_failed=c.failed,
            tokens_generated=c.tokens_out,
            restarts=self.restarts,
            decode_seconds=c.compute_seconds,
        )

    def memory_bytes(self) -> int:
        return self.ready_msg.weights_bytes if self.ready_msg is not None else 0
