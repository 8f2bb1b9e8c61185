"""The server's side of an engine that takes whole jobs (speech, text-to-text): each job goes
down as one frame and comes back as one `Done` or `Failure`; the engine reports how many jobs
it holds as `Counts` (frames.py).

`JobEngine` keeps what every such family shares: admission (the engine's slots plus
`max_waiting`; a queued batch's items do not count against interactive room), a future per job,
cancellation (a job still in the backlog is dropped here; one in the engine is told to stop),
the jobs lost with a dead engine, and the counters. A family says how its frames look."""

from __future__ import annotations

import abc
import asyncio
import itertools
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from wai.engines.process.errors import EngineBusy, EngineStopped
from wai.engines.process.frames import Counts
from wai.engines.process.stats import EngineInfo, EngineStats
from wai.engines.process.supervisor import Supervisor

M = TypeVar("M")  # the family's engine -> server message union

CANCELLED = "cancelled"  # a Failure's message for a job its client gave up on


@dataclass(slots=True)
class JobCounts:
    finished: int = 0
    failed: int = 0
    cancelled: int = 0
    busy: int = 0
    waiting: int = 0
    compute_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """A job's end as a family's frame says it: its result, or the exception it fails with."""

    rid: int
    result: Any = None
    error: BaseException | None = None
    seconds: float = 0.0


class JobEngine(Supervisor[M]):
    config: Any  # the family's engine settings (a msgspec Struct), sent to its worker

    def __init__(self, name: str, decoder: Any, slots: int, max_waiting: int, policy: Any) -> None:
        super().__init__(name, decoder, policy)
        self.slots = slots
        self.max_waiting = max_waiting
        self.counts = JobCounts()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._background: set[int] = set()
        self._admitting = True

    # -- what a family provides --

    @abc.abstractmethod
    def _outcome(self, msg: M) -> Outcome | None:
        """A Done or Failure frame as an Outcome; None for any other."""

    @abc.abstractmethod
    def _cancel_frame(self, rid: int) -> bytes:
        """The frame that tells the engine to stop a job."""

    @abc.abstractmethod
    def _lost(self, message: str) -> BaseException:
        """What a job held by a dead engine fails with."""

    def _finished(self, result: Any) -> None:
        """Count what a finished job's result carries (audio seconds, tokens)."""

    # -- the supervisor's hooks --

    def _spec(self, skip_plans: int) -> dict[str, Any]:
        return {"config": msgspec.to_builtins(self.config), "skip_plans": skip_plans}

    def _deliver(self, msg: M) -> None:
        if isinstance(msg, Counts):
            self.counts.busy, self.counts.waiting = msg.busy, msg.waiting
            return
        out = self._outcome(msg)
        if out is None:
            return
        fut = self._take(out.rid)
        if fut is None or fut.done():
            return
        if out.error is None:
            self.counts.finished += 1
            self.counts.compute_seconds += out.seconds
            self._finished(out.result)
            fut.set_result(out.result)
        else:
            self.counts.failed += str(out.error) != CANCELLED
            fut.set_exception(out.error)

    def _held(self) -> list[int]:
        return list(self._pending)

    def _lose(self, request_ids: list[int], message: str) -> None:
        for rid in request_ids:
            fut = self._take(rid)
            if fut is not None and not fut.done():
                self.counts.failed += 1
                fut.set_exception(self._lost(message))
        self.counts.busy = self.counts.waiting = 0

    def _closed(self) -> None:
        self._admitting = False

    def _take(self, rid: int) -> asyncio.Future[Any] | None:
        self._background.discard(rid)
        self._backlog.pop(rid, None)
        return self._pending.pop(rid, None)

    # -- jobs --

    def _admit(self, reject_if_busy: bool, background: bool) -> tuple[int, asyncio.Future[Any]]:
        """A new job's id and future, if there is room. Raises EngineBusy or EngineStopped."""
        if not self._admitting:
            raise EngineStopped(f"the model {self.name} is shutting down")
        interactive = len(self._pending) - len(self._background)
        room = self.slots if reject_if_busy else self.slots + self.max_waiting
        if interactive >= room and not background:
            raise EngineBusy("Capacity temporarily exceeded, please try again.")
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        if background:
            self._background.add(rid)
        return rid, fut

    def cancel(self, rid: int) -> None:
        """The client went away: a job not yet sent is dropped; the engine stops one it has
        at its next chance (a segment, a sentence, a batch)."""
        if rid not in self._pending:
            return
        if self._backlog.pop(rid, None) is not None or self._ready_child() is None:
            fut = self._take(rid)
            if fut is not None and not fut.done():
                fut.cancel()
        elif (child := self._ready_child()) is not None:
            child.send(self._cancel_frame(rid))
        self.counts.cancelled += 1

    def job_info(self, device: str, weights: str, converted: bool, probe: str) -> EngineInfo:
        return EngineInfo(
            device=device,
            gpu_layers=0,
            extra_buffers=False,
            weights=weights,
            converted=converted,
            probe=probe,
            isolation="process",
            state=self.state(),
            pid=self.pid,
            restarts=self.restarts,
        )

    def job_stats(self, tokens_generated: int = 0) -> EngineStats:
        c = self.counts
        return EngineStats(
            slots_total=self.slots,
            slots_busy=c.busy,
            waiting=max(c.waiting, len(self._pending) - c.busy),
            requests_finished=c.finished,
            requests_cancelled=c.cancelled,
            requests_failed=c.failed,
            tokens_generated=tokens_generated,
            restarts=self.restarts,
            decode_seconds=c.compute_seconds,
        )
