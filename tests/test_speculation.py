"""Speculative decoding's policy, without a model: drafts, acceptance, costs, lengths."""

from __future__ import annotations

import pytest

from wai.engines.llamacpp.scheduler import Scheduler, Seq
from wai.engines.llamacpp.speculation import (
    Acceptance,
    Ngrams,
    StepCosts,
    expected_tokens,
    prior,
    verify_length,
)
from wai.engines.llamacpp.types import TokenRequest

# a machine where a row costs little next to a pass over the weights (a GPU)
FLAT = StepCosts({1: 0.010, 2: 0.0101, 4: 0.0103, 8: 0.0106, 16: 0.0112, 32: 0.0125})
# this project's 2-core CPU: two rows cost twice one (measured with SmolLM2-135M)
DEAR = StepCosts({1: 0.0086, 2: 0.0168, 4: 0.0202, 8: 0.0292, 16: 0.0473})


def test_ngrams_drafts_what_followed_the_latest_earlier_occurrence() -> None:
    ngrams = Ngrams([1, 2, 3, 4, 5, 6, 9, 9, 1, 2, 3, 7, 8])
    ngrams.extend([1, 2])
    assert ngrams.draft(4) == []  # "8 1 2" never occurred before
    ngrams.extend([3])
    assert ngrams.draft(4) == [7, 8, 1, 2]  # the latest "1 2 3" is followed by 7 8
    assert ngrams.matched == 3  # "9 1 2 3" against "8 1 2 3"
    assert ngrams.draft(1) == [7]
    ngrams.extend([7, 8, 1, 2, 3])
    assert ngrams.draft(16) == [7, 8, 1, 2, 3]  # up to the end of what is known
    assert Ngrams([1, 2]).draft(4) == []
    assert ngrams.draft(0) == []


def test_acceptance_learns_from_verifications_and_fades_back_towards_the_prior() -> None:
    a = Acceptance()
    prior = a.rate()
    assert 0.5 < prior < 1.0
    a.update(drafted=8, accepted=8)
    assert a.rate() > prior
    b = Acceptance()
    for _ in range(5):
        b.update(drafted=4, accepted=0)
    low = b.rate()
    assert low < 0.4
    for _ in range(50):
        b.fade()
    assert low < b.rate() < prior


def test_a_longer_match_is_guessed_to_be_accepted_more() -> None:
    quote = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    ngrams = Ngrams([1, *quote, 2])
    ngrams.extend(quote[:8])  # the sequence quotes its prompt: 8 tokens match
    assert ngrams.draft(4) == [13, 14, 2, 5]  # then what the sequence has quoted so far
    assert ngrams.matched == 8
    assert prior(3) == 0.5 < prior(5) == 0.75 < prior(8) < prior(32) < 1.0
    assert prior(0) == 0.75  # a draft model's: nothing known
    assert Acceptance().rate(prior(3)) == 0.5  # no drafts yet: the guess


def test_expected_tokens() -> None:
    assert expected_tokens(0, 0.5) == 1.0
    assert expected_tokens(4, 1.0) == 5.0
    assert expected_tokens(3, 0.0) == 1.0
    assert expected_tokens(2, 0.5) == pytest.approx(1.75)


def test_step_costs_interpolate_extrapolate_and_follow_what_is_observed() -> None:
    c = StepCosts({1: 1.0, 4: 4.0, 8: 6.0})
    assert c.time(4) == 4.0
    assert c.time(2) == pytest.approx(2.0)
    assert c.time(6) == pytest.approx(5.0)
    assert c.time(12) == pytest.approx(8.0)  # the last two's slope
    c.observe(4, 9.0)
    assert 4.0 < c.time(4) < 9.0
    c.observe(3, 3.5)  # a size never timed: taken as measured
    assert c.time(3) == 3.5
    assert StepCosts({2: 2.0}).time(4) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        StepCosts({})


def test_cheap_rows_verify_long_drafts_dear_rows_only_what_acceptance_pays() -> None:
    good, poor = (16, 0.95), (16, 0.3)
    assert verify_length([good], 1, FLAT, padded=True, room=64) == 16
    assert verify_length([good], 1, DEAR, padded=True, room=64) >= 8
    assert verify_length([poor], 1, DEAR, padded=True, room=64) == 0
    assert verify_length([poor], 1, FLAT, padded=True, room=64) > 0
    # nothing drafted, or no room in the step
    assert verify_length([], 4, FLAT, padded=True, room=64) == 0
    assert verify_length([good], 1, FLAT, padded=True, room=0) == 0
    assert verify_length([(2, 0.95)], 1, FLAT, padded=True, room=64) == 2  # what there is


def test_padding_makes_one_drafting_sequence_among_many_costly() -> None:
    # 8 sequences decode, one has a good draft: padded, every sequence computes its length
    alone = [(8, 0.9)]
    assert verify_length(alone, 8, DEAR, padded=True, room=512) == 0
    assert verify_length(alone, 8, DEAR, padded=False, room=512) > 0
    assert verify_length(alone * 8, 8, FLAT, padded=True, room=512) == 8


