"""Speculative decoding: where drafts come from, and how many drafted tokens a step verifies.

A sequence decoding one token per step reads every weight for that one token. A step that also
computes k drafted tokens after it (a verification) gives up to k + 1 tokens for one pass over
the weights, and costs little more where a step is bound by reading them (a GPU, a large model
on a CPU).

Drafts: prompt lookup (`Ngrams`): the tokens that followed the latest earlier occurrence of the
sequence's last NGRAM tokens, in its own prompt and output. Answers that quote their input (RAG
answers, summaries, code edits, JSON that repeats keys) draft well; free chat rarely finds one.

Verification (the engine): row j of a verification is sampled exactly as a plain decode row
would be (the same logits, the same sampler chain, its state advanced token by token), and the
draft's token j is accepted when that sample equals it; the first sample that differs is the
step's last token. For a draft that proposes one token at each position (prompt lookup; a greedy
draft model) this is the standard rejection-sampling rule: a token is accepted with probability
p(token), and a rejected position is sampled from p without the drafted token, renormalised.
So greedy and seeded sequences get the very tokens they get without speculation, and others
the same distribution.

How many (`verify_length`): every decoding sequence of a step verifies the same number of rows
where llama.cpp computes unequal works as separate ubatches (batch invariance: one KV stream
per sequence), padded with filler rows; the number maximises expected tokens per second, from
each sequence's measured acceptance (`Acceptance`) and the measured time of a call by its rows
(`StepCosts`). So a sequence whose drafts fail stops drafting, and a step on hardware where rows
are dear (a small CPU) drafts only what the acceptance pays for.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NGRAM = 3  # tokens of the sequence's end looked up in its history
MAX_MATCH = 32  # how far back a lookup's match is measured
LENGTHS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)  # draft lengths a step considers
# Before (and beside) what its own drafts showed, a sequence's acceptance is guessed from how
# long a stretch of its end matched where the draft comes from, worth this many drafts: 3
# tokens (common words) 0.5, 5 tokens 0.75, 9 tokens 0.875 (a sequence quoting its input).
PRIOR_WEIGHT = 4.0
# Each step a sequence's draft is declined, its own evidence fades by this much, so that a
# sequence that starts quoting later is tried again.
FADE = 0.99
EWMA = 0.2  # weight of a new timing in StepCosts
# A step verifies only when it expects at least this much more speed than not verifying: the
# call costs and acceptance rates are estimates, and where the expected gain is smaller than
# their error (several sequences padded to the longest draft on a CPU where each row costs
# nearly a step), verifying lost as often as it won (bench/speculative.py's 8-client mix).
MARGIN = 1.05
ROWS_MEASURED = (1, 2, 4, 8, 16)  # call sizes timed at start


class Ngrams:
    """Prompt lookup over one sequence's tokens (its prompt, then each generated token)."""

    def __init__(self, prompt: Sequence[int]) -> None:
        self.tokens = list(prompt)
        self._next: dict[tuple[int, ...], int] = {}  # n-gram -> where its latest one ended
        self._indexed = NGRAM - 1  # n-grams ending before this index are in _next
        self.matched = 0  # how many tokens of the end matched, at the last draft

    def extend(self, tokens: Iterable[int]) -> None:
        self.tokens.extend(tokens)

    def draft(self, k: int) -> list[int]:
        """Up to k tokens that followed the latest earlier occurrence of the last NGRAM (and
        `matched`: how long a stretch before them matched the sequence's end)."""
        toks = self.tokens
        n = len(toks)
        # index every n-gram that has a token after it (so not the last one: that is the key)
        for end in range(self._indexed, n - 1):
            self._next[tuple(toks[end - NGRAM + 1 : end + 1])] = end + 1
        self._indexed = max(self._indexed, n - 1)
        self.matched = 0
        if k < 1 or n < NGRAM:
            return []
        at = self._next.get(tuple(toks[n - NGRAM :]))
        if at is None:
            return []
        matched = NGRAM
        while (
            matched < MAX_MATCH and at > matched and toks[at - matched - 1] == toks[n - matched - 1]
        ):
            matched += 1
        self.matched = matched
        return toks[at : at + k]


def prior(matched: int) -> float:
    """The acceptance a draft is guessed to have from the length of the match it came from (a
    draft model's: none known, 0.75)."""
    return 1.0 - 1.0 / (matched - 1) if matched > NGRAM else 0.5 if matched else 0.75


