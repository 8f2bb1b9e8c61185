"""A llama.cpp sampler chain per sequence, from validated SamplingParams."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import llama_cpp as L
import numpy as np

from wai.engine.base import SamplingParams

PENALTY_LAST_N = 64  # tokens the repetition/frequency/presence penalties look back over


def is_plain_greedy(p: SamplingParams) -> bool:
    """Greedy with nothing that reshapes the logits first: the argmax of the raw logits."""
    return p.temperature <= 0.0 and not (
        p.logit_bias or p.repetition_penalty or p.frequency_penalty or p.presence_penalty
    )


def greedy_tokens(ctx: Any, n_vocab: int, n_outputs: int, outputs: Sequence[int]) -> list[int]:
    """The argmax token of each listed output row of the last decode, in one vectorised pass
    over the step's logits (a sampler chain per row would copy the whole vocabulary into a
    candidate array per sequence). Ties go to the lowest token id, as llama.cpp's greedy
    sampler does."""
    logits = np.ctypeslib.as_array(L.llama_get_logits(ctx), shape=(n_outputs, n_vocab))
    picked: list[int] = logits[list(outputs)].argmax(axis=1).tolist()
    return picked


def make_sampler(p: SamplingParams, n_vocab: int) -> Any:
    """logit bias, penalties, then greedy, or top-k, top-p, temperature and a seeded draw.
    The caller frees it with `llama_sampler_free`."""
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
    add(chain, L.llama_sampler_init_temp(p.temperature))
    seed = p.seed if p.seed is not None else random.getrandbits(32)
    add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain
