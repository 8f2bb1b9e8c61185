"""The batching policy, without a model."""

from __future__ import annotations

import itertools

from wai.engines.llamacpp.prompt_cache import PromptCache
from wai.engines.llamacpp.scheduler import Scheduler, Seq
from wai.engines.llamacpp.types import TokenRequest

CHUNK = 4
_ids = itertools.count(1)  # request ids, as admission gives them


def seq(n_prompt: int, first: int = 1) -> Seq:
    prompt = list(range(first, first + n_prompt))
    return Seq(TokenRequest(prompt, max_tokens=8, request_id=next(_ids)))


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
    running, long_a, long_b = seq(2), seq(10), seq(10, first=101)  # nothing shared
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
        (long_b, [101, 102, 103, 104], 0, False),
    ]
    long_a.n_past = long_b.n_past = 8
    assert plan_of(s)[1:] == [(long_a, [9, 10], 8, True), (long_b, [109, 110], 8, True)]


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


# -- the prompt cache: cuts at message ends, copies between slots, the RAM cache, followers --

END = 2  # an end-of-turn token


def chat_seq(system: list[int], user: list[int], **kw: object) -> Seq:
    request = TokenRequest([*system, END, *user], max_tokens=8, request_id=next(_ids))
    for k, v in kw.items():
        setattr(request, k, v)
    return Seq(request)


def cached_scheduler(n_slots: int, cache: PromptCache | None = None, chunk: int = 32) -> Scheduler:
    return Scheduler(
        n_slots=n_slots, token_budget=256, chunk=chunk, marks=frozenset({END}), cache=cache
    )


SYSTEM = list(range(100, 151))  # 51 tokens and the end-of-turn: a cut at 52


def test_a_system_prompt_ends_a_chunk_and_is_reused_whole() -> None:
    s = cached_scheduler(1)
    first = chat_seq(SYSTEM, [5] * 20)
    s.add(first)
    s.admit()
    # computed in chunks that end at the system prompt's end: 0-32, 32-52, 52-72
    assert [len(w.tokens) for w in s.schedule()] == [32]
    first.n_past = 32
    assert [(w.start, len(w.tokens)) for w in s.schedule()] == [(32, 20)]
    first.n_past = len(first.request.prompt_tokens)
    s.remove(first)
    second = chat_seq(SYSTEM, [6] * 20)
    s.add(second)
    s.admit()
    assert second.cached == 52 and second.reuse is not None and second.reuse.kind == "slot"


def test_a_prefix_in_another_slot_is_copied() -> None:
    s = cached_scheduler(2)
    running = chat_seq(SYSTEM, [5] * 20)
    s.add(running)
    s.admit()
    running.n_past = 72  # its prompt is computed; it is decoding
    running.generated = [9]
    new = chat_seq(SYSTEM, [6] * 20)
    s.add(new)
    s.admit()
    assert new.slot == 1 and new.cached == 52
    assert new.reuse is not None and (new.reuse.kind, new.reuse.source) == ("copy", 0)
    assert new.leader is None


def test_a_prefix_from_the_ram_cache_and_what_a_slot_loses_goes_there() -> None:
    cache = PromptCache(limit=1 << 20)
    s = cached_scheduler(1, cache)
    cache.put([*SYSTEM, END, 5, 5], bytearray(10))
    new = chat_seq(SYSTEM, [6] * 80)
    s.add(new)
    s.admit()
    assert new.reuse is not None and new.reuse.kind == "ram" and new.cached == 52
    assert new.evicts == ()  # the slot held nothing
    new.n_past = 132
    s.remove(new)
    other = Seq(TokenRequest(list(range(500, 600)), max_tokens=8, request_id=next(_ids)))
    s.add(other)
    s.admit()
    # nothing shared: the slot's 132 tokens would be lost, 80 of them held nowhere else, so the
    # engine keeps them in RAM
    assert other.reuse is not None and other.reuse.tokens == 0
    assert list(other.evicts) == [*SYSTEM, END, *[6] * 80]


def test_a_short_loss_or_one_the_ram_cache_covers_is_not_kept_again() -> None:
    cache = PromptCache(limit=1 << 20)
    s = cached_scheduler(1, cache)
    first = chat_seq(SYSTEM, [5] * 90)
    s.add(first)
    s.admit()
    first.n_past = len(first.request.prompt_tokens)
    s.remove(first)
    cache.put(first.request.prompt_tokens, bytearray(10))
    second = chat_seq(SYSTEM, [6] * 20)  # keeps the system prompt, loses the rest
    s.add(second)
    s.admit()
    assert second.evicts == ()  # already in RAM
    second.n_past = len(second.request.prompt_tokens)
    s.remove(second)
    third = chat_seq(SYSTEM, [7] * 20)
    s.add(third)
    s.admit()
    assert third.cached == 52 and third.evicts == ()  # loses 20 tokens: not worth a copy
    third.n_past = len(third.request.prompt_tokens)
    s.remove(third)
    unrelated = Seq(TokenRequest(list(range(500, 600)), max_tokens=8, request_id=next(_ids)))
    s.add(unrelated)
    s.admit()
    # loses all 72 tokens, but RAM holds the system prompt: the 20 others are not worth a copy
    assert unrelated.evicts == ()
    unrelated.n_past = 100
    s.remove(unrelated)
    other_tenant = chat_seq(SYSTEM, [8] * 90)
    s.add(other_tenant)
    s.admit()
    assert other_tenant.evicts == list(range(500, 600))  # nothing of it in RAM: kept


