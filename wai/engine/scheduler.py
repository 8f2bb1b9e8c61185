"""Which tokens go into the next batch: plain Python policy, testable without a model.

One step = one `llama_decode`. Each step the scheduler
1. admits waiting sequences into free slots (first come, first served),
2. gives every decoding sequence one token (its last sample), then
3. spends what is left of the per-step token budget on prompt chunks (chunked prefill), oldest
   admission first, so a long prompt never stalls the streams already running.
The backend executes the plan, samples where `logits` is set and reports back through
`advance`. This module owns no locks: only the engine thread calls it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wai.engine.base import Event, GenerationRequest


@dataclass(slots=True, eq=False)
class Sequence:
    request: GenerationRequest
    emit: Callable[[Event], None]
    slot: int = -1
    n_past: int = 0  # tokens of this sequence already in the KV cache
    generated: list[int] = field(default_factory=list)
    sampler: Any = None  # backend-owned sampling state
    decoder: Any = None  # backend-owned detokenizer state

    @property
    def prompt(self) -> list[int]:
        return list(self.request.prompt_tokens)

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.request.prompt_tokens)

    @property
    def id(self) -> int:
        return self.request.request_id


@dataclass(slots=True)
class Work:
    """Tokens of one sequence in this step's batch, at positions start..start+len-1."""

    seq: Sequence
    tokens: list[int]
    start: int
    logits: bool  # sample after this chunk (a decode token, or the end of the prompt)


class Scheduler:
    def __init__(self, n_slots: int, token_budget: int) -> None:
        if n_slots < 1 or token_budget < n_slots:
            raise ValueError("need n_slots >= 1 and token_budget >= n_slots")
        self.n_slots = n_slots
        self.token_budget = token_budget
        self.waiting: deque[Sequence] = deque()
        self.slots: list[Sequence | None] = [None] * n_slots
        self._admitted: list[Sequence] = []  # running sequences in admission order

    @property
    def running(self) -> list[Sequence]:
        return list(self._admitted)

    def idle(self) -> bool:
        return not self.waiting and not self._admitted

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def admit(self) -> list[Sequence]:
        """Move waiting sequences into free slots; returns the newly admitted ones."""
        admitted = []
        for slot, occupant in enumerate(self.slots):
            if occupant is None and self.waiting:
                seq = self.waiting.popleft()
                seq.slot = slot
                self.slots[slot] = seq
                self._admitted.append(seq)
                admitted.append(seq)
        return admitted

    def schedule(self) -> list[Work]:
        """The plan for one batch. Call `admit` first."""
        budget = self.token_budget
        plan: list[Work] = []
        for seq in self._admitted:
            if not seq.prefilling:
                plan.append(Work(seq, [seq.generated[-1]], seq.n_past, logits=True))
                budget -= 1
        for seq in self._admitted:
            if budget <= 0:
                break
            if seq.prefilling:
                prompt = seq.request.prompt_tokens
                chunk = list(prompt[seq.n_past : seq.n_past + budget])
                done = seq.n_past + len(chunk) == len(prompt)
                plan.append(Work(seq, chunk, seq.n_past, logits=done))
                budget -= len(chunk)
        return plan

    def remove(self, request_id: int) -> Sequence | None:
        """Take a sequence out, waiting or running. Its slot is free again."""
        for seq in self.waiting:
            if seq.id == request_id:
                self.waiting.remove(seq)
                return seq
        for seq in self._admitted:
            if seq.id == request_id:
                self.retire(seq)
                return seq
        return None

    def retire(self, seq: Sequence) -> None:
        self._admitted.remove(seq)
        self.slots[seq.slot] = None
