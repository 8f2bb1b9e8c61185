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
