"""engine/sampling.py and selection.py on real logits: a Chain gives every token the
probability llama.cpp's own sampler chain gives it (and greedy chains pick exactly what
`llama_sampler_sample` picks), draws follow those probabilities, and a ChainPool on threads
picks exactly what one thread picks."""

from __future__ import annotations

import ctypes
import random
from collections.abc import Iterator
from typing import Any

import llama_cpp as L
import numpy as np
import pytest

from wai.backends.local.json_schema import schema_grammar
from wai.catalog import embedded_model_path
from wai.engines.llamacpp.gguf import LlamaTokenizer, load_model
from wai.engines.llamacpp.grammar import TOKEN_DATA, grammar_sampler
from wai.engines.llamacpp.params import context_params
from wai.engines.llamacpp.sampling import Chain, ChainPool
from wai.engines.llamacpp.selection import PENALTY_LAST_N
from wai.engines.llamacpp.types import SamplingParams

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
    """A context that has decoded a prompt: (ctx, n_vocab, the last row's logits, tokenizer)."""
    model = load_model(embedded_model_path(), L.llama_model_default_params())
    ctx = L.llama_init_from_model(
        model, context_params(n_ctx=256, n_batch=64, n_seq=1, threads=0, flash_attn=True)
    )
    tok = LlamaTokenizer(model)
    prompt = tok.tokenize("The weather today is", add_special=True, parse_special=False)
    batch = L.llama_batch_get_one((L.llama_token * len(prompt))(*prompt), len(prompt))
    assert L.llama_decode(ctx, batch) == 0
    row = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(tok.n_vocab,)).copy()
    yield ctx, tok.n_vocab, row, tok
    L.llama_free(ctx)
    L.llama_model_free(model)


def llama_chain(p: SamplingParams, n_vocab: int) -> Any:
    """llama.cpp's own chain for these parameters (what wai ran before selection.py): logit
    bias, penalties, then greedy, or top-k, top-p, min-p, temperature and a seeded draw."""
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


