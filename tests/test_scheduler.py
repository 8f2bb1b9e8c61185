"""The batching policy, without a model."""

from __future__ import annotations

from wai.engine.base import GenerationRequest
from wai.engine.scheduler import Scheduler, Sequence


def seq(n_prompt: int) -> Sequence:
    return Sequence(GenerationRequest(list(range(1, n_prompt + 1)), max_tokens=8), emit=print)


def test_admits_into_free_slots_in_order() -> None:
    s = Scheduler(n_slots=2, token_budget=64)
    a, b, c = seq(3), seq(3), seq(3)
    for x in (a, b, c):
        s.add(x)
    assert s.admit() == [a, b]
    assert (a.slot, b.slot) == (0, 1)
    assert list(s.waiting) == [c]


def test_decode_tokens_first_then_prefill_chunks_under_the_budget() -> None:
    s = Scheduler(n_slots=3, token_budget=8)
    running, long_a, long_b = seq(2), seq(10), seq(10)
    s.add(running)
    s.admit()
    running.n_past, running.generated = 2, [42]
    s.add(long_a)
    s.add(long_b)
    s.admit()
    plan = s.schedule()
    assert [(w.seq, w.tokens, w.start, w.logits) for w in plan] == [
        (running, [42], 2, True),
        (long_a, list(range(1, 8)), 0, False),  # 7 = budget 8 minus the decode token
    ]
    long_a.n_past = 7
    plan = s.schedule()
    assert [(w.seq, len(w.tokens), w.logits) for w in plan] == [
        (running, 1, True), (long_a, 3, True), (long_b, 4, False)
    ]


def test_remove_frees_the_slot_for_the_next_waiting_sequence() -> None:
    s = Scheduler(n_slots=1, token_budget=16)
    a, b = seq(2), seq(2)
    s.add(a)
    s.add(b)
    s.admit()
    assert s.remove(a.id) is a
    assert s.slots == [None]
    assert s.admit() == [b] and b.slot == 0
    assert s.remove(12345) is None


def test_remove_a_waiting_sequence() -> None:
    s = Scheduler(n_slots=1, token_budget=16)
    a, b = seq(2), seq(2)
    s.add(a)
    s.add(b)
    s.admit()
    assert s.remove(b.id) is b
    assert not s.waiting and s.running == [a]


def test_prefix_cache_picks_the_slot_with_the_longest_shared_prefix() -> None:
    s = Scheduler(n_slots=3, token_budget=64)
    s.slot_cache = [[1, 2, 9], [1, 2, 3, 4, 5], []]
    new = Sequence(GenerationRequest([1, 2, 3, 4, 7, 8], max_tokens=4), emit=print)
    s.add(new)
    s.admit()
    assert new.slot == 1 and new.cached == 4 and new.n_past == 4
    plan = s.schedule()
    assert [(w.tokens, w.start) for w in plan] == [([7, 8], 4)]


def test_the_last_two_prompt_tokens_are_always_recomputed() -> None:
    s = Scheduler(n_slots=1, token_budget=64)
    s.slot_cache = [[1, 2, 3, 4]]
    new = Sequence(GenerationRequest([1, 2, 3], max_tokens=4), emit=print)
    s.add(new)
    s.admit()
    assert new.cached == 1
    assert [(w.tokens, w.start, w.logits) for w in s.schedule()] == [([2, 3], 1, True)]


def test_prefill_never_makes_a_one_token_chunk() -> None:
    s = Scheduler(n_slots=2, token_budget=4)
    a = seq(5)
    s.add(a)
    s.admit()
    # 5 tokens, budget 4: 4 + 1 would leave a lone row, so 3 + 2
    assert [len(w.tokens) for w in s.schedule()] == [3]
    a.n_past = 3
    assert [len(w.tokens) for w in s.schedule()] == [2]
    # a one-token prompt is the exception: it can only be one row
    b = Sequence(GenerationRequest([7], max_tokens=1), emit=print)
    s.add(b)
    s.admit()
    assert [len(w.tokens) for w in s.schedule() if w.seq is b] == [1]


def test_retire_records_what_the_kv_holds() -> None:
    s = Scheduler(n_slots=1, token_budget=64)
    a = seq(3)
    s.add(a)
    s.admit()
    a.n_past, a.generated = 5, [10, 11, 12]  # prompt + 2 fed samples
    s.retire(a)
    assert s.slot_cache == [[1, 2, 3]]  # only prompt KV is reusable
    b = seq(3)
    s.add(b)
    s.admit()
    s.retire(b, keep_cache=False)
    assert s.slot_cache == [[]]


def test_an_unrelated_prompt_takes_the_least_recently_used_slot() -> None:
    s = Scheduler(n_slots=2, token_budget=64)
    a, b = seq(2), seq(2)
    s.add(a)
    s.add(b)
    s.admit()
    s.retire(a)  # slot 0, used first
    s.retire(b)  # slot 1
    c = Sequence(GenerationRequest([99], max_tokens=1), emit=print)
    s.add(c)
    s.admit()
    assert c.slot == 0