def _decoding(s: Scheduler, prompt: list[int], generated: list[int], max_tokens: int = 64) -> Seq:
    seq = Seq(TokenRequest(prompt, max_tokens=max_tokens, request_id=len(s.running) + 1))
    s.add(seq)
    s.admit()
    seq.n_past = len(prompt) + len(generated) - 1
    seq.generated = list(generated)
    return seq


def test_the_scheduler_adds_drafts_to_decode_works_and_pads_the_others() -> None:
    s = Scheduler(n_slots=2, token_budget=64, chunk=8, costs=FLAT, draft_max=4)
    quoting = _decoding(s, [5, 6, 7, 8, 9, 10, 11, 12], [5, 6, 7])  # drafts 8, 9, 10, 11
    free = _decoding(s, [20, 21, 22], [23])
    plan = s.schedule()
    assert [(w.seq, w.tokens, w.drafted, w.outputs) for w in plan] == [
        (quoting, [7, 8, 9, 10, 11], 4, 5),
        (free, [23, 23, 23, 23, 23], 0, 5),  # filler: one ubatch for both
    ]
    # unpadded (one KV stream for all): each its own length
    s.padded = False
    assert [w.tokens for w in s.schedule()] == [[7, 8, 9, 10, 11], [23]]


def test_drafts_stop_short_of_max_tokens_and_need_costs() -> None:
    s = Scheduler(n_slots=1, token_budget=64, chunk=8, costs=FLAT, draft_max=16)
    seq = _decoding(s, [5, 6, 7, 8, 9, 10, 11, 12], [5, 6, 7], max_tokens=6)
    # 3 generated, 3 to go: the verification's last token is sampled, so 2 drafted
    assert [w.tokens for w in s.schedule()] == [[7, 8, 9]]
    s.costs = None
    assert [w.tokens for w in s.schedule()] == [[7]]
    assert seq.drafted == 0  # counted by the engine, once verified


def test_draft_min_verifies_drafts_that_do_not_pay() -> None:
    poor = [(16, 0.3)]
    assert verify_length(poor, 1, DEAR, padded=True, room=64) == 0
    assert verify_length(poor, 1, DEAR, padded=True, room=64, least=4) == 4
    assert verify_length([(2, 0.3)], 1, DEAR, padded=True, room=64, least=4) == 2
    assert verify_length(poor, 4, DEAR, padded=True, room=9, least=4) == 2  # what room allows
    assert verify_length([], 1, DEAR, padded=True, room=64, least=4) == 0


def test_a_draft_models_cost_counts_against_its_drafts() -> None:
    good = [(16, 0.9)]
    assert verify_length(good, 1, FLAT, padded=True, room=64) == 16
    # drafting a position costs as much as a step: a 0.9 acceptance no longer pays for 16
    assert verify_length(good, 1, FLAT, padded=True, room=64, draft_cost=0.010) < 16


def test_no_verification_where_a_lone_plain_row_would_take_the_split_kv_path() -> None:
    quote = list(range(100, 400))  # a long prompt the sequence repeats
    s = Scheduler(n_slots=3, token_budget=64, chunk=8, costs=FLAT, draft_max=8, split_kv_cells=256)
    _decoding(s, quote, quote[:150], max_tokens=400)  # n_past 449: a lone plain row splits the KV
    assert [len(w.tokens) for w in s.schedule()] == [1]
    s2 = Scheduler(n_slots=1, token_budget=64, chunk=8, costs=FLAT, draft_max=8, split_kv_cells=256)
    _decoding(s2, quote[:200], quote[:51])  # n_past 250: up to 5 more rows stay under 256
    (work,) = s2.schedule()
    assert work.tokens == [quote[50], *quote[51:55]]  # 4: the longest considered length
    assert work.start + len(work.tokens) <= 256
    # with a neighbour slot decoding beside it, its rows share a ubatch: no such path
    _decoding(s, [7, 8, 9], [10])
    assert [len(w.tokens) for w in s.schedule()] == [9, 9]
    s.split_kv_cells = None  # no flash attention on a CPU: no limit
    s.remove(s.running[1])
    assert [len(w.tokens) for w in s.schedule()] == [9]


def test_a_verification_must_promise_more_than_the_estimates_error() -> None:
    """Expected 2.6 % faster: not worth the estimates' error; 11 % faster: verified."""
    sure = [(1, 1.0)]  # one drafted token, certainly accepted: 2 tokens for a 2-row call
    assert verify_length(sure, 1, StepCosts({1: 0.010, 2: 0.0195}), padded=True, room=8) == 0
    assert verify_length(sure, 1, StepCosts({1: 0.010, 2: 0.018}), padded=True, room=8) == 1
    # draft_min still forces it
    forced = verify_length(sure, 1, StepCosts({1: 0.010, 2: 0.0195}), padded=True, room=8, least=1)
    assert forced == 1
