"""engine/admission.py: the caller's side of an engine: admission, request ids, events dealt to
their requests, counters that survive an engine's death."""

from __future__ import annotations

import asyncio

import pytest

from wai.engines.llamacpp.admission import Admission
from wai.engines.llamacpp.types import (
    Counters,
    Delta,
    EngineBusy,
    EngineStopped,
    Failed,
    Finished,
    Generation,
    PromptTooLong,
    TokenEvent,
    TokenRequest,
    Usage,
)


async def _all(generation: Generation[TokenEvent]) -> list[TokenEvent]:
    return [ev async for ev in generation]


def _req(n_prompt: int = 4, max_tokens: int = 4, busy: bool = False) -> TokenRequest:
    return TokenRequest(list(range(1, n_prompt + 1)), max_tokens, reject_if_busy=busy)


def test_admission_counts_requests_until_their_final_event() -> None:
    admission = Admission("m", n_slots=1, max_waiting=1)
    a, b = _req(), _req()
    admission.open(a, 64)
    with pytest.raises(EngineBusy):
        admission.open(_req(busy=True), 64)  # rejectIfBusy: every slot taken
    admission.open(b, 64)
    with pytest.raises(EngineBusy):
        admission.open(_req(), 64)  # slots + waiting all taken
    admission.deliver([(a.request_id, Finished("stop", Usage(4, 1)))], Counters(busy=1))
    admission.open(_req(), 64)  # a's end made room
    with pytest.raises(PromptTooLong):
        admission.open(_req(n_prompt=60, max_tokens=5), 64)
    with pytest.raises(PromptTooLong):
        admission.open(_req(n_prompt=0), 64)


def test_lost_requests_fail_as_crashed_and_the_totals_stay_monotonic() -> None:
    admission = Admission("m", n_slots=2, max_waiting=0)
    a = _req()
    rid = admission.open(a, 64)
    generation = admission.generation(rid, lambda: None)
    admission.deliver([], Counters(busy=1, finished=5, generated=50, steps=9))
    admission.lose([a.request_id, 999], "gone")
    assert asyncio.run(_all(generation)) == [Failed("gone", crashed=True)]
    s = admission.stats(kv_cache_bytes=0, restarts=1)
    assert (s.requests_finished, s.requests_failed, s.tokens_generated, s.steps) == (5, 1, 50, 9)
    assert (s.slots_busy, s.restarts) == (0, 1)
    admission.deliver([], Counters(finished=1))  # the next engine counts from zero
    assert admission.stats(0).requests_finished == 6


def test_each_admitted_request_gets_an_id_of_its_own() -> None:
    admission = Admission("m", n_slots=4, max_waiting=4)
    requests = [_req() for _ in range(5)]
    ids = [admission.open(r, 64) for r in requests]
    assert len(set(ids)) == 5 and [r.request_id for r in requests] == ids


def test_events_reach_their_own_request_and_a_final_one_closes_it() -> None:
    async def go() -> None:
        admission = Admission("m", n_slots=2, max_waiting=0)
        a, b = admission.open(_req(), 64), admission.open(_req(), 64)
        ga, gb = admission.generation(a, lambda: None), admission.generation(b, lambda: None)
        done_a, done_b = Finished("stop", Usage(4, 1)), Finished("length", Usage(4, 2))
        admission.deliver(
            [(a, Delta("x", 1)), (b, Delta("y", 2)), (a, done_a), (b, Delta("z", 3)), (b, done_b)],
            Counters(busy=0, finished=2),
        )
        assert await _all(ga) == [Delta("x", 1), done_a]
        assert await _all(gb) == [Delta("y", 2), Delta("z", 3), done_b]
        assert admission.open_ids() == []
        admission.deliver([(a, Delta("late", 4))], None)  # after its end: dropped
        assert admission.stats(0).requests_finished == 2

    asyncio.run(go())


def test_a_closed_admission_takes_no_more_requests() -> None:
    admission = Admission("m", n_slots=1, max_waiting=1)
    admission.closed = True
    with pytest.raises(EngineStopped):
        admission.open(_req(), 64)
