"""engine/selection.py against plain reference computations: top-k and top-p keep what a full
sort keeps (whatever the shape of the row: peaked, flat, masked, tied), the whole-vocabulary
draw follows the softmax across its blocks, penalties follow llama.cpp's formula."""

from __future__ import annotations

import numpy as np
import pytest

from wai.engines.llamacpp.selection import BLOCK, PENALTY_LAST_N, Selector, _top_k, _top_p
from wai.engines.llamacpp.types import SamplingParams


def rows() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    peaked = (rng.standard_normal(5000) * 2).astype(np.float32)
    peaked[:3] += 15
    flat = (rng.standard_normal(5000) * 0.3).astype(np.float32)
    masked = (rng.standard_normal(5000) * 3).astype(np.float32)
    masked[rng.random(5000) < 0.99] = -np.inf  # a grammar's mask: few tokens left
    tied = np.repeat(np.float32([3.0, 1.0, 0.0]), [30, 300, 4670])
    return [peaked, flat, masked, tied]


@pytest.mark.parametrize("k", [1, 5, 40, 50])
def test_top_k_keeps_the_k_largest_logits(k: int) -> None:
    for x in rows():
        got = _top_k(x, k)
        assert len(got) == len(set(got.tolist())) == k
        # the k-th largest value bounds both sets (ties may pick either equal token)
        assert np.sort(x[got])[::-1].tolist() == np.sort(x)[::-1][:k].tolist()


@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.95, 0.999])
def test_top_p_keeps_the_smallest_set_that_reaches_the_mass(top_p: float) -> None:
    for x in rows():
        got = _top_p(x, top_p)
        rel = np.exp(x.astype(np.float64) - x.max())
        want = np.searchsorted(np.cumsum(np.sort(rel)[::-1]), top_p * rel.sum()) + 1
        assert len(got) == min(want, len(x))
        assert len(set(got.tolist())) == len(got)
        # the kept tokens are the most likely ones
        assert rel[got].min() >= np.sort(rel)[::-1][len(got) - 1]


def test_a_draw_over_many_blocks_follows_the_softmax() -> None:
    n = 3 * BLOCK + 88  # four blocks, the last one partial
    likely = [0, BLOCK - 1, BLOCK, 2 * BLOCK + 7, n - 1]
    probs = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    x = np.full(n, -np.inf, dtype=np.float32)
    x[likely] = np.log(probs)
    selector = Selector(SamplingParams(temperature=1.0), n, seed=3)
    trials = 4000
    seen = np.bincount([selector.pick(x) for _ in range(trials)], minlength=n)
    assert set(np.flatnonzero(seen)) <= set(likely)
    freq = seen[likely] / trials
    assert np.all(np.abs(freq - probs) < 4 * np.sqrt(probs * (1 - probs) / trials))


def test_the_same_seed_draws_the_same_tokens() -> None:
    x = rows()[1]
    params = SamplingParams(temperature=0.8, top_p=0.9, seed=11)
    a, b = Selector(params, len(x), 11), Selector(params, len(x), 11)
    assert [a.pick(x) for _ in range(20)] == [b.pick(x) for _ in range(20)]
    assert len({a.pick(x) for _ in range(20)}) > 1


def test_penalties_follow_llama_cpps_formula_over_the_last_tokens() -> None:
    x = np.float32([2.0, -1.0, 0.5, 3.0])
    params = SamplingParams(
        temperature=0, repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25
    )
    s = Selector(params, 4, seed=0)
    for token in (0, 1, 1):
        s.accept(token)
    # positive logits divided, others multiplied; count * frequency + presence subtracted
    assert s.shaped(x).tolist() == [2.0 / 2 - 0.75, -1.0 * 2 - 1.25, 0.5, 3.0]
    for _ in range(PENALTY_LAST_N):
        s.accept(3)  # 0 and 1 leave the window
    assert s.shaped(x).tolist() == [2.0, -1.0, 0.5, 3.0 / 2 - PENALTY_LAST_N * 0.5 - 0.25]
