"""Which tokens go into the next batch: plain Python policy, testable without a model.

One step = one `llama_decode`. Each step the scheduler
1. admits waiting sequences into free slots (first come, first served),
2. gives every decoding sequence one token (its last sample), and the drafted tokens it
   verifies where that pays (speculative decoding: `_draft`, speculation.py), then
3. spends what is left of the per-step token budget on prompt chunks (chunked prefill), oldest
   admission first, so a long prompt never stalls the streams already running.

Priority: a background request (a queued batch's item) is admitted only when no interactive
request waits, takes no part in a step that computes an interactive prompt (so a backlog does
not lengthen the time to an interactive first token) nor, on a CPU, in any step with
interactive work (see hardware.background_shares_steps), and gives its slot up (`preempt`) when
an interactive request finds none free. So a backlog never makes an interactive request wait
for a slot; it runs on what interactive traffic leaves.

Slots: a new sequence goes to a free slot next to the running ones, so that running sequences
hold consecutive slots: llama.cpp computes each run of consecutive KV streams in a batch as its
own ubatch, one pass over the weights each.

Prefix caching: a slot keeps the KV of the last sequence it held. Among the free slots that keep
the running ones consecutive, a new sequence goes to the one whose cached tokens share the
longest prefix with its prompt (the same system prompt,
the previous turn of the chat; ties: the slot of the same session, then one no session holds,
then the least recently used), and prefill starts after that prefix. When another slot (free,
or running a sequence that has computed it) or the RAM cache (prompt_cache.py) holds more of
the prompt, the engine copies that KV into the slot instead (`Reuse`). When a running sequence
is still computing a longer shared prefix (requests with the same system prompt arriving
together), the newcomer follows it (`leader`): it waits until that prefix is computed, then
copies it, instead of computing it a second time beside it. What a slot loses to a newcomer goes
to the RAM cache first (`evicts`), when it is worth keeping.

Batch invariance: how llama.cpp computes a prompt token depends on which rows share its chunk
(with flash attention, on the chunk's exact extent). So prompts are always cut at the same
positions, which depend on the prompt alone (prompt_cache.Cuts: multiples of `chunk` and the
ends of templated messages; one chunk per sequence per step; consecutive short pieces share a
chunk where each row is computed alone: `alone_rows`), and a cached prefix is reused only up to
such a cut. A prompt token's KV and logits are then the same however busy the server is and
wherever its prefix came from (a copy of KV is bit-for-bit). A decode step computes one row per
sequence, and a verification's rows are computed as such rows (except where a lone row would
take the split-KV path: `_rows`); the cache keeps only prompt KV, never that of generated
tokens.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from wai.engines.llamacpp.prompt_cache import (
    MIN_SAVED,
    Cuts,
    Entry,
    PromptCache,
    common_prefix,
    reusable,
)
from wai.engines.llamacpp.speculation import Acceptance, Ngrams, StepCosts, prior, verify_length
from wai.engines.llamacpp.types import TokenRequest

ReuseKind = Literal["slot", "copy", "ram"]


class Proposer(Protocol):
    """Drafts from a draft model (draft.py): for each (slot, tokens so far, k, where the
    prompt is cut), up to k tokens that follow; and what drafting one position of a step
    costs, in seconds."""

    seconds_per_token: float

    def propose(
        self, jobs: Sequence[tuple[int, Sequence[int], int, Sequence[int]]]
    ) -> list[list[int]]: ...


@dataclass(frozen=True, slots=True)
class Reuse:
    """Where an admitted sequence's first `tokens` prompt tokens come from: its slot's own KV,
    a copy of another slot's (`source`), or the RAM cache's `entry`."""

    kind: ReuseKind
    tokens: int
    source: int = -1
    entry: Entry | None = None


@dataclass(slots=True, eq=False)
class Seq:
    """One request's state while the engine holds it."""

    request: TokenRequest
    slot: int = -1
    n_past: int = 0  # tokens of this sequence already in the KV cache
    cached: int = 0  # of which reused (see `reuse`)
    reuse: Reuse | None = None  # set at admission; the engine brings those tokens' KV in
    cuts: list[int] = field(default_factory=list)  # where the prompt is cut (prompt_cache.Cuts)
    # waiting for `leader` to compute the first `follow_to` tokens, to copy them
    leader: Seq | None = None
    follow_to: int = 0
    # what the slot held before, for the engine to keep in the RAM cache before reusing it
    evicts: Sequence[int] = ()
    generated: list[int] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # text not sent yet (request.final_only)
    # speculative decoding (speculation.py): its prompt lookup, how its drafts fare, and its
    # drafted and accepted tokens so far
    drafter: Ngrams | None = None
    acceptance: Acceptance = field(default_factory=Acceptance)
    drafted: int = 0
    accepted: int = 0
    sampler: Any = None  # backend-owned sampling state
    output: Any = None  # backend-owned output state (detokenizer, stop strings, end rules)
    arrived: float = field(default_factory=time.monotonic)
    queued: float = 0.0  # seconds between arriving and getting a slot

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.request.prompt_tokens)

    @property
    def computing(self) -> bool:
        """Has prompt tokens to compute now (not waiting for a leader)."""
        return self.prefilling and self.leader is None

    def next_cut(self) -> int:
        """The end of the prompt chunk that starts at n_past."""
        i = bisect.bisect_right(self.cuts, self.n_past)
        return self.cuts[i] if i < len(self.cuts) else len(self.request.prompt_tokens)

    @property
    def id(self) -> int:
        return self.request.request_id

    def reusable(self) -> list[int]:
        """The prompt tokens whose KV this sequence has computed (see batch invariance)."""
        return list(self.request.prompt_tokens[: self.n_past])


