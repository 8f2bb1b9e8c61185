"""engine/sampling.py on real logits: a Chain picks exactly what llama.cpp's own
`llama_sampler_sample` picks, and a ChainPool on threads exactly what one thread picks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import llama_cpp as L
import numpy as np
import pytest

from wai.catalog import embedded_model_path
from wai.engine.base import SamplingParams
from wai.engine.gguf import LlamaTokenizer, load_model
from wai.engine.grammar import grammar_sampler, schema_grammar
from wai.engine.params import context_params
from wai.engine.sampling import Chain, ChainPool, make_sampler

SCHEMA = {
    "type": "object",
    "properties": {"a": {"enum": ["x", "y"]}, "n": {"type": "integer"}},
    "required": ["a", "n"],
}

PARAMS = [
    SamplingParams(temperature=0.7, top_p=0.9, seed=1),
    SamplingParams(temperature=1.5, seed=2),
    SamplingParams(temperature=0.8, top_k=40, top_p=0.95, seed=3),
    SamplingParams(temperature=1.0, seed=4, repetition_penalty=1.3, presence_penalty=0.5),
    SamplingParams(temperature=0.9, seed=5, logit_bias=((42, 8.0), (7, -100.0))),
    SamplingParams(temperature=0, repetition_penalty=1.1),
    # greedy under a grammar: the pick-then-check shortcut must pick what grammar-first picks
    SamplingParams(temperature=0, grammar=schema_grammar(SCHEMA)),
    SamplingParams(temperature=0, grammar='root ::= "yes" | "no" | "maybe"'),
]


@pytest.fixture(scope="module")
def decoded() -> Iterator[tuple[Any, int, np.ndarray, Any]]:
    """A context that has decoded a prompt: (ctx, n_vocab, the last row's logits, vocab)."""
    model = load_model(embedded_model_path(), L.llama_model_default_params())
    ctx = L.llama_init_from_model(
        model, context_params(n_ctx=256, n_batch=64, n_seq=1, threads=0, flash_attn=True)
    )
    tok = LlamaTokenizer(model)
    prompt = tok.tokenize("The weather today is", add_special=True, parse_special=False)
    batch = L.llama_batch_get_one((L.llama_token * len(prompt))(*prompt), len(prompt))
    assert L.llama_decode(ctx, batch) == 0
    row = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(tok.n_vocab,)).copy()
    yield ctx, tok.n_vocab, row, tok.vocab
    L.llama_free(ctx)
    L.llama_model_free(model)


def _reference(params: SamplingParams, n_vocab: int, vocab: Any) -> Any:
    """What llama.cpp would run: one chain, with the grammar (if any) first in it."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    if params.grammar:
        L.llama_sampler_chain_add(chain, grammar_sampler(vocab, params.grammar))
    L.llama_sampler_chain_add(chain, make_sampler(params, n_vocab))
    return chain


@pytest.mark.parametrize("params", PARAMS)
def test_a_chain_picks_what_llama_sampler_sample_picks(
    decoded: tuple[Any, int, np.ndarray, Any], params: SamplingParams
) -> None:
    ctx, n_vocab, row, vocab = decoded
    reference = _reference(params, n_vocab, vocab)
    ours = Chain(params, n_vocab, vocab)  # a grammar checked on the pick, then if need be all
    try:
        # several draws from the same logits: the seeded stream and the penalties' history
        # (each pick is accepted) advance alike
        want = [int(L.llama_sampler_sample(reference, ctx, -1)) for _ in range(12)]
        got = [ours.sample(row) for _ in range(12)]
        assert got == want
    finally:
        L.llama_sampler_free(reference)
        ours.free()


def test_a_pool_of_threads_picks_what_one_thread_picks(
    decoded: tuple[Any, int, np.ndarray, Any],
) -> None:
    _, n_vocab, row, _ = decoded
    rows = [row + np.float32(0.01 * i) * np.arange(n_vocab, dtype=np.float32) for i in range(8)]
    pools = {1: ChainPool(1), 4: ChainPool(4)}
    picks: dict[int, list[list[int]]] = {}
    for threads, pool in pools.items():
        chains = [Chain(PARAMS[i % 3], n_vocab) for i in range(8)]
        picks[threads] = [pool.sample(list(zip(chains, rows, strict=True))) for _ in range(5)]
        for chain in chains:
            chain.free()
        pool.close()
    assert picks[1] == picks[4]
    assert len({tuple(p) for p in picks[1]}) > 1  # the seeded streams do move


def test_min_p_of_one_keeps_only_the_top_token(
    decoded: tuple[Any, int, np.ndarray, Any],
) -> None:
    _, n_vocab, row, _ = decoded
    chain = Chain(SamplingParams(temperature=1.5, seed=9, min_p=1.0), n_vocab)
    try:
        assert [chain.sample(row) for _ in range(5)] == [int(row.argmax())] * 5
    finally:
        chain.free()
