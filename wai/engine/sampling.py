"""Sampling: plain-greedy rows together in one vectorised argmax; every other sequence through
its own llama.cpp sampler chain (`Chain`), the chains of one step in parallel (`ChainPool`)."""

from __future__ import annotations

import ctypes
import random
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import llama_cpp as L
import numpy as np

from wai.engine.gguf import LlamaTokenizer
from wai.engine.grammar import TOKEN_DATA, TokenCheck, feed, grammar_sampler
from wai.engine.types import SamplingParams

PENALTY_LAST_N = 64  # tokens the repetition/frequency/presence penalties look back over


def is_plain_greedy(p: SamplingParams) -> bool:
    """Greedy with nothing that reshapes the logits first: the argmax of the raw logits."""
    return p.temperature <= 0.0 and not (
        p.logit_bias
        or p.repetition_penalty
        or p.frequency_penalty
        or p.presence_penalty
        or p.grammar
    )


LAZY_TRIES = 8  # picks that would start an invalid tool call, masked in turn, before giving up
LAZY_WINDOW = 4096  # bytes of untriggered text kept for the trigger search


def step_logits(ctx: Any, n_vocab: int, n_outputs: int) -> np.ndarray:
    """The last decode's logits, one row per output in batch order (a view, valid until the
    next decode). Reading them synchronises the context (on its own thread)."""
    return np.ctypeslib.as_array(L.llama_get_logits(ctx), shape=(n_outputs, n_vocab))


def greedy_tokens(logits: np.ndarray, outputs: Sequence[int]) -> list[int]:
    """The argmax token of each listed output row, in one vectorised pass (a sampler chain per
    row would copy the whole vocabulary into a candidate array per sequence). Ties go to the
    lowest token id, as llama.cpp's greedy sampler does."""
    picked: list[int] = logits[list(outputs)].argmax(axis=1).tolist()
    return picked


def verified(picks: Iterable[int], draft: Sequence[int]) -> list[int]:
    """The tokens a verification gives: each row's pick while it equals the drafted token
    that follows, then the first pick that does not (or the last row's). Picks are taken
    lazily: none after the first miss."""
    out = []
    for j, token in enumerate(picks):
        out.append(token)
        if j >= len(draft) or token != draft[j]:
            break
    return out


def greedy_verify(logits: np.ndarray, first: int, draft: Sequence[int]) -> list[int]:
    """`verified` for a plain-greedy sequence whose rows start at output `first`: every row's
    argmax in one pass."""
    picks: list[int] = logits[first : first + len(draft) + 1].argmax(axis=1).tolist()
    return verified(picks, draft)


