"""The engine contract: what the web layer may ask of a backend, and what comes back.

A backend owns one loaded model. The web layer hands it a `GenerationRequest` (prompt tokens
already built) through `submit`, and reads `Event`s from the returned `Generation` until a
`Finished` (or `Failed`) arrives. `cancel` is a message, not a lock: the backend retires the
sequence at its next step and frees its KV cells. Nothing here knows about HTTP.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "cancelled", "error"]

_ids = itertools.count(1)


def next_request_id() -> int:
    return next(_ids)


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Sampling knobs, already validated. temperature 0 means greedy."""

    temperature: float = 0.6
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # (token id, bias added to its logit) pairs, applied before everything else
    logit_bias: tuple[tuple[int, float], ...] = ()
    # GBNF the output must match (JSON mode, see grammar.py); enforced before sampling
    grammar: str | None = None


@dataclass(slots=True)
class GenerationRequest:
    prompt_tokens: Sequence[int]
    max_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # Fail fast with EngineBusy instead of queueing when no slot is free (rejectIfBusy).
    reject_if_busy: bool = False
    # Keep generating past end-of-text (benchmarks; Workers AI's `ignore_eos`).
    ignore_eos: bool = False
    # Stop strings: generation ends before the first one; it never appears in the output.
    stop: tuple[str, ...] = ()
    request_id: int = field(default_factory=next_request_id)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Delta:
    """New text. `text` may be empty when a token ends inside a UTF-8 character."""

    text: str
    token: int


@dataclass(frozen=True, slots=True)
class Finished:
    reason: FinishReason
    usage: Usage


@dataclass(frozen=True, slots=True)
class Failed:
    message: str
    # The engine process died under this request (the model is restarting): worth a retry.
    crashed: bool = False


Event = Delta | Finished | Failed


class EngineError(Exception):
    """Base class of what `submit` may raise."""


class EngineBusy(EngineError):
    """No room: the waiting queue is full, or rejectIfBusy found no free slot."""


class PromptTooLong(EngineError):
    """prompt plus max_tokens does not fit in one sequence's context."""


class EngineStopped(EngineError):
    """The backend is closed (or closing): it takes no more requests."""


class Generation:
    """The caller's handle on one submitted request: an async stream of events plus cancel.

    Cancellation is structural: a consumer that stops iterating before the final event (it
    broke out, raised, or was cancelled because its client went away) cancels the request
    when the iterator is closed, and `cancel()` after the end is a no-op."""

    def __init__(
        self, request_id: int, events: AsyncIterator[Event], cancel: Callable[[], None]
    ) -> None:
        self.request_id = request_id
        self._events = events
        self._cancel = cancel
        self.done = False
        self._on_done: list[Callable[[], None]] = []

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        try:
            async for ev in self._events:
                final = isinstance(ev, Finished | Failed)
                if final:
                    self._finish()
                yield ev
                if final:
                    return
        finally:
            self.cancel()

    def cancel(self) -> None:
        if not self.done:
            self._finish()
            self._cancel()

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        """Call `fn` once, when the generation ends (its final event, or cancelled)."""
        if self.done:
            fn()
        else:
            self._on_done.append(fn)

    def _finish(self) -> None:
        self.done = True
        callbacks, self._on_done = self._on_done, []
        for fn in callbacks:
            fn()


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters the server exposes; tests read them to prove slots are freed."""

    slots_total: int
    slots_busy: int
    waiting: int
    requests_finished: int
    requests_cancelled: int
    requests_failed: int = 0  # llama_decode errors, engine stopped or crashed under them
    tokens_generated: int = 0
    kv_cache_bytes: int = 0
    steps: int = 0  # llama_decode calls
    decode_seconds: float = 0.0  # time spent inside them
    restarts: int = 0  # engine processes started again after a crash


@dataclass(frozen=True, slots=True)
class Counters:
    """What an engine reports after each step; monotonic except busy and waiting."""

    busy: int = 0
    waiting: int = 0
    finished: int = 0
    cancelled: int = 0
    failed: int = 0
    generated: int = 0
    steps: int = 0
    decode_ns: int = 0


class Tokenizer(abc.ABC):
    """Text <-> token ids for one model. Thread-safe: reads the vocabulary only."""

    bos_id: int
    eos_id: int
    n_vocab: int
    vocab: Any  # llama.cpp's vocabulary (a grammar sampler needs it)

    @abc.abstractmethod
    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        """Token ids for `text`; add_special adds BOS when the model asks for it."""

    @abc.abstractmethod
    def token_text(self, token: int) -> str:
        """The vocabulary's text of one token (special tokens included)."""


class Backend(abc.ABC):
    """One loaded model behind a scheduler. Methods are called from the event loop's thread."""

    name: str
    n_ctx_seq: int
    tokenizer: Tokenizer
    chat_template: str | None
    metadata: dict[str, str]
    # How the model runs (device, buffer types, weights, what the warm-up probe found)
    info: dict[str, object]

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the model's worker. Returns once it can take requests."""

    @abc.abstractmethod
    def submit(self, request: GenerationRequest) -> Generation:
        """Queue a request. Raises EngineBusy, PromptTooLong or EngineStopped; never blocks on
        inference."""

    @abc.abstractmethod
    def stats(self) -> EngineStats: ...

    def memory_bytes(self) -> int:
        """Memory the loaded model holds: its weights file and KV cache (0: unknown)."""
        return 0

    @property
    def failure(self) -> str | None:
        """Why this model cannot answer any more (its engine kept crashing), or None."""
        return None

    @abc.abstractmethod
    async def close(self) -> None:
        """Cancel everything, stop the worker and free the model."""
