"""The batching policy, without a model."""

from __future__ import annotations

import itertools

from wai.engine.scheduler import Scheduler, Seq
from wai.engine.types import TokenRequest

CHUNK = 4
_ids = itertools.count(1)  # request ids, as admission gives them


def seq(n_prompt: int) -> Seq:
    return Seq(TokenRequest(list(range(1, n_prompt + 1)), max_tokens=8, request_id=next(_ids)))


def plan_of(s: Scheduler) -> list[tuple[Seq, list[int], int, bool]]:
    return [(w.seq, w.tokens, w.start, w.logits) for w in s.schedule()]


def test_admits_into_free_slots_in_order() -> None:
    s = Scheduler(n_slots=2, token_budget=64, chunk=CHUNK)
    a, b, c = seq(3), seq(3), seq(3)
    for x in (a, b, c):
        s.add(x)
    assert s.admit() == [a, b]
    assert (a.slot, b.slot) == (0, 1)
    assert list(s.waiting) == [c]


def test_decode_rows_first_then_aligned_prompt_chunks_under_the_budget() -> None:
    s = Scheduler(n_slots=3, token_budget=9, chunk=CHUNK)
    running, long_a, long_b = seq(2), seq(10), seq(10)
    s.add(running)
    s.admit()
    running.n_past, running.generated = 2, [42]
    s.add(long_a)
    s.add(long_b)
    s.admit()
    plan = s.schedule()
    # the decode row feeds back the generated token; the others are prompt chunks
    assert (plan[0].seq, plan[0].tokens) == (running, [42])
    assert all(w.start < len(w.seq.request.prompt_tokens) for w in plan[1:])
    # one chunk per sequence per step: 1 decode row + 4 + 4 = 9
    assert plan_of(s) == [
        (running, [42], 2, True),
        (long_a, [1, 2, 3, 4], 0, False),
        (long_b, [1, 2, 3, 4], 0, False),
    ]
    long_a.n_past = long_b.n_past = 8
    assert plan_of(s)[1:] == [(long_a, [9, 10], 8, True), (long_b, [9, 10], 8, True)]


def test_a_chunk_that_does_not_fit_waits_for_the_next_step() -> None:
    s = Scheduler(n_slots=2, token_budget=6, chunk=CHUNK)
    a, b = seq(8), seq(8)
    s.add(a)
    s.add(b)
    s.admit()
    assert [(x.seq, len(x.tokens)) for x in s.schedule()] == [(a, 4)]


def test_remove_frees_the_slot_for_the_next_waiting_sequence() -> None:
    s = Scheduler(n_slots=1, token_budget=16, chunk=CHUNK)
    a, b = seq(2), seq(2)
    s.add(a)
    s.add(b)
    s.admit()
    assert s.find(a.id) is a
    s.remove(a)
    assert s.slots == [None]
    assert s.admit() == [b] and b.slot == 0
    assert s.find(12345) is None


def test_remove_a_waiting_sequence() -> None:
    s = Scheduler(n_slots=1, token_budget=16, chunk=CHUNK)
    a, b = seq(2), seq(2)
    s.add(a)
    s.add(b)
    s.admit()
    assert s.find(b.id) is b
    s.remove(b)
    assert not s.waiting and s.running == [a]


def test_prefix_cache_picks_the_longest_shared_prefix_cut_at_a_chunk_boundary() -> None:
    s = Scheduler(n_slots=3, token_budget=64, chunk=CHUNK)
    s.slot_cache = [[1, 2, 9], list(range(1, 8)), []]
    new = Seq(TokenRequest([1, 2, 3, 4, 5, 6, 70, 80], max_tokens=4, request_id=next(_ids)))
    s.add(new)
    s.admit()
    assert new.slot == 1 and new.cached == 4 and new.n_past == 4  # 6 shared, cut to 4
    assert plan_of(s) == [(new, [5, 6, 70, 80], 4, True)]


def test_the_last_prompt_token_is_always_recomputed() -> None:
    s = Scheduler(n_slots=1, token_budget=64, chunk=CHUNK)
    s.slot_cache = [list(range(1, 10))]
    new = seq(8)
    s.add(new)
    s.admit()
    assert new.cached == 4  # 8 shared, at most 7 usable, cut to 4
    assert plan_of(s) == [(new, [5, 6, 7, 8], 4, True)]


