"""Where prompts are cut into chunks, and the prompt cache in host RAM: plain Python, no llama.cpp.

Cuts. How llama.cpp computes a prompt token depends on the exact extent of the chunk it is
computed in, so a prefix computed once can stand in for another prompt's only if both were cut
at the same positions. A prompt is cut (see `Cuts`) at multiples of `chunk` and right after each
end-of-turn token (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, …: the end of each templated
message), unless that is within `MIN_PIECE` tokens of the previous cut. Every cut up to position
p depends on the first p tokens alone, so two prompts that share p tokens are cut alike up to p,
and a prefix reused up to such a cut is bit-for-bit what computing it would give. A shared
system prompt ends a chunk, whatever its length: the next request reuses all of it.

The RAM cache (`PromptCache`) keeps what slots evict: the KV of a prompt prefix (llama.cpp's
per-sequence state, opaque bytes here) under the prefix's tokens, least recently used first out
under a byte limit. Any slot restores from it.
"""

from __future__ import annotations

import bisect
import itertools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

# A cut after an end-of-turn token this close to the previous cut is skipped: every cut costs a
# step (a pass over the weights) while the prompt is computed, and the few tokens of a short
# message are cheap to compute again.
MIN_PIECE = 8
# A slot's prefix shorter than this is not worth a copy into RAM.
MIN_SAVED = 64


@dataclass(frozen=True, slots=True)
class Cuts:
    """Where prompts are cut: multiples of `chunk`, and after the `marks` (end-of-turn ids)."""

    chunk: int
    marks: frozenset[int] = frozenset()

    def next(self, prompt: Sequence[int], pos: int) -> int:
        """The end of the chunk that starts at `pos` (a cut, or the prompt's end)."""
        end = min(len(prompt), (pos // self.chunk + 1) * self.chunk)
        if self.marks:
            # the chunk may end at a mark's cut (past MIN_PIECE: the chunk's start is a cut)
            for i in range(pos + MIN_PIECE - 1, end - 1):
                if prompt[i] in self.marks:
                    return i + 1
        return end

    def positions(self, prompt: Sequence[int]) -> list[int]:
        """Every cut of `prompt`, in order; its own end is none (another prompt may go on)."""
        out = []
        pos = self.next(prompt, 0) if prompt else 0
        while pos < len(prompt):
            out.append(pos)
            pos = self.next(prompt, pos)
        return out


def last_cut(cuts: list[int], limit: int) -> int:
    """The last of a prompt's `cuts` at or before `limit` (0 when none)."""
    i = bisect.bisect_right(cuts, limit)
    return cuts[i - 1] if i else 0


def reusable(prompt: Sequence[int], cuts: list[int], held: Sequence[int]) -> int:
    """How much of `prompt` (cut at `cuts`) a KV holding `held`'s first tokens can give: their
    common prefix, cut. At least the last token is computed again: its logits are needed."""
    return last_cut(cuts, min(common_prefix(held, prompt), len(prompt) - 1))


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    if type(a) is not type(b):
        a, b = tuple(a), tuple(b)
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i : i + 64] == b[i : i + 64]:  # blocks compared at C speed
        i += 64
    while i < n and a[i] == b[i]:
        i += 1
    return min(i, n)


_ids = itertools.count(1)


@dataclass(eq=False, slots=True)
class Entry:
    """One prefix in RAM: its tokens and their KV as llama.cpp saved it."""

    tokens: tuple[int, ...]
    state: bytearray
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def size(self) -> int:
        return len(self.state)


class PromptCache:
    """Prefixes slots evicted, in host RAM, least recently used out first under `limit` bytes
    (0: nothing is kept)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.bytes = 0
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # least recently used first
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, prompt: Sequence[int], cuts: list[int]) -> tuple[Entry | None, int]:
        """The entry that gives the most of `prompt` (cut at `cuts`), and how many tokens."""
        best: Entry | None = None
        most = 0
        key = tuple(prompt)  # as the entries hold theirs: compared at C speed
        for entry in self._entries.values():
            n = common_prefix(entry.tokens, key)
            if n > most:
                best, most = entry, n
        if best is None:
            return None, 0
        return best, last_cut(cuts, min(most, len(prompt) - 1))

    def covered(self, tokens: Sequence[int]) -> int:
        """How many of these tokens, from the first, an entry already holds."""
        key = tuple(tokens)
        return max((common_prefix(e.tokens, key) for e in self._entries.values()), default=0)

    def get(self, entry: Entry) -> bytearray | None:
        """An entry's state (None once it has been evicted); it becomes the most recent."""
        if entry.id not in self._entries:
            return None
        self._entries.move_to_end(entry.id)
        return entry.state

    def put(self, tokens: Sequence[int], state: bytearray) -> Entry | None:
        """Keep a prefix's state; entries it extends go, then the least recently used until it
        fits. None when it cannot fit at all."""
        if len(state) > self.limit:
            return None
        key = tuple(tokens)
        for old in list(self._entries.values()):
            if len(old.tokens) <= len(key) and key[: len(old.tokens)] == old.tokens:
                self._drop(old)  # the new entry gives everything the old one gave
        while self.bytes + len(state) > self.limit:
            self._drop(next(iter(self._entries.values())))
            self.evicted += 1
        entry = Entry(key, state)
        self._entries[entry.id] = entry
        self.bytes += entry.size
        return entry

    def _drop(self, entry: Entry) -> None:
        del self._entries[entry.id]
        self.bytes -= entry.size
