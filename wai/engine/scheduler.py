"""Which tokens go into the next batch: plain Python policy, testable without a model.

One step = one `llama_decode`. Each step the scheduler
1. admits waiting sequences into free slots (first come, first served),
2. gives every decoding sequence one token (its last sample), then
3. spends what is left of the per-step token budget on prompt chunks (chunked prefill), oldest
   admission first, so a long prompt never stalls the streams already running.

Priority: a background request (a queued batch's item) is admitted only when no interactive
request waits, takes no part in a step that computes an interactive prompt (so a backlog does
not lengthen the time to an interactive first token) nor, on a CPU, in any step with
interactive work (see hardware.background_shares_steps), and gives its slot up (`preempt`) when
an interactive request finds none free. So a backlog never makes an interactive request wait
for a slot; it runs on what interactive traffic leaves.

Prefix caching: a slot keeps the KV of the last sequence it held. A new sequence goes to the
free slot whose cached tokens share the longest prefix with its prompt (the same system prompt,
the previous turn of the chat), and prefill starts after that prefix.

Batch invariance: how llama.cpp computes a prompt token depends on which rows share its chunk
(with flash attention, on the chunk's exact extent). So prompts are always cut at the same
absolute positions, multiples of `chunk` (one chunk per sequence per step), and a cached prefix
is reused only up to such a boundary. A prompt token's KV and logits are then the same however
busy the server is and whatever was cached. Decode steps are one row per sequence, always; the
cache keeps only prompt KV, never that of generated tokens (computed one row at a time).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from wai.engine.types import TokenRequest


@dataclass(slots=True, eq=False)
class Seq:
    """One request's state while the engine holds it."""

    request: TokenRequest
    slot: int = -1
    n_past: int = 0  # tokens of this sequence already in the KV cache
    cached: int = 0  # of which reused from the slot's previous occupant
    generated: list[int] = field(default_factory=list)
    sampler: Any = None  # backend-owned sampling state
    output: Any = None  # backend-owned output state (detokenizer, stop strings, end rules)
    arrived: float = field(default_factory=time.monotonic)
    queued: float = 0.0  # seconds between arriving and getting a slot

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.request.prompt_tokens)

    @property
    def id(self) -> int:
        return self.request.request_id

    def reusable(self) -> list[int]:
        """The prompt tokens whose KV this sequence has computed (see batch invariance)."""
        return list(self.request.prompt_tokens[: self.n_past])


@dataclass(slots=True)
class Work:
    """Tokens of one sequence in this step's batch, at positions start..start+len-1."""

    seq: Seq
    tokens: list[int]
    start: int
    logits: bool  # sample after this chunk (a decode token, or the end of the prompt)


class Scheduler:
    def __init__(
        self, n_slots: int, token_budget: int, chunk: int, background_shares_steps: bool = True
    ) -> None:
        if n_slots < 1 or chunk < 1 or token_budget < n_slots + chunk:
            raise ValueError("need n_slots >= 1, chunk >= 1, token_budget >= n_slots + chunk")
        self.n_slots = n_slots
        # False (a CPU: hardware.background_shares_steps): background work waits out every
        # step with interactive work, not only those that compute an interactive prompt
        self.background_shares_steps = background_shares_steps
        self.token_budget = token_budget
        self.chunk = chunk
        self.waiting: deque[Seq] = deque()
        self.slots: list[Seq | None] = [None] * n_slots
        self._admitted: list[Seq] = []  # running sequences in admission order
        # What each slot's KV stream holds once its sequence has left, and when it was used.
        self.slot_cache: list[list[int]] = [[] for _ in range(n_slots)]
        self._last_used = [0] * n_slots
        self._clock = itertools.count(1)

    @property
    def running(self) -> list[Seq]:
        return list(self._admitted)

    def idle(self) -> bool:
        return not self.waiting and not self._admitted

    def add(self, seq: Seq) -> None:
        self.waiting.append(seq)

    def preempt(self) -> list[Seq]:
        """The background sequences to take out so that every waiting interactive one gets a
        slot (the most recently admitted first: the least work lost). The caller ends them."""
        wanted = sum(not s.request.background for s in self.waiting)
        wanted -= sum(occupant is None for occupant in self.slots)
        victims = [s for s in reversed(self._admitted) if s.request.background][: max(0, wanted)]
        for seq in victims:
            self.remove(seq)
        return victims

    def _next_waiting(self) -> Seq:
        """The first waiting interactive sequence, else the first background one."""
        seq = next((s for s in self.waiting if not s.request.background), self.waiting[0])
        self.waiting.remove(seq)
        return seq

    def admit(self) -> list[Seq]:
        """Move waiting sequences into free slots (interactive ones first), each into the free
        slot with the longest cached prefix of its prompt (ties: the least recently used). Sets
        `cached`/`n_past`; the backend must drop the slot's KV past `cached`. Returns the newly
        admitted sequences."""
        admitted = []
        free = [i for i, occupant in enumerate(self.slots) if occupant is None]
        while free and self.waiting:
            seq = self._next_waiting()
            prompt = list(seq.request.prompt_tokens)
            reuse = {i: _common_prefix(self.slot_cache[i], prompt) for i in free}
            slot = max(free, key=lambda i: (reuse[i], -self._last_used[i]))
            free.remove(slot)
            seq.slot = slot
            seq.queued = time.monotonic() - seq.arrived
            # logits are needed for the last prompt token, so it is always recomputed; reuse
            # stops at a chunk boundary (see batch invariance)
            usable = max(0, min(reuse[slot], len(prompt) - 1))
            seq.cached = seq.n_past = usable - usable % self.chunk
            self.slots[slot] = seq
            self._last_used[slot] = next(self._clock)
            self._admitted.append(seq)
            admitted.append(seq)
        return admitted

    def schedule(self) -> list[Work]:
        """The plan for one batch. Call `admit` first."""
        budget = self.token_budget
        plan: list[Work] = []
        # interactive prompts first; background work waits out a step that computes one
        # (and, where it does not share steps, any step with interactive work)
        order = sorted(self._admitted, key=lambda s: s.request.background)
        if any(not s.request.background for s in order) and (
            not self.background_shares_steps
            or any(s.prefilling and not s.request.background for s in order)
        ):
            order = [s for s in order if not s.request.background]
        for seq in order:
            if not seq.prefilling:
                plan.append(Work(seq, [seq.generated[-1]], seq.n_past, logits=True))
                budget -= 1
        for seq in order:
            if budget <= 0:
                break
            if seq.prefilling:
                prompt = seq.request.prompt_tokens
                end = min(len(prompt), (seq.n_past // self.chunk + 1) * self.chunk)
                if end - seq.n_past > budget:
                    continue  # the whole aligned chunk, or nothing this step
                plan.append(
                    Work(seq, list(prompt[seq.n_past : end]), seq.n_past, logits=end == len(prompt))
                )
                budget -= end - seq.n_past
        return plan

    def find(self, request_id: int) -> Seq | None:
        for seq in (*self.waiting, *self._admitted):
            if seq.id == request_id:
                return seq
        return None

    def remove(self, seq: Seq, keep_cache: bool = True) -> None:
        """Take a sequence out, waiting or running. A running one frees its slot, whose KV
        stays reusable unless keep_cache is False (the caller clears the KV)."""
        if seq in self.waiting:
            self.waiting.remove(seq)
            return
        self._admitted.remove(seq)
        self.slots[seq.slot] = None
        self.slot_cache[seq.slot] = seq.reusable() if keep_cache else []


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