def test_remove_records_only_prompt_kv() -> None:
    s = Scheduler(n_slots=1, token_budget=64, chunk=CHUNK)
    a = seq(3)
    s.add(a)
    s.admit()
    a.n_past, a.generated = 5, [10, 11, 12]  # prompt + 2 fed samples
    s.remove(a)
    assert s.slot_cache == [[1, 2, 3]]
    b = seq(3)
    s.add(b)
    s.admit()
    s.remove(b, keep_cache=False)
    assert s.slot_cache == [[]]


def test_an_unrelated_prompt_takes_the_least_recently_used_slot() -> None:
    s = Scheduler(n_slots=2, token_budget=64, chunk=CHUNK)
    a, b = seq(2), seq(2)
    s.add(a)
    s.add(b)
    s.admit()
    s.remove(a)  # slot 0, used first
    s.remove(b)  # slot 1
    c = Seq(TokenRequest([99], max_tokens=1, request_id=next(_ids)))
    s.add(c)
    s.admit()
    assert c.slot == 0


def bg(n_prompt: int) -> Seq:
    """A queued batch's item (background priority)."""
    request = TokenRequest(list(range(1, n_prompt + 1)), max_tokens=8, request_id=next(_ids))
    request.background = True
    return Seq(request)


def test_interactive_requests_are_admitted_before_background_ones() -> None:
    s = Scheduler(n_slots=1, token_budget=64, chunk=CHUNK)
    queued, interactive = bg(3), seq(3)
    s.add(queued)
    s.add(interactive)
    assert s.admit() == [interactive]
    assert list(s.waiting) == [queued]


def test_an_interactive_request_preempts_the_newest_background_sequence() -> None:
    s = Scheduler(n_slots=2, token_budget=64, chunk=CHUNK)
    old, new = bg(3), bg(3)
    for x in (old, new):
        s.add(x)
        s.admit()
    interactive = seq(3)
    s.add(interactive)
    assert s.preempt() == [new]  # the most recently admitted: the least work lost
    assert s.admit() == [interactive]
    assert interactive.slot == new.slot
    assert s.running == [old, interactive]


def test_no_preemption_while_a_slot_is_free_or_nothing_interactive_waits() -> None:
    s = Scheduler(n_slots=2, token_budget=64, chunk=CHUNK)
    running = bg(3)
    s.add(running)
    s.admit()
    assert s.preempt() == []  # nothing waits
    s.add(seq(3))
    assert s.preempt() == []  # a slot is free
    s.admit()
    s.add(bg(3))
    assert s.preempt() == []  # only background waits
    s.add(seq(3))
    victims = s.preempt()
    assert victims == [running]  # the interactive one running is never taken


def test_background_work_sits_out_steps_that_compute_an_interactive_prompt() -> None:
    s = Scheduler(n_slots=3, token_budget=64, chunk=CHUNK)
    decoding, prefilling = bg(2), bg(6)
    for x in (decoding, prefilling):
        s.add(x)
    s.admit()
    decoding.n_past, decoding.generated = 2, [7]
    interactive = seq(5)
    s.add(interactive)
    s.admit()
    assert [w.seq for w in s.schedule()] == [interactive]
    interactive.n_past = 5  # its prompt is in: background work comes back
    interactive.generated = [9]
    assert {w.seq for w in s.schedule()} == {interactive, decoding, prefilling}


def test_where_background_does_not_share_steps_it_waits_out_interactive_decoding() -> None:
    s = Scheduler(n_slots=2, token_budget=64, chunk=CHUNK, background_shares_steps=False)
    queued, interactive = bg(2), seq(2)
    for x in (queued, interactive):
        s.add(x)
    s.admit()
    for x, tok in ((queued, 7), (interactive, 9)):
        x.n_past, x.generated = 2, [tok]
    assert [w.seq for w in s.schedule()] == [interactive]  # decoding only: still alone
    s.remove(interactive)
    assert [w.seq for w in s.schedule()] == [queued]  # no interactive work: its turn
