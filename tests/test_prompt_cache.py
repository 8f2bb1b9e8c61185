"""prompt_cache.py: where prompts are cut, and the RAM cache's bookkeeping, without a model."""

from __future__ import annotations

import random

from wai.engines.llamacpp.prompt_cache import (
    MIN_PIECE,
    Cuts,
    PromptCache,
    common_prefix,
    last_cut,
    reusable,
)

END = 2  # an end-of-turn token


def test_cuts_at_multiples_of_the_chunk_and_after_each_end_of_turn() -> None:
    cuts = Cuts(128, frozenset({END}))
    prompt = [5] * 300
    prompt[40] = END  # a system message of 41 tokens
    prompt[45] = END  # a short message: within MIN_PIECE of the cut at 41
    prompt[200] = END
    assert cuts.positions(prompt) == [41, 128, 201, 256]
    assert cuts.next(prompt, 0) == 41
    assert cuts.next(prompt, 256) == 300  # the prompt's end closes the last chunk
    assert Cuts(128).positions(prompt) == [128, 256]  # no marks: fixed multiples only
    assert MIN_PIECE > 45 - 41


def test_cuts_up_to_a_position_depend_on_the_tokens_before_it_alone() -> None:
    rng = random.Random(7)
    cuts = Cuts(16, frozenset({END}))
    for _ in range(200):
        shared = [rng.choice([END, 3, 4, 5]) for _ in range(rng.randrange(1, 120))]
        a = shared + [rng.choice([END, 3]) for _ in range(rng.randrange(0, 60))]
        b = shared + [rng.choice([END, 4]) for _ in range(rng.randrange(0, 60))]
        p = len(shared)
        assert [c for c in cuts.positions(a) if c <= p] == [c for c in cuts.positions(b) if c <= p]


def test_reuse_stops_at_the_last_cut_and_always_leaves_the_last_token() -> None:
    cuts = Cuts(32, frozenset({END}))
    system = [7] * 19 + [END]  # ends a chunk at 20
    prompt = system + [1] * 30 + [END, 4]  # the user turn's end: a cut at 51
    positions = cuts.positions(prompt)
    assert positions == [20, 32, 51]
    assert reusable(prompt, positions, [*system, 9, 9]) == 20  # the whole system message
    assert reusable(prompt, positions, prompt) == 51  # all but the last token's chunk
    assert reusable(prompt, positions, prompt[:45]) == 32
    assert reusable(prompt, positions, [7] * 12) == 0
    assert reusable(prompt, positions, [8]) == 0
    assert last_cut(positions, 50) == 32 and last_cut(positions, 19) == 0


def test_common_prefix() -> None:
    a = list(range(300))
    assert common_prefix(a, a) == 300
    assert common_prefix(a, (*a[:200], -1)) == 200
    assert common_prefix(a[:70], a) == 70
    assert common_prefix([], a) == 0 and common_prefix([1], [2]) == 0


def state(n: int) -> bytearray:
    return bytearray(n)


def test_the_ram_cache_evicts_the_least_recently_used_under_its_byte_limit() -> None:
    cache = PromptCache(limit=1000)
    a = cache.put([1, 1, 1], state(400))
    b = cache.put([2, 2, 2], state(400))
    assert a is not None and b is not None
    assert cache.bytes == 800 and len(cache) == 2
    assert cache.get(a) is not None  # a is now the most recent
    c = cache.put([3, 3, 3], state(400))
    assert c is not None
    assert cache.get(b) is None  # b was the least recently used
    assert cache.bytes == 800 and cache.evicted == 1
    assert cache.put([4], state(1001)) is None  # can never fit
    assert cache.bytes <= cache.limit


def test_an_entry_that_extends_another_replaces_it() -> None:
    cache = PromptCache(limit=10_000)
    short = cache.put([1, 2, 3], state(100))
    assert short is not None
    longer = cache.put([1, 2, 3, 4, 5], state(200))
    assert cache.get(short) is None and len(cache) == 1 and cache.bytes == 200
    assert cache.covered([1, 2, 3]) == 3 and cache.covered([1, 2, 3, 4, 5]) == 5
    assert cache.covered([1, 2, 3, 4, 5, 6]) == 5 and cache.covered([2]) == 0
    assert longer is not None


def test_the_longest_entry_for_a_prompt() -> None:
    cache = PromptCache(limit=10_000)
    cuts = Cuts(4)
    cache.put([1, 2, 3, 4, 5, 6], state(10))
    best = cache.put([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], state(10))
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    entry, n = cache.longest(prompt, cuts.positions(prompt))
    assert entry is best and n == 8  # 9 shared, cut at 8
    assert cache.longest([5, 5, 5], cuts.positions([5, 5, 5])) == (None, 0)
    assert PromptCache(limit=0).put([1], state(1)) is None  # off