def test_requests_sharing_a_prefix_being_computed_follow_the_first() -> None:
    s = cached_scheduler(3)
    leader = chat_seq(SYSTEM, [5] * 20)
    s.add(leader)
    s.admit()
    followers = [chat_seq(SYSTEM, [6 + k] * 20) for k in range(2)]
    for f in followers:
        s.add(f)
    s.admit()
    assert all(f.leader is leader and f.follow_to == 52 and f.n_past == 0 for f in followers)
    # only the leader computes; the followers wait
    assert [w.seq for w in s.schedule()] == [leader]
    leader.n_past = 32
    assert s.caught_up() == []
    leader.n_past = 52
    assert s.caught_up() == followers
    for f in followers:
        assert f.reuse is not None and (f.reuse.kind, f.reuse.source) == ("copy", leader.slot)
        assert f.cached == f.n_past == 52 and f.leader is None
    assert {w.seq for w in s.schedule()} == {leader, *followers}


def test_a_follower_whose_leader_goes_takes_what_is_best_now() -> None:
    s = cached_scheduler(2)
    leader = chat_seq(SYSTEM, [5] * 20)
    s.add(leader)
    s.admit()
    follower = chat_seq(SYSTEM, [6] * 20)
    s.add(follower)
    s.admit()
    assert follower.leader is leader
    leader.n_past = 32
    s.remove(leader)  # cancelled with 32 tokens computed: its slot keeps them
    assert s.caught_up() == [follower]
    assert follower.reuse is not None and follower.reuse.kind == "copy"
    assert follower.cached == 32 and follower.leader is None


def test_an_interactive_request_never_follows_a_background_one() -> None:
    s = cached_scheduler(2)
    queued = chat_seq(SYSTEM, [5] * 20, background=True)
    s.add(queued)
    s.admit()
    interactive = chat_seq(SYSTEM, [6] * 20)
    s.add(interactive)
    s.admit()
    assert interactive.leader is None and interactive.n_past == 0


def test_a_session_gets_its_own_slot_back_and_keeps_it_longest() -> None:
    s = cached_scheduler(3)
    a = chat_seq(SYSTEM, [5] * 20, session="alice")
    s.add(a)
    s.admit()
    a.n_past = len(a.request.prompt_tokens)
    s.remove(a)
    b = Seq(TokenRequest(list(range(500, 560)), max_tokens=8, request_id=next(_ids)))
    s.add(b)
    s.admit()
    assert b.slot != a.slot  # an unrelated request leaves the session's slot alone
    s.remove(b)
    again = chat_seq([1] * 60, [5] * 20, session="alice")  # a new conversation, same session
    s.add(again)
    s.admit()
    assert again.slot == a.slot


def test_an_exact_repeat_of_a_slots_last_prompt_computes_nothing() -> None:
    s = cached_scheduler(1)
    first = chat_seq(SYSTEM, [5] * 20)
    s.add(first)
    s.admit()
    first.n_past, first.generated = len(first.request.prompt_tokens) + 1, [9, 9]
    s.remove(first)
    assert s.whole == [True]
    again = chat_seq(SYSTEM, [5] * 20)
    s.add(again)
    s.admit()
    # all of it: the engine samples the first token from the logits it kept
    assert again.cached == len(again.request.prompt_tokens) and not again.prefilling
    again.generated = [9]
    assert plan_of(s) == [(again, [9], again.cached, True)]
    s.remove(again)
    cancelled = chat_seq(SYSTEM, [5] * 20)
    s.add(cancelled)
    s.admit()
    s.remove(cancelled)  # left before its first token: nothing kept beyond its prompt
    assert s.whole == [False]


def test_running_sequences_keep_to_consecutive_slots() -> None:
    # slots 0-2 run, slot 4 holds the newcomer's prefix: it goes to slot 3 (one run of
    # consecutive KV streams, one ubatch) and copies the prefix from slot 4
    s = Scheduler(n_slots=6, token_budget=64, chunk=CHUNK)
    cached = seq(9, first=500)
    running = [seq(3, first=100 * i) for i in range(1, 5)]
    for x in [*running, cached]:
        s.add(x)
    s.admit()
    assert [x.slot for x in [*running, cached]] == [0, 1, 2, 3, 4]
    cached.n_past = 9
    s.remove(cached)
    s.remove(running[3])
    newcomer = seq(9, first=500)
    s.add(newcomer)
    s.admit()
    assert newcomer.slot == 3
    assert newcomer.reuse is not None
    assert (newcomer.reuse.kind, newcomer.reuse.source, newcomer.cached) == ("copy", 4, 8)
    # with nothing running, any slot keeps them consecutive: the one holding the prefix wins
    for x in [*running[:3], newcomer]:
        s.remove(x)
    again = seq(9, first=500)
    s.add(again)
    s.admit()
    assert again.reuse is not None and (again.slot, again.reuse.kind) == (4, "slot")


def test_short_pieces_of_a_prompt_are_computed_in_one_call_where_rows_are_alone() -> None:
    # ends of messages (99) cut the prompt at 10 and 20; rows computed alone up to 15 or 63
    prompt = [*range(1, 10), 99, *range(11, 20), 99, *range(21, 31)]

    def chunks(alone_rows: int) -> list[tuple[int, int]]:
        s = Scheduler(
            n_slots=1, token_budget=256, chunk=128, marks=frozenset({99}), alone_rows=alone_rows
        )
        seq = Seq(TokenRequest(prompt, max_tokens=4, request_id=1))
        s.add(seq)
        s.admit()
        out = []
        while seq.prefilling:
            (work,) = s.schedule()
            out.append((work.start, work.start + len(work.tokens)))
            seq.n_past = out[-1][1]
        return out

    assert chunks(0) == [(0, 10), (10, 20), (20, 30)]  # the cuts, one call each
    assert chunks(63) == [(0, 30)]
    assert chunks(15) == [(0, 10), (10, 20), (20, 30)]  # two pieces would make 20 rows
    assert chunks(25) == [(0, 20), (20, 30)]