@dataclass(slots=True)
class Acceptance:
    """How often a sequence's drafted tokens are accepted, as the chance that the next drafted
    token is accepted once the previous one was (a verification stops at its first miss):
    what its verifications showed, on top of a guess worth PRIOR_WEIGHT drafts."""

    accepted: float = 0.0
    rejected: float = 0.0

    def rate(self, guess: float = 0.75) -> float:
        return (self.accepted + PRIOR_WEIGHT * guess) / (
            self.accepted + self.rejected + PRIOR_WEIGHT
        )

    def update(self, drafted: int, accepted: int) -> None:
        self.accepted += accepted
        if accepted < drafted:
            self.rejected += 1

    def fade(self) -> None:
        self.accepted *= FADE
        self.rejected *= FADE


def expected_tokens(drafted: int, rate: float) -> float:
    """Tokens a verification of `drafted` tokens gives: the accepted ones and the last."""
    if rate >= 1.0:
        return drafted + 1.0
    return (1.0 - rate ** (drafted + 1)) / (1.0 - rate)


class StepCosts:
    """Seconds per llama_decode call of decode rows, by its number of rows: measured at start,
    then each decode-only call moves its size's figure (an exponential average). Sizes between
    two figures are interpolated, larger ones extrapolated from the last two."""

    def __init__(self, measured: dict[int, float]) -> None:
        if not measured:
            raise ValueError("need at least one timing")
        self._rows: list[int] = []
        self._secs: list[float] = []
        for rows, secs in sorted(measured.items()):
            self._set(rows, secs)

    def _set(self, rows: int, secs: float) -> None:
        i = bisect.bisect_left(self._rows, rows)
        if i < len(self._rows) and self._rows[i] == rows:
            self._secs[i] = secs
        else:
            self._rows.insert(i, rows)
            self._secs.insert(i, secs)

    def observe(self, rows: int, secs: float) -> None:
        i = bisect.bisect_left(self._rows, rows)
        known = i < len(self._rows) and self._rows[i] == rows
        self._set(rows, self._secs[i] + EWMA * (secs - self._secs[i]) if known else secs)

    def time(self, rows: int) -> float:
        xs, ys = self._rows, self._secs
        i = bisect.bisect_left(xs, rows)
        if i < len(xs) and xs[i] == rows:
            return ys[i]
        if len(xs) == 1:
            return ys[0] * rows / xs[0]
        if i == 0:  # below the smallest: no cheaper than it
            return ys[0]
        lo = min(i, len(xs) - 1) - 1  # between xs[lo] and xs[lo + 1], or past the last two
        slope = (ys[lo + 1] - ys[lo]) / (xs[lo + 1] - xs[lo])
        return ys[lo] + max(slope, 0.0) * (rows - xs[lo])


def verify_length(
    drafts: Sequence[tuple[int, float]],
    decoding: int,
    costs: StepCosts,
    *,
    padded: bool,
    room: int,
    draft_cost: float = 0.0,
    least: int = 0,
) -> int:
    """How many drafted tokens each of the step's `decoding` sequences verifies (0: none).

    `drafts`: (tokens available, acceptance rate) of each sequence that has a draft; `padded`:
    every sequence computes that many extra rows (filler where its draft is shorter or absent),
    else each computes its own draft's; `room`: extra rows the step's token budget allows;
    `draft_cost`: seconds that drafting each position costs (a draft model). The length
    maximises expected tokens per second of the step, if that beats not verifying by MARGIN;
    `least` (engine.draft_min) overrides that: at least so many, as far as the drafts and the
    room go."""
    if not drafts or decoding < 1:
        return 0
    best, best_rate = 0, MARGIN * decoding / costs.time(decoding)
    for length in LENGTHS:
        if length > max(n for n, _ in drafts):
            break
        extra = _extra(drafts, decoding, length, padded)
        if extra > room:
            break
        tokens = decoding + sum(expected_tokens(min(n, length), a) - 1.0 for n, a in drafts)
        rate = tokens / (costs.time(decoding + extra) + draft_cost * length)
        if rate > best_rate:
            best, best_rate = length, rate
    forced = min(least, max(n for n, _ in drafts))
    while forced > best and _extra(drafts, decoding, forced, padded) > room:
        forced -= 1
    return max(best, forced)


def _extra(drafts: Sequence[tuple[int, float]], decoding: int, length: int, padded: bool) -> int:
    """Rows a verification length adds to a step."""
    return decoding * length if padded else sum(min(n, length) for n, _ in drafts)
