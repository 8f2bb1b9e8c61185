"""Workers AI's batch queue: `POST …/ai/run/{model}?queueRequest=true` (or the binding's
`{queueRequest: true}`) with `{"requests": [...]}` queues a batch and answers
`{"status": "queued", "request_id", "model"}`; the same call with `{"request_id"}` answers
`queued` or `running`, then `{"responses": [{id, result, success, external_reference}],
"usage"}`.

The state is durable (store.py: SQLite beside the usage rows); items run on what interactive
traffic leaves (runner.py). Request-level: errors are exceptions (wai/errors.py) that the web
layer, or `Ai.local()`, turns into Workers AI's answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from wai.errors import AllocationSpent, BatchNotFound, InvalidInput, QueueLimit
from wai.queue.runner import Runner
from wai.queue.store import DONE, Owner, QueueFull, QueueStore
from wai.runtime import Runtime
from wai.schemas import TaskInput, parse_inputs
from wai.schemas.queue import is_poll, parse_batch, parse_poll

__all__ = ["BatchQueue", "Owner", "QueueStore"]

log = logging.getLogger("wai.queue")


class BatchQueue:
    def __init__(self, runtime: Runtime, store: QueueStore) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.store = store
        self.runner = Runner(runtime, store, self.settings)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        recovered = await asyncio.to_thread(self.store.recover)
        if recovered:
            log.info("%d items were running when the server stopped: queued again", recovered)
        self._task = asyncio.create_task(self.runner.run(), name="wai-queue")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.runner.close()

    async def run(self, model_id: str, body: Any, owner: Owner) -> dict[str, Any]:
        """A queued call: a poll (`{"request_id"}`) or a batch to queue (`{"requests"}`)."""
        if is_poll(body):
            return await self.poll(model_id, parse_poll(body), owner)
        return await self.submit(model_id, body, owner)

    async def submit(self, model_id: str, body: Any, owner: Owner) -> dict[str, Any]:
        """Validate every item, then queue the batch. Raises RequestError: an unknown id,
        an invalid item (naming it), the allocation spent, the account's queue full."""
        self.runtime.name_for(model_id)
        spec = self.runtime.models.spec_for(model_id)

        def parse(inputs: dict[str, Any]) -> TaskInput:
            parsed = parse_inputs(spec, inputs)
            self.runtime.task_request(model_id, parsed)  # the model's limits, up front
            return parsed

        limits = self.settings.queue
        items = await asyncio.to_thread(parse_batch, body, limits.max_items, parse)
        daily = self.settings.daily_neurons
        if daily > 0:
            spent = await asyncio.to_thread(self.store.spent, owner.allocation)
            if spent >= daily:
                raise AllocationSpent(daily, spent)
        rows = [(item.inputs, item.external_reference) for item in items]
        try:
            batch = await asyncio.to_thread(
                self.store.enqueue, model_id, owner, rows, limits.max_queued_per_account
            )
        except QueueFull as e:
            raise QueueLimit(len(rows), e.queued, e.limit) from None
        self.runner.wake()
        return {"status": "queued", "request_id": batch, "model": model_id}

    async def poll(self, model_id: str, batch: str, owner: Owner) -> dict[str, Any]:
        """A batch's state, or its responses once every item has ended. Raises
        BatchNotFound for an id unknown to this account and token, or expired."""
        view = await asyncio.to_thread(self.store.view, batch, owner)
        retention = self.settings.queue.retention_seconds
        if view is None or (view.finished is not None and time.time() - view.finished > retention):
            raise BatchNotFound(batch, retention)
        if view.model != model_id:
            raise InvalidInput(f"request {batch} was queued for {view.model}, not {model_id}")
        if view.status != DONE:
            return {"status": view.status, "request_id": batch, "model": model_id}
        responses, usage = await asyncio.to_thread(self.store.responses, batch)
        return {"responses": responses, "usage": usage}

    def stats(self) -> dict[str, float]:
        """Items queued, running, finished, failed, and the oldest queued item's age."""
        return self.store.counts()
