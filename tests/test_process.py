"""engine/process.py, wire.py and frontend.py: the supervisor's decisions, the channel's
framing, and a real engine process killed under a real backend."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import msgspec
import pytest

from wai.catalog import embedded_model_path
from wai.engine import wire
from wai.engine.base import (
    Counters,
    Delta,
    EngineBusy,
    Event,
    Failed,
    Finished,
    PromptTooLong,
    SamplingParams,
    TokenRequest,
    Usage,
)
from wai.engine.frontend import Frontend
from wai.engine.llamacpp import LlamaCppConfig
from wai.engine.process import ProcessEngine, RestartPolicy, describe_exit
from wai.engine.worker import config_dict, config_from

# --- the restart policy -----------------------------------------------------------------------


def test_first_crash_restarts_the_same_plan_then_each_crash_steps_down_and_waits_longer() -> None:
    p = RestartPolicy(base_delay=0.5, max_crashes=5)
    seen = [(p.after_crash(1.0), p.floor) for _ in range(5)]
    assert seen == [(0.5, 0), (1.0, 1), (2.0, 2), (4.0, 3), (8.0, 4)]
    assert p.after_crash(1.0) is None  # the sixth crash in a row: give up


def test_an_engine_that_served_long_enough_starts_the_count_again_but_keeps_its_plan() -> None:
    p = RestartPolicy(base_delay=1.0, stable_after=60.0, max_crashes=2)
    p.after_crash(None)
    p.after_crash(None)
    assert (p.crashes, p.floor) == (2, 1)
    assert p.after_crash(120.0) == 1.0  # a fresh count: the first delay again
    assert (p.crashes, p.floor) == (1, 1)
    assert p.after_crash(5.0) == 2.0  # not stable: counted on
    assert p.after_crash(5.0) is None


def test_crashes_while_starting_count_like_any_other() -> None:
    p = RestartPolicy(max_crashes=1)
    assert p.after_crash(None) is not None
    assert p.after_crash(None) is None


def test_the_delay_is_capped() -> None:
    p = RestartPolicy(base_delay=10.0, max_delay=15.0, max_crashes=10)
    assert [p.after_crash(0.0) for _ in range(3)] == [10.0, 15.0, 15.0]


def test_exits_are_described() -> None:
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "was killed by SIGSEGV"
    assert describe_exit(-200) == "was killed by signal 200"
    assert describe_exit(3) == "exited with status 3"


# --- the channel --------------------------------------------------------------------------------


def test_events_cross_the_channel_unchanged() -> None:
    events: list[Event] = [
        Delta("héllo", 42),
        Delta("", 7),
        Finished("stop", Usage(5, 2, 1)),
        Failed("inference failed"),
    ]
    step = wire.Step([wire.event_msg(i, ev) for i, ev in enumerate(events)], Counters(1, 2))
    data = wire.frame(step)
    assert wire.frame_size(data[: wire.HEADER_SIZE]) == len(data) - wire.HEADER_SIZE
    back = wire.from_engine.decode(data[wire.HEADER_SIZE :])
    assert isinstance(back, wire.Step) and back.counters == Counters(1, 2)
    assert [wire.msg_event(m) for m in back.events] == list(enumerate(events))


def test_a_request_crosses_the_channel_unchanged() -> None:
    req = TokenRequest(
        [1, 2, 3],
        9,
        SamplingParams(temperature=0.3, top_p=0.9, seed=4, logit_bias=((5, -1.5),)),
        reject_if_busy=True,
        ignore_eos=True,
        stop=("\n\n",),
    )
    data = wire.frame(wire.Submit(req))
    back = wire.to_engine.decode(data[wire.HEADER_SIZE :])
    assert isinstance(back, wire.Submit) and back.request == req


def test_a_frame_size_out_of_step_is_refused() -> None:
    with pytest.raises(ValueError, match="out of step"):
        wire.frame_size((wire.MAX_FRAME + 1).to_bytes(4, "little"))


def test_frames_are_read_whole_across_partial_reads() -> None:
    r, w = os.pipe()
    try:
        data = wire.frame(wire.Cancel(12345)) + wire.frame(wire.Stop())
        for i in range(len(data)):  # one byte at a time
            os.write(w, data[i : i + 1])
        os.close(w)
        w = -1
        assert wire.read_frame(r) == wire.Cancel(12345)
        assert wire.read_frame(r) == wire.Stop()
        assert wire.read_frame(r) is None  # end of file: the server has gone
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


# --- admission ------------------------------------------------------------------------------------


def _req(n_prompt: int = 4, max_tokens: int = 4, busy: bool = False) -> TokenRequest:
    return TokenRequest(list(range(1, n_prompt + 1)), max_tokens, reject_if_busy=busy)


def test_admission_counts_requests_until_their_final_event() -> None:
    front = Frontend("m", n_slots=1, max_waiting=1)
    a, b = _req(), _req()
    front.open(a, 64)
    with pytest.raises(EngineBusy):
        front.open(_req(busy=True), 64)  # rejectIfBusy: every slot taken
    front.open(b, 64)
    with pytest.raises(EngineBusy):
        front.open(_req(), 64)  # slots + waiting all taken
    front.deliver([(a.request_id, Finished("stop", Usage(4, 1)))], Counters(busy=1))
    front.open(_req(), 64)  # a's end made room
    with pytest.raises(PromptTooLong):
        front.open(_req(n_prompt=60, max_tokens=5), 64)
    with pytest.raises(PromptTooLong):
        front.open(_req(n_prompt=0), 64)


def test_lost_requests_fail_as_crashed_and_the_totals_stay_monotonic() -> None:
    front = Frontend("m", n_slots=2, max_waiting=0)
    a = _req()
    qa = front.open(a, 64)
    front.deliver([], Counters(busy=1, finished=5, generated=50, steps=9))
    front.lose([a.request_id, 999], "gone")
    ev = qa.get_nowait()
    assert ev == Failed("gone", crashed=True)
    s = front.stats(kv_cache_bytes=0, restarts=1)
    assert (s.requests_finished, s.requests_failed, s.tokens_generated, s.steps) == (5, 1, 50, 9)
    assert (s.slots_busy, s.restarts) == (0, 1)
    front.deliver([], Counters(finished=1))  # the next engine counts from zero
    assert front.stats(0).requests_finished == 6


# --- a real engine process ------------------------------------------------------------------------


def _backend(policy: RestartPolicy) -> ProcessEngine:
    return ProcessEngine(
        LlamaCppConfig(
            path=embedded_model_path(),
            name="t",
            n_slots=2,
            n_ctx_seq=256,
            n_batch=192,
            prefill_chunk=64,
        ),
        policy,
    )


def _kill(b: ProcessEngine) -> None:
    pid = b.info["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)


async def _events(b: ProcessEngine, prompt: list[int], n: int) -> list[Event]:
    req = TokenRequest(prompt, n, SamplingParams(temperature=0), ignore_eos=True)
    return [ev async for ev in b.submit(req)]


def test_requests_wait_for_a_restart_and_repeated_crashes_give_the_model_up() -> None:
    async def go() -> None:
        b = _backend(RestartPolicy(base_delay=0.2, max_crashes=1, stable_after=600))
        await b.start()
        try:
            prompt = b.tokenizer.tokenize("Once upon a time", add_special=True, parse_special=False)
            before = await _events(b, prompt, 6)
            running = asyncio.ensure_future(_events(b, prompt, 200))
            while b.stats().slots_busy == 0:
                await asyncio.sleep(0.01)
            _kill(b)
            lost = await running
            assert isinstance(lost[-1], Failed) and lost[-1].crashed
            # submitted while the engine is down: it waits for the restart and completes,
            # with the same tokens as before the crash (same plan, same greedy output)
            again = await _events(b, prompt, 6)
            assert again == before and b.restarts == 1 and b.failure is None
            # a second crash in a row is one more than this policy allows
            _kill(b)
            for _ in range(500):
                if b.failure is not None:
                    break
                await asyncio.sleep(0.01)
            assert b.failure is not None and "SIGKILL" in b.failure
            assert b.stats().requests_failed == 1
        finally:
            await b.close()

    asyncio.run(go())


def test_the_engine_process_gets_the_config_it_was_given(tmp_path: Path) -> None:
    config = LlamaCppConfig(
        path=tmp_path / "m.gguf",
        name="m",
        n_slots=3,
        batch_invariant=False,
        extra_buffers="off",
        cache_dir=tmp_path / "cache",
    )
    spec = msgspec.json.encode({"config": config_dict(config)})
    assert config_from(msgspec.json.decode(spec)["config"]) == config