@dataclass(slots=True)
class Work:
    """Tokens of one sequence in this step's batch, at positions start..start+len-1: a prompt
    chunk, or a decode row (its last token) and, when it verifies a draft, the `drafted` tokens
    after it and filler rows up to the step's verification length."""

    seq: Seq
    tokens: list[int]
    start: int
    logits: bool  # sample after this chunk (a decode token, or the end of the prompt)
    decode: bool = False
    drafted: int = 0

    @property
    def outputs(self) -> int:
        """Rows with logits: all of a decode work's (each verifies the next), the last of a
        prompt chunk that ends the prompt."""
        return len(self.tokens) if self.decode else int(self.logits)


class Scheduler:
    def __init__(
        self,
        n_slots: int,
        token_budget: int,
        chunk: int,
        background_shares_steps: bool = True,
        *,
        marks: frozenset[int] = frozenset(),
        cache: PromptCache | None = None,
        costs: StepCosts | None = None,
        draft_max: int = 16,
        draft_min: int = 0,
        padded: bool = True,
        n_ctx_seq: int = 1 << 30,
        proposer: Proposer | None = None,
        split_kv_cells: int | None = None,
        alone_rows: int = 0,
    ) -> None:
        if n_slots < 1 or chunk < 1 or token_budget < n_slots + chunk:
            raise ValueError("need n_slots >= 1, chunk >= 1, token_budget >= n_slots + chunk")
        self.n_slots = n_slots
        # False (a CPU: hardware.background_shares_steps): background work waits out every
        # step with interactive work, not only those that compute an interactive prompt
        self.background_shares_steps = background_shares_steps
        self.token_budget = token_budget
        self.chunk = chunk
        self.cuts = Cuts(chunk, marks)
        self.cache = cache  # the RAM prompt cache (None: none)
        # speculative decoding: the engine's call timings (None: no drafts), the most tokens a
        # sequence drafts, whether every decode work of a step verifies as many rows (one KV
        # stream per sequence: see speculation.py), and the positions a sequence has
        self.costs = costs
        self.proposer = proposer  # a draft model; None: prompt lookup
        self.draft_max = draft_max
        self.draft_min = draft_min
        self.padded = padded
        self.n_ctx_seq = n_ctx_seq
        # a decode row alone in its ubatch, its stream past this many cells, is computed
        # otherwise than a verification's rows (hardware.split_kv_cells): none verified there
        self.split_kv_cells = split_kv_cells
        # consecutive prompt pieces up to this many rows in all are computed in one call: each
        # row is computed as if alone there (hardware.rows_computed_alone)
        self.alone_rows = alone_rows
        self.waiting: deque[Seq] = deque()
        self.slots: list[Seq | None] = [None] * n_slots
        self._admitted: list[Seq] = []  # running sequences in admission order
        # What each slot's KV stream holds once its sequence has left, and when it was used.
        self.slot_cache: list[Sequence[int]] = [[] for _ in range(n_slots)]
        self.slot_session: list[str] = [""] * n_slots  # the session of its last sequence
        # the slot holds its last sequence's whole prompt, and the engine that prompt's logits
        # (the first token was sampled from them): the same prompt again computes nothing
        self.whole = [False] * n_slots
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

    def admit(self, prepare: Callable[[Seq], None] | None = None) -> list[Seq]:
        """Move waiting sequences into free slots (interactive ones first), each into the slot
        that holds the most of its prompt (see the module's prefix caching). Sets `reuse`,
        `cached`/`n_past`, `leader`, `evicts`; `prepare` (the engine) brings the reused KV into
        the slot before the next sequence is placed, which may copy from it. Returns the newly
        admitted sequences."""
        admitted = []
        while self.waiting and None in self.slots:
            seq = self._next_waiting()
            self._place(seq)
            admitted.append(seq)
            if prepare is not None:
                prepare(seq)
        return admitted

    def _place(self, seq: Seq) -> None:
        prompt = seq.request.prompt_tokens
        seq.cuts = self.cuts.positions(prompt)
        free = [i for i, occupant in enumerate(self.slots) if occupant is None]
        own = {i: self._own(i, prompt, seq.cuts) for i in free}
        session = seq.request.session
        slot = max(
            free,
            key=lambda i: (
                -self._runs(i),
                own[i],
                bool(session) and self.slot_session[i] == session,
                not self.slot_session[i],  # a session's slot goes last
                -self._last_used[i],
            ),
        )
        reuse = self._best_source(seq, slot, own[slot])
        # what the slot loses goes to RAM, unless the newcomer keeps it or RAM holds it
        kept = reuse.tokens if reuse.kind == "slot" else 0
        old = self.slot_cache[slot]
        cache = self.cache
        if cache is not None and cache.limit and len(old) - kept >= MIN_SAVED:
            seq.evicts = old if len(old) - cache.covered(old) >= MIN_SAVED else ()
        seq.slot = slot
        seq.queued = time.monotonic() - seq.arrived
        seq.reuse = reuse
        seq.cached = seq.n_past = reuse.tokens
        seq.leader, seq.follow_to = self._leader(seq, reuse.tokens)
        self.slots[slot] = seq
        self.slot_cache[slot] = []
        self.whole[slot] = False
        self.slot_session[slot] = session
        self._last_used[slot] = next(self._clock)
        self._admitted.append(seq)

    def _runs(self, slot: int) -> int:
        """How many runs of consecutive slots the running sequences form with `slot` taken:
        llama.cpp computes each run of consecutive KV streams as its own ubatch, a pass over
        the weights each (measured: 4 sequences decoding in slots 0, 4, 8, 12 take 1.8x the
        time of slots 0-3)."""
        taken = [occupant is not None or i == slot for i, occupant in enumerate(self.slots)]
        return sum(t and (i == 0 or not taken[i - 1]) for i, t in enumerate(taken))

    def _own(self, slot: int, prompt: Sequence[int], cuts: list[int]) -> int:
        """What a free slot's own KV gives: all of an exact repeat of its last prompt (whose
        logits the engine kept), else up to a cut."""
        held = self.slot_cache[slot]
        if (
            self.whole[slot]
            and len(held) == len(prompt)
            and common_prefix(held, prompt) == len(prompt)
        ):
            return len(prompt)
        return reusable(prompt, cuts, held)

    def _held(self, exclude: int) -> Iterator[tuple[int, Sequence[int]]]:
        """Each other slot and the prompt tokens its KV holds."""
        for j, occupant in enumerate(self.slots):
            if j != exclude:
                yield j, occupant.reusable() if occupant is not None else self.slot_cache[j]

    def _best_source(self, seq: Seq, slot: int, own: int) -> Reuse:
        """The most of seq's prompt that is computed somewhere: its slot, another, RAM."""
        prompt = seq.request.prompt_tokens
        best = Reuse("slot", own, slot)
        for j, held in self._held(exclude=slot):
            n = reusable(prompt, seq.cuts, held)
            if n > best.tokens:
                best = Reuse("copy", n, j)
        if self.cache is not None:
            entry, n = self.cache.longest(prompt, seq.cuts)
            if n > best.tokens:
                best = Reuse("ram", n, entry=entry)
        return best

    def _leader(self, seq: Seq, have: int) -> tuple[Seq | None, int]:
        """A running sequence still computing at least a chunk more of seq's prompt than seq
        has, to wait for and copy from (an interactive sequence never waits for a background
        one: those sit out interactive prefill)."""
        prompt = seq.request.prompt_tokens
        leader, most = None, have + self.chunk - 1
        for other in self._admitted:
            if other is seq or not other.computing:
                continue
            if other.request.background and not seq.request.background:
                continue
            n = reusable(prompt, seq.cuts, other.request.prompt_tokens)
            if n > most:
                leader, most = other, n
        return (leader, most) if leader is not None else (None, 0)

    def caught_up(self) -> list[Seq]:
        """Followers whose leader has computed what they wait for (a copy of its KV), or has
        gone (whatever is best now): each gets a new `reuse`, for the engine to apply."""
        ready = []
        for seq in self._admitted:
            leader = seq.leader
            if leader is None:
                continue
            running = leader in self._admitted
            if running and leader.n_past < seq.follow_to:
                continue
            seq.leader = None
            if running:
                reuse = Reuse("copy", seq.follow_to, leader.slot)
            else:
                reuse = self._best_source(seq, seq.slot, seq.n_past)
            if reuse.tokens > seq.n_past:
                seq.reuse = reuse
                seq.cached = seq.n_past = reuse.tokens
                ready.append(seq)
        return ready

    def schedule(self) -> list[Work]:
        """The plan for one batch. Call `admit` first."""
        budget = self.token_budget
        plan: list[Work] = []
        # interactive prompts first; background work waits out a step that computes one
        # (and, where it does not share steps, any step with interactive work)
        order = sorted(self._admitted, key=lambda s: s.request.background)
        if any(not s.request.background for s in order) and (
            not self.background_shares_steps
            or any(s.computing and not s.request.background for s in order)
        ):
            order = [s for s in order if not s.request.background]
        for seq in order:
            if not seq.prefilling:
                plan.append(Work(seq, [seq.generated[-1]], seq.n_past, logits=True, decode=True))
                budget -= 1
        if plan and self.costs is not None:
            # drafts take what prompt chunks leave (a chunk stays free while one waits)
            reserve = self.chunk if any(s.computing for s in order) else 0
            budget -= self._draft(plan, budget - reserve, self.costs)
        for seq in order:
            if budget <= 0:
                break
            if seq.computing:
                prompt = seq.request.prompt_tokens
                end = seq.next_cut()
                if end - seq.n_past > budget:
                    continue  # the whole aligned chunk, or nothing this step
                end = self._merged(seq, end, budget)
                plan.append(
                    Work(seq, list(prompt[seq.n_past : end]), seq.n_past, logits=end == len(prompt))
                )
                budget -= end - seq.n_past
        return plan

    def _merged(self, seq: Seq, end: int, budget: int) -> int:
        """The chunk's end, past the next cuts while the chunk stays within `alone_rows` and
        the budget: short pieces (a last message and the generation header) in one call."""
        n = len(seq.request.prompt_tokens)
        i = bisect.bisect_right(seq.cuts, end)
        while end < n:
            nxt = seq.cuts[i] if i < len(seq.cuts) else n
            if nxt - seq.n_past > min(self.alone_rows, budget):
                break
            end, i = nxt, i + 1
        return end

    def _draft(self, works: list[Work], room: int, costs: StepCosts) -> int:
        """Add drafted tokens to the step's decode works, as many as pay (speculation.py);
        returns the rows added."""
        slots = {w.seq.slot for w in works}
        alone = [w.seq.slot - 1 not in slots and w.seq.slot + 1 not in slots for w in works]
        rows = [self._rows(w, lone) for w, lone in zip(works, alone, strict=True)]
        # never past max_tokens: the last token of a verification is always sampled
        caps = [
            min(self.draft_max, w.seq.request.max_tokens - len(w.seq.generated) - 1, rows[i])
            for i, w in enumerate(works)
        ]
        proposer = self.proposer
        drafts: dict[int, list[int]] = {}
        if proposer is None:  # prompt lookup: what is there decides the length
            drafts = {
                i: d for i, w in enumerate(works) if caps[i] > 0 and (d := _lookup(w.seq, caps[i]))
            }
            available = {i: len(d) for i, d in drafts.items()}
        else:  # a draft model drafts what is asked
            available = {i: cap for i, cap in enumerate(caps) if cap > 0}
        rates = [
            (n, works[i].seq.acceptance.rate(_guess(works[i].seq))) for i, n in available.items()
        ]
        cost = proposer.seconds_per_token if proposer is not None else 0.0
        length = verify_length(
            rates,
            len(works),
            costs,
            padded=self.padded,
            room=room,
            draft_cost=cost,
            least=self.draft_min,
        )
        if self.padded:  # sequences that share a ubatch with another verify alike
            length = min([length, *(n for n, lone in zip(rows, alone, strict=True) if not lone)])
        if not length:
            for i in available:
                works[i].seq.acceptance.fade()
            return 0
        if proposer is not None:
            jobs = [
                (works[i].seq.slot, _history(works[i].seq), min(n, length), _cuts(works[i].seq))
                for i, n in available.items()
            ]
            drafts = dict(zip(available, proposer.propose(jobs), strict=True))
        added = 0
        for i, work in enumerate(works):
            draft = drafts.get(i, [])[:length]
            work.drafted = len(draft)
            work.tokens.extend(draft)
            if self.padded:
                # filler, so that every decode work is one ubatch; verified like a draft
                work.tokens.extend([work.tokens[-1]] * (min(length, rows[i]) - len(draft)))
            added += len(work.tokens) - 1
        return added

    def _rows(self, work: Work, alone: bool) -> int:
        """The most rows a decode work may verify after its token: within its context, and,
        alone in its ubatch (no neighbour slot decodes beside it: llama.cpp puts only
        consecutive KV streams in one ubatch), short of the cells where a plain row would take
        another path (hardware.split_kv_cells), so that no token changes."""
        most = self.n_ctx_seq - 1 - work.start
        if alone and self.split_kv_cells is not None:
            most = min(most, self.split_kv_cells - 1 - work.start)
        return max(0, most)

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
        self.whole[seq.slot] = keep_cache and bool(seq.generated) and not seq.prefilling


def _lookup(seq: Seq, k: int) -> list[int]:
    """Prompt lookup's draft of up to k tokens for a sequence (its index made on first use)."""
    if seq.drafter is None:
        seq.drafter = Ngrams(seq.request.prompt_tokens)
    seen = len(seq.drafter.tokens) - len(seq.request.prompt_tokens)
    seq.drafter.extend(seq.generated[seen:])
    return seq.drafter.draft(k)


def _guess(seq: Seq) -> float:
    """What a sequence's draft is guessed to be worth before its own drafts tell (see
    speculation.prior): from the match prompt lookup found; a draft model's, 0.75."""
    return prior(seq.drafter.matched if seq.drafter is not None else 0)


def _history(seq: Seq) -> list[int]:
    """A sequence's tokens so far: its prompt and what it generated."""
    return [*seq.request.prompt_tokens, *seq.generated]


def _cuts(seq: Seq) -> list[int]:
    """Where a sequence's prompt was computed in chunks: its cuts and its end."""
    return [*seq.cuts, len(seq.request.prompt_tokens)]
