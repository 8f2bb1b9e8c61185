"""Sampling: plain-greedy rows together in one vectorised argmax; every other sequence through
its own llama.cpp sampler chain (`Chain`), the chains of one step in parallel (`ChainPool`)."""

from __future__ import annotations

import ctypes
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import llama_cpp as L
import numpy as np

from wai.engine.base import SamplingParams
from wai.engine.grammar import grammar_sampler

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


# llama_token_data as numpy sees it: {int32 id; float logit; float p}, 12 bytes
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
assert TOKEN_DATA.itemsize == ctypes.sizeof(L.llama_token_data)


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

    def __init__(self, p: SamplingParams, n_vocab: int, vocab: Any = None) -> None:
        # GrammarError (a ValueError) when llama.cpp refuses the grammar
        self.grammar: Any = grammar_sampler(vocab, p.grammar) if p.grammar else None
        self.ptr = make_sampler(p, n_vocab)
        self._buf = np.empty(n_vocab, dtype=TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.int32)
        data = self._buf.ctypes.data_as(ctypes.POINTER(L.llama_token_data))
        self._array = L.llama_token_data_array(data=data, size=n_vocab, selected=-1, sorted=False)
        self._one = np.empty(1, dtype=TOKEN_DATA)
        one = self._one.ctypes.data_as(ctypes.POINTER(L.llama_token_data))
        self._one_array = L.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)

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

    def _allowed(self, token: int, logit: float) -> bool:
        one, arr = self._one, self._one_array
        one["id"], one["logit"], one["p"] = token, logit, 0.0
        arr.size, arr.selected, arr.sorted = 1, -1, False
        L.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        return bool(np.isfinite(one["logit"][0]))

    def sample(self, logits: np.ndarray) -> int:
        token = self._apply([self.ptr], logits)
        if self.grammar is not None:
            if not self._allowed(token, float(logits[token])):
                token = self._apply([self.grammar, self.ptr], logits)
            L.llama_sampler_accept(self.grammar, token)
        L.llama_sampler_accept(self.ptr, token)
        return token

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
        if self._pool is None or len(jobs) < 2:
            return [chain.sample(row) for chain, row in jobs]
        return list(self._pool.map(lambda job: job[0].sample(job[1]), jobs))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
