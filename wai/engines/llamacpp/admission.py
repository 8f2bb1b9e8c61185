"""The caller's side of an engine, shared by the in-thread and the engine-process engines.

Everything here runs on the event loop's thread: admission control (checked in `open`, so the
caller learns "busy" or "too long" before any response starts), request ids, one asyncio queue
per request that the engine's event batches are dealt into, and the counters behind `stats()`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable

from wai.engines.llamacpp.types import (
    Counters,
    EmbedRequest,
    EngineBusy,
    EngineStats,
    EngineStopped,
    Failed,
    Finished,
    Generation,
    PromptTooLong,
    TokenEvent,
    TokenRequest,
    queued_events,
)


class Admission:
    def __init__(self, name: str, n_slots: int, max_waiting: int) -> None:
        self.name = name
        self.n_slots = n_slots
        self.max_waiting = max_waiting
        self.closed = False
        self._ids = itertools.count(1)
        self._queues: dict[int, asyncio.Queue[TokenEvent]] = {}
        self._background: set[int] = set()  # the ids of a queued batch's items
        self.counters = Counters()
        # Counters of engines that have died (their successors count from zero), and the
        # requests they took with them.
        self._past = Counters()
        self._lost = 0

    def open(self, request: TokenRequest | EmbedRequest, n_ctx_seq: int) -> int:
        """Admit a request and give it its id: raises PromptTooLong, EngineStopped or
        EngineBusy."""
        if isinstance(request, TokenRequest):
            _check_prompt(request, n_ctx_seq)
        else:
            _check_texts(request, n_ctx_seq)
        if self.closed:
            raise EngineStopped(f"the model {self.name} is shutting down")
        # a queued batch's items give way to interactive requests (see scheduler.py), so they
        # do not count against an interactive request's room; the batch runner bounds them
        outstanding = len(self._queues) - len(self._background)
        if request.reject_if_busy and outstanding >= self.n_slots:
            raise EngineBusy("Capacity temporarily exceeded, please try again.")
        if outstanding >= self.n_slots + self.max_waiting and not request.background:
            raise EngineBusy("Capacity temporarily exceeded, please try again.")
        request.request_id = rid = next(self._ids)
        self._queues[rid] = asyncio.Queue()
        if request.background:
            self._background.add(rid)
        return rid

    def interactive(self) -> int:
        """Requests admitted and not finished, a queued batch's items left out."""
        return len(self._queues) - len(self._background)

    def generation(self, request_id: int, cancel: Callable[[], None]) -> Generation[TokenEvent]:
        """The caller's handle on an admitted request."""
        return Generation(queued_events(self._queues[request_id]), cancel)

    def open_ids(self) -> list[int]:
        return list(self._queues)

    def deliver(self, events: Iterable[tuple[int, TokenEvent]], counters: Counters | None) -> None:
        """Deal a batch of the engine's events to their requests; a final event closes its
        request."""
        if counters is not None:
            self.counters = counters
        for rid, ev in events:
            q = self._queues.get(rid)
            if q is None:
                continue
            q.put_nowait(ev)
            if isinstance(ev, Finished | Failed):
                del self._queues[rid]
                self._background.discard(rid)

    def lose(self, request_ids: Iterable[int], message: str) -> None:
        """The engine died under these requests: they end with a Failed that says so, and its
        counters are kept so that the totals stay monotonic."""
        lost = [rid for rid in request_ids if rid in self._queues]
        self._lost += len(lost)
        self.deliver(((rid, Failed(message, crashed=True)) for rid in lost), None)
        self._past = self.counters.after(self._past)
        self.counters = Counters()

    def stats(self, kv_cache_bytes: int, restarts: int = 0) -> EngineStats:
        c = self.counters.after(self._past)
        return EngineStats(
            slots_total=self.n_slots,
            slots_busy=c.busy,
            waiting=c.waiting,
            requests_finished=c.finished,
            requests_cancelled=c.cancelled,
            requests_failed=c.failed + self._lost,
            tokens_generated=c.generated,
            kv_cache_bytes=kv_cache_bytes,
            steps=c.steps,
            decode_seconds=c.decode_ns / 1e9,
            restarts=restarts,
            prompt_cache=c.prompt_cache,
            drafted_tokens=c.drafted,
            accepted_tokens=c.accepted,
        )


def prompt_size(request: TokenRequest | EmbedRequest) -> int:
    """The request's input tokens."""
    if isinstance(request, TokenRequest):
        return len(request.prompt_tokens)
    return sum(len(t) for t in request.texts)


def _check_prompt(request: TokenRequest, n_ctx_seq: int) -> None:
    n_prompt = len(request.prompt_tokens)
    if n_prompt == 0:
        raise PromptTooLong("the prompt is empty after tokenization")
    if n_prompt + request.max_tokens > n_ctx_seq:
        raise PromptTooLong(
            f"prompt ({n_prompt} tokens) plus max_tokens ({request.max_tokens}) exceeds the "
            f"context window of {n_ctx_seq} tokens"
        )


def _check_texts(request: EmbedRequest, n_ctx_seq: int) -> None:
    """Every text whole in one sequence (the backend has said which one is not, by name)."""
    if not request.texts:
        raise PromptTooLong("no text to embed")
    for i, text in enumerate(request.texts):
        if not 0 < len(text) <= n_ctx_seq:
            raise PromptTooLong(
                f"text {i} ({len(text)} tokens) does not fit the model's {n_ctx_seq} tokens"
            )
