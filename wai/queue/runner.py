"""Runs queued items on the capacity interactive traffic leaves.

One loop, woken when a batch is queued or an item ends (and every `TICK` seconds, since
interactive load changes on its own): for each model with queued items, claim as many as the
model has room for (`Runtime.spare`: its slots less its recent interactive peak, none while
another local model serves interactive requests) and submit them with `background=True`. In
the engine they then come after every interactive request (scheduler.py): admitted last, left
out of steps that compute an interactive prompt, preempted when an interactive request needs
the slot. A preempted item goes back to the queue and runs again later; greedy and seeded
outputs do not depend on when. An item whose engine died under it is run again, up to
`queue.max_attempts` runs. Embedding items run side by side, so the engine packs their texts
into the same batches; generation items fill idle slots.

An item's end is one transaction (store.finish): its result, its usage row, its batch's count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from wai.answers import Unanswered, classify, whole_answer
from wai.backends.base import EngineBusy, EngineError
from wai.errors import (
    ACCOUNT_LIMITED,
    MODEL_UNAVAILABLE,
    AllocationSpent,
    RequestError,
    WeightsDownloading,
)
from wai.queue.store import Item, Outcome, QueueStore
from wai.runtime import Runtime
from wai.schemas import parse_inputs
from wai.settings import Settings

log = logging.getLogger("wai.queue")
access = logging.getLogger("wai.access")

TICK = 0.25  # seconds between looks at the load when nothing wakes the loop
EXPIRY_EVERY = 60.0  # seconds between sweeps of expired batches (at most)


class _Again(Exception):
    """The item goes back to the queue: preempted, refused as busy, or its engine lost."""

    def __init__(self, lost: bool = False) -> None:
        super().__init__()
        self.lost = lost


@dataclass(frozen=True, slots=True)
class Ended:
    """An item's end as the access log and the metrics see it."""

    item: Item
    outcome: Outcome
    label: str
    seconds: float


class Runner:
    def __init__(
        self,
        runtime: Runtime,
        store: QueueStore,
        settings: Settings,
        on_end: Callable[[Ended], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.settings = settings
        self.on_end = on_end
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (model id, ok|failed|preempted)
        self._wake = asyncio.Event()
        self._in_flight: Counter[str] = Counter()  # model name -> items running
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_sweep = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled: sweep expired batches now and then, feed the models."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK)
            self._wake.clear()
            try:
                await self._sweep()
                await self._feed()
            except Exception:  # a database error: logged, tried again at the next tick
                log.exception("the batch queue's runner")

    async def close(self) -> None:
        """Cancel the items running (they are queued again at the next start)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        retention = self.settings.queue.retention_seconds
        self._next_sweep = now + min(EXPIRY_EVERY, retention / 4)
        deleted = await asyncio.to_thread(self.store.expire, retention)
        if deleted:
            log.info("deleted %d batches finished more than %gs ago", deleted, retention)

    async def _feed(self) -> None:
        for model_id in await asyncio.to_thread(self.store.models_waiting):
            try:
                name = self.runtime.name_for(model_id)
            except WeightsDownloading:
                continue  # auto_pull is fetching its weights: its items wait for them
            except RequestError as e:  # no longer served (config changed), or refused to load
                f = classify(e)
                for item in await asyncio.to_thread(self.store.claim, model_id, 256):
                    await self._finish(item, _failure(f.code, f.message), model_id, 0.0)
                continue
            room = self.runtime.spare(name) - self._in_flight[name]
            if room <= 0:
                continue
            for item in await asyncio.to_thread(self.store.claim, model_id, room):
                self._in_flight[name] += 1
                task = asyncio.create_task(self._run(item, name))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, item: Item, name: str) -> None:
        t0 = time.monotonic()
        try:
            outcome, label = await self._outcome(item)
        except _Again as again:
            self.outcomes[(item.model, "preempted" if not again.lost else "lost")] += 1
            if again.lost and item.attempts + 1 >= self.settings.queue.max_attempts:
                message = f"the model's engine stopped under this request {item.attempts + 1} times"
                await self._finish(
                    item, _failure(MODEL_UNAVAILABLE, message), name, time.monotonic() - t0
                )
            else:
                await asyncio.to_thread(self.store.release, item, again.lost)
            return
        finally:
            self._in_flight[name] -= 1
            self.wake()
        await self._finish(item, outcome, label, time.monotonic() - t0)

    async def _finish(self, item: Item, outcome: Outcome, label: str, seconds: float) -> None:
        await asyncio.to_thread(self.store.finish, item, outcome)
        self.outcomes[(item.model, "ok" if outcome.success else "failed")] += 1
        if self.on_end is not None:
            self.on_end(Ended(item, outcome, label, seconds))
        _log(item, outcome, label, seconds)

    async def _outcome(self, item: Item) -> tuple[Outcome, str]:
        """Run one item to its end: its outcome and the model that answered (raises _Again)."""
        daily = self.settings.daily_neurons
        if daily > 0:
            spent = await asyncio.to_thread(self.store.spent, item.owner.allocation)
            if spent >= daily:
                return _failure(ACCOUNT_LIMITED, AllocationSpent(daily, spent).message), ""
        try:
            parsed = parse_inputs(self.runtime.models.spec_for(item.model), item.inputs)
            served, generation = await self.runtime.submit(item.model, parsed, background=True)
        except EngineBusy:
            raise _Again() from None
        except (RequestError, EngineError) as e:
            f = classify(e)
            return _failure(f.code, f.message), ""
        try:
            result, usage = await whole_answer(generation, parsed)
        except Unanswered as e:
            if e.failed is not None and e.failed.preempted:
                raise _Again() from None
            if e.failed is not None and e.failed.crashed:
                raise _Again(lost=True) from None
            return _failure(e.code, e.message), served.label
        finally:
            generation.cancel()  # a no-op once it has ended; frees the slot if cancelled
        u = usage
        outcome = Outcome(
            True,
            result,
            u.prompt_tokens,
            u.completion_tokens,
            u.cached_tokens,
            u.audio_seconds,
            u.characters,
        )
        return outcome, served.label


def _failure(code: int, message: str) -> Outcome:
    return Outcome(False, {"code": code, "message": message})


def _log(item: Item, outcome: Outcome, label: str, seconds: float) -> None:
    """One access-log line per item, beside the HTTP requests' lines."""
    if not access.isEnabledFor(logging.INFO):
        return
    line = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "id": f"{item.batch}/{item.index}",
        "route": "queue",
        "account": item.owner.account,
        "token": item.owner.token,
        "model": label or None,
        "status": "ok" if outcome.success else outcome.result.get("code"),
        "duration_ms": round(seconds * 1000, 1),
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
    }
    access.info(json.dumps(line, ensure_ascii=False))