def make_sampler(p: SamplingParams, n_vocab: int) -> Any:
    """logit bias, penalties, then greedy, or top-k, top-p, min-p, temperature and a seeded
    draw (a grammar is not part of it: see Chain). The caller frees it with
    `llama_sampler_free`."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    add = L.llama_sampler_chain_add
    if p.logit_bias:
        biases = (L.llama_logit_bias * len(p.logit_bias))()
        for i, (token, bias) in enumerate(p.logit_bias):
            biases[i].token = token  # type: ignore[assignment]
            biases[i].bias = bias
        add(chain, L.llama_sampler_init_logit_bias(n_vocab, len(p.logit_bias), biases))
    if p.repetition_penalty or p.frequency_penalty or p.presence_penalty:
        add(
            chain,
            L.llama_sampler_init_penalties(
                n_vocab,
                PENALTY_LAST_N,
                p.repetition_penalty or 1.0,
                p.frequency_penalty or 0.0,
                p.presence_penalty or 0.0,
            ),
        )
    if p.temperature <= 0.0:
        add(chain, L.llama_sampler_init_greedy())
        return chain
    if p.top_k:
        add(chain, L.llama_sampler_init_top_k(p.top_k))
    if p.top_p is not None and p.top_p < 1.0:
        add(chain, L.llama_sampler_init_top_p(p.top_p, 1))
    if p.min_p:
        add(chain, L.llama_sampler_init_min_p(p.min_p, 1))
    add(chain, L.llama_sampler_init_temp(p.temperature))
    seed = p.seed if p.seed is not None else random.getrandbits(32)
    add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


class Chain:
    """One sequence's sampler chain and its candidate buffer.

    `sample` does what llama.cpp's `llama_sampler_sample` does (candidates from the logits row,
    unsorted, p = 0; apply the chain; accept the pick), but on a logits row the caller hands
    it instead of reading the context, so chains of one step can run on several threads at
    once: no thread touches the llama_context, and ctypes releases the GIL for the call.

    A grammar (JSON mode) is kept out of the chain and checked on the chain's pick alone, as
    llama.cpp's own common sampler does: most picks are valid, and checking one token is far
    cheaper than masking the whole vocabulary. Only when the grammar forbids the pick is the
    whole vocabulary masked and the chain applied again. For greedy rows this picks exactly
    what a chain with the grammar first picks."""

    def __init__(
        self, p: SamplingParams, n_vocab: int, tokenizer: LlamaTokenizer | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.grammar: Any = None
        # a lazy grammar: its source and trigger, until the trigger matches
        self._lazy: tuple[str, re.Pattern[bytes]] | None = None
        self._text = bytearray()  # generated bytes while the lazy grammar waits
        if p.grammar and p.trigger:
            self._lazy = (p.grammar, re.compile(p.trigger.encode()))
        elif p.grammar:
            self.grammar = self._grammar_sampler(p.grammar)
        self.ptr = make_sampler(p, n_vocab)
        self._buf = np.empty(n_vocab, dtype=TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        data = self._buf.ctypes.data_as(ctypes.POINTER(L.llama_token_data))
        self._array = L.llama_token_data_array(data=data, size=n_vocab, selected=-1, sorted=False)
        self._check = TokenCheck()

    def _grammar_sampler(self, gbnf: str) -> Any:
        assert self.tokenizer is not None, "a grammar needs the model's vocabulary"
        sampler = grammar_sampler(self.tokenizer.vocab, gbnf)
        if sampler is None:  # the server checks every grammar before it is sent
            raise ValueError("llama.cpp refuses the grammar")
        return sampler

    def _apply(self, samplers: list[Any], logits: np.ndarray) -> int:
        buf, arr = self._buf, self._array
        buf["id"] = self._ids
        buf["logit"] = logits
        buf["p"] = 0.0
        arr.size = len(buf)
        arr.selected = -1
        arr.sorted = False
        for sampler in samplers:
            L.llama_sampler_apply(sampler, ctypes.byref(arr))
        if not 0 <= arr.selected < arr.size:
            raise RuntimeError(f"the sampler chain selected {arr.selected} of {arr.size}")
        return int(arr.data[arr.selected].id)

    def sample(self, logits: np.ndarray) -> int:
        token = self._apply([self.ptr], logits)
        if self._lazy is not None:
            token = self._watch(token, logits)
        elif self.grammar is not None:
            if not self._check.allows(self.grammar, token, float(logits[token])):
                token = self._apply([self.grammar, self.ptr], logits)
            L.llama_sampler_accept(self.grammar, token)
        L.llama_sampler_accept(self.ptr, token)
        return token

    def verify(self, rows: np.ndarray, draft: Sequence[int]) -> list[int]:
        """Sample row after row, as plain steps would (the chain's state advancing with each
        token), while each pick equals the drafted token that follows (speculation.py). Rows
        after the first miss are never sampled."""
        return verified((self.sample(row) for row in rows), draft)

    def _watch(self, token: int, logits: np.ndarray) -> int:
        """A lazy grammar's wait: the pick goes through unless it completes the trigger. Then
        the grammar starts, fed the text from the trigger's group 1 to the pick's end; a pick
        whose text the grammar refuses (a token straddling the trigger, "<tool_call>Hi") is
        masked and the chain picks again. llama.cpp's own lazy grammar would abort the process
        on such a token."""
        assert self._lazy is not None and self.tokenizer is not None
        gbnf, trigger = self._lazy
        masked: np.ndarray | None = None
        for _ in range(LAZY_TRIES):
            text = bytes(self._text) + self.tokenizer.piece(token, special=True)
            match = trigger.search(text)
            if match is None:
                self._remember(text)
                return token
            sampler = self._grammar_sampler(gbnf)
            if feed(sampler, self.tokenizer, text[match.start(1) :], self._check):
                self.grammar, self._lazy, self._text = sampler, None, bytearray()
                return token
            L.llama_sampler_free(sampler)
            if masked is None:
                masked = logits.copy()
            masked[token] = -np.inf
            token = self._apply([self.ptr], masked)
        # a model that insists: no call, then (free text, as without tools)
        self._lazy, self._text = None, bytearray()
        return token

    def _remember(self, text: bytes) -> None:
        if len(text) > LAZY_WINDOW:
            if self._lazy is not None and self._lazy[1].pattern.startswith(rb"\A"):
                self._lazy = None  # an anchored trigger can no longer match
                return
            text = text[-LAZY_WINDOW // 2 :]
        self._text = bytearray(text)

    def free(self) -> None:
        if self.ptr is not None:
            L.llama_sampler_free(self.ptr)
            self.ptr = None
        if self.grammar is not None:
            L.llama_sampler_free(self.grammar)
            self.grammar = None


class ChainPool:
    """Samples a step's chains on up to `threads` threads. A top-p chain sorts the whole
    vocabulary (about 1.1 ms for 49,152 tokens on an EPYC core): one after another, 64 seeded
    sequences cost more than a GPU's whole decode step."""

    def __init__(self, threads: int) -> None:
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="sample") if threads > 1 else None
        )

    def sample(self, jobs: list[tuple[Chain, np.ndarray]]) -> list[int]:
        """One token from each (chain, logits row)."""
        return [out[0] for out in self.verify([(c, row[None, :], ()) for c, row in jobs])]

    def verify(self, jobs: Sequence[tuple[Chain, np.ndarray, Sequence[int]]]) -> list[list[int]]:
        """Chain.verify of each (chain, rows, draft)."""
        if self._pool is None or len(jobs) < 2:
            return [chain.verify(rows, draft) for chain, rows, draft in jobs]
        return list(self._pool.map(lambda job: job[0].verify(job[1], job[2]), jobs))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
