"""engine/process.py: the supervisor's decisions, and a real engine process killed under a real
engine client."""

from __future__ import annotations

import asyncio
import os
import signal

from wai.catalog import embedded_model_path
from wai.engines.llamacpp.config import LlamaCppConfig
from wai.engines.llamacpp.process import ProcessEngine, RestartPolicy
from wai.engines.llamacpp.types import (
    Failed,
    SamplingParams,
    TokenEvent,
    TokenRequest,
)

# --- the restart policy -----------------------------------------------------------------------


def test_first_crash_restarts_the_same_plan_then_each_crash_steps_down_and_waits_longer() -> None:
    p = RestartPolicy(base_delay=0.5, max_crashes=5)
    seen = [(p.after_crash(1.0), p.skip_plans) for _ in range(5)]
    assert seen == [(0.5, 0), (1.0, 1), (2.0, 2), (4.0, 3), (8.0, 4)]
    assert p.after_crash(1.0) is None  # the sixth crash in a row: give up


def test_an_engine_that_served_long_enough_starts_the_count_again_but_keeps_its_plan() -> None:
    p = RestartPolicy(base_delay=1.0, stable_after=60.0, max_crashes=2)
    p.after_crash(None)
    p.after_crash(None)
    assert (p.crashes, p.skip_plans) == (2, 1)
    assert p.after_crash(120.0) == 1.0  # a fresh count: the first delay again
    assert (p.crashes, p.skip_plans) == (1, 1)
    assert p.after_crash(5.0) == 2.0  # not stable: counted on
    assert p.after_crash(5.0) is None


def test_crashes_while_starting_count_like_any_other() -> None:
    p = RestartPolicy(max_crashes=1)
    assert p.after_crash(None) is not None
    assert p.after_crash(None) is None


def test_the_delay_is_capped() -> None:
    p = RestartPolicy(base_delay=10.0, max_delay=15.0, max_crashes=10)
    assert [p.after_crash(0.0) for _ in range(3)] == [10.0, 15.0, 15.0]


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
    assert b.info is not None and b.info.pid is not None
    os.kill(b.info.pid, signal.SIGKILL)


async def _events(b: ProcessEngine, prompt: list[int], n: int) -> list[TokenEvent]:
    req = TokenRequest(prompt, n, SamplingParams(temperature=0), ignore_eos=True)
    return [ev async for ev in b.submit(req)]


def test_requests_wait_for_a_restart_and_repeated_crashes_give_the_model_up() -> None:
    async def go() -> None:
        b = _backend(RestartPolicy(base_delay=0.2, max_crashes=1, stable_after=600))
        await b.start()
        try:
            prompt = b.tokenizer.tokenize("Once upon a time", add_special=True, parse_special=False)
            before = await _events(b, prompt, 6)
            measured = b.step_costs
            assert sorted(measured) == [1, 2, 4, 8, 16]  # timed at start (speculation is on)
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
            # the restart (same plan) starts with the first process's call times: timed
            # again, not one of ten perf_counter() figures would come out the same
            assert b.step_costs == measured
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