def _reference(params: SamplingParams, n_vocab: int, vocab: Any) -> Any:
    """What llama.cpp would run: one chain, with the grammar (if any) first in it."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    if params.grammar:
        L.llama_sampler_chain_add(chain, grammar_sampler(vocab, params.grammar))
    L.llama_sampler_chain_add(chain, llama_chain(params, n_vocab))
    return chain


def _llama_apply(chain: Any, row: np.ndarray) -> tuple[np.ndarray, int]:
    """llama.cpp's chain applied to a candidate array of `row` (not accepted): the candidates
    it keeps (its final draw leaves them with normalised probabilities) and its pick."""
    n_vocab = len(row)
    buf = np.empty(n_vocab, dtype=TOKEN_DATA)
    buf["id"], buf["logit"], buf["p"] = np.arange(n_vocab), row, 0.0
    data = buf.ctypes.data_as(ctypes.POINTER(L.llama_token_data))
    arr = L.llama_token_data_array(data=data, size=n_vocab, selected=-1, sorted=False)
    L.llama_sampler_apply(chain, ctypes.byref(arr))
    return buf[: arr.size].copy(), int(buf["id"][arr.selected])


@pytest.mark.parametrize("params", PARAMS)
def test_a_chain_gives_the_probabilities_llama_cpps_chain_gives(
    decoded: tuple[Any, int, np.ndarray, Any], params: SamplingParams
) -> None:
    """Step after step on varied rows (the penalties' and the grammar's state advancing
    alike): greedy chains, with or without a grammar, pick the very tokens llama.cpp's chain
    picks; sampled ones give the same candidates the same probabilities. llama.cpp sums the
    softmax in float32 (relative error up to 1e-4 over 49,152 tokens), so a top-p nucleus may
    end one token apart; the distributions then differ by less than 1e-3 in total."""
    _, n_vocab, row, tok = decoded
    reference = _reference(params, n_vocab, tok.vocab)
    ours = Chain(params, n_vocab, tok)  # a grammar checked on the pick, then if need be all
    rng = np.random.default_rng(1)
    try:
        for step in range(6):
            shifted = row + rng.normal(0, 1, n_vocab).astype(np.float32) * np.float32(step)
            kept, pick = _llama_apply(reference, shifted)
            if params.temperature <= 0:
                token = ours.sample(shifted)
                assert token == pick
            else:
                want = np.zeros(n_vocab)
                want[kept["id"]] = kept["p"]
                got = ours.selector.distribution(shifted)
                assert len(set(np.flatnonzero(got)) ^ set(kept["id"].tolist())) <= 1
                assert np.abs(got - want).sum() / 2 < 1e-3
                token = ours.sample(shifted)
                assert got[token] > 0
            L.llama_sampler_accept(reference, token)
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


# --- lazy grammars (tool calls with tool_choice "auto") -----------------------------------------

HERMES = 'root ::= "<tool_call>" [ \\n]* "{" [a-z"]+ "}" [ \\n]* "</tool_call>"'


def _wish(n_vocab: int, token: int, runner_up: int | None = None) -> np.ndarray:
    """Logits where greedy picks `token` (and, were it masked, `runner_up`)."""
    row = np.zeros(n_vocab, dtype=np.float32)
    if runner_up is not None:
        row[runner_up] = 9.0
    row[token] = 10.0
    return row


def _ids(vocab: Any, text: str) -> list[int]:
    arr = (L.llama_token * 64)()
    n = L.llama_tokenize(vocab, text.encode(), len(text.encode()), arr, 64, False, True)
    return list(arr[:n])


def _piece(vocab: Any, token: int) -> str:
    buf = (L.ctypes.c_char * 64)()
    n = L.llama_token_to_piece(vocab, token, buf, 64, 0, True)
    return bytes(buf[:n]).decode("utf-8", "replace")


def test_a_lazy_grammar_waits_for_its_trigger(decoded: tuple[Any, int, np.ndarray, Any]) -> None:
    _, n_vocab, _, tok = decoded
    vocab = tok.vocab
    chain = Chain(
        SamplingParams(temperature=0, grammar=HERMES, trigger="(<tool_call>)"), n_vocab, tok
    )
    try:
        for token in _ids(vocab, "Free text, { even braces } and <b>tags</b>."):
            assert chain.sample(_wish(n_vocab, token)) == token  # untouched
        assert chain.grammar is None
    finally:
        chain.free()


def test_a_token_straddling_the_trigger_is_masked_not_fatal(
    decoded: tuple[Any, int, np.ndarray, Any],
) -> None:
    """`<tool_call` then `>,`: the trigger completes inside a token whose rest the grammar
    refuses. llama.cpp's own lazy grammar aborts the process here; the chain picks the
    runner-up instead, and from then on the grammar holds."""
    _, n_vocab, _, tok = decoded
    vocab = tok.vocab
    straddle = next(t for t in range(n_vocab) if _piece(vocab, t) in (">,", ">.", ">>"))
    (close,) = _ids(vocab, ">")
    chain = Chain(
        SamplingParams(temperature=0, grammar=HERMES, trigger="(<tool_call>)"), n_vocab, tok
    )
    try:
        for token in _ids(vocab, "Hi <tool_call"):
            assert chain.sample(_wish(n_vocab, token)) == token
        assert chain.sample(_wish(n_vocab, straddle, runner_up=close)) == close
        assert chain.grammar is not None  # triggered: the call is now held to the grammar
        (word,) = _ids(vocab, "Hello")
        picked = chain.sample(_wish(n_vocab, word, runner_up=_ids(vocab, "{")[0]))
        assert _piece(vocab, picked) != "Hello"  # the grammar refused it
    finally:
        chain.free()


def test_an_anchored_trigger_only_matches_at_the_start(
    decoded: tuple[Any, int, np.ndarray, Any],
) -> None:
    _, n_vocab, _, tok = decoded
    vocab = tok.vocab
    llama3 = 'root ::= "{" [ a-z":]+ "}"'
    trigger = r'\A\s*(\{\s*"name"\s*:)'
    late = Chain(SamplingParams(temperature=0, grammar=llama3, trigger=trigger), n_vocab, tok)
    early = Chain(SamplingParams(temperature=0, grammar=llama3, trigger=trigger), n_vocab, tok)
    try:
        for token in _ids(vocab, 'Sure: {"name":'):
            late.sample(_wish(n_vocab, token))
        assert late.grammar is None
        for token in _ids(vocab, '{"name":'):
            early.sample(_wish(n_vocab, token))
        assert early.grammar is not None
    finally:
        late.free()
        early.free()


@pytest.mark.parametrize("params", PARAMS)
def test_a_verification_gives_the_tokens_plain_steps_give(
    decoded: tuple[Any, int, np.ndarray, Any], params: SamplingParams
) -> None:
    """Speculative decoding's rule: row j sampled as a plain step would be, the drafted token
    accepted when the sample equals it. Seeded chains then give the very tokens of plain steps
    whatever was drafted (so the distribution is kept), greedy ones too."""
    _, n_vocab, row, tok = decoded
    rng = np.random.default_rng(0)
    rows = np.stack([row + rng.normal(0, 2, n_vocab).astype(np.float32) for _ in range(6)])
    plain = Chain(params, n_vocab, tok)
    want = [plain.sample(r) for r in rows]
    plain.free()
    # row j's sample is checked against draft[j]: all right, right then wrong, wrong, none
    drafts = [want[:5], [*want[:2], want[2] + 1], [want[0] + 1, *want[1:4]], []]
    for draft in drafts:
        ours = Chain(params, n_vocab, tok)
        got = ours.verify(rows[: len(draft) + 1], draft)
        ours.free()
        # the accepted drafted tokens, then the plain sample that differed (or the last row's)
        n = next((j for j, d in enumerate(draft) if d != want[j]), len(draft))
        assert got == want[: n + 1]


def test_sampled_verification_keeps_the_distribution_on_a_small_vocabulary() -> None:
    """Over many seeds, the first token a verification gives follows the softmax of its row
    whatever the draft proposes: the rejection-sampling rule for a one-token draft."""
    n_vocab = 8
    logits = np.log(np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.015, 0.005], np.float32))
    rows = np.stack([logits, logits])
    counts = {draft: np.zeros(n_vocab) for draft in (0, 3)}
    trials = 4000
    for seed in range(trials):
        for draft, seen in counts.items():
            chain = Chain(SamplingParams(temperature=1.0, seed=seed), n_vocab)
            seen[chain.verify(rows, [draft])[0]] += 1
            chain.free()
    p = np.exp(logits) / np.exp(logits).sum()
    for seen in counts.values():
        # each frequency within 4 standard errors of its probability
        assert np.all(np.abs(seen / trials - p) < 4 * np.sqrt(p * (1 - p) / trials) + 1e-9)


@pytest.mark.parametrize(
    "params",
    [
        # a repetition penalty of 0 divides the seen tokens' positive logits by zero
        SamplingParams(temperature=0.6, top_p=0.5, min_p=0.5, repetition_penalty=0.0, seed=1),
        SamplingParams(temperature=1.0, top_k=3, repetition_penalty=0.0, seed=2),
        SamplingParams(temperature=0.7, logit_bias=tuple((t, float("-inf")) for t in range(50))),
        SamplingParams(temperature=0.7, top_p=0.9, logit_bias=((3, float("inf")),), seed=3),
    ],
)
def test_extreme_parameters_pick_a_token_and_never_raise(params: SamplingParams) -> None:
    """What the schema allows (a penalty of 0, infinite biases) once crashed an engine with
    an empty candidate list: every pick is a token of the vocabulary."""
    from wai.engines.llamacpp.selection import Selector

    rng = np.random.default_rng(0)
    selector = Selector(params, 50, seed=params.seed or 0)
    for step in range(12):
        logits = rng.standard_normal(50).astype(np.float32) * 3
        token = selector.pick(logits)
        assert 0 <= token < 50
        selector.accept(token)
        assert step >= 0
