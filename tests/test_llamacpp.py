"""engine/llamacpp.py with the real model: how requests end, whatever ends them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from wai.catalog import embedded_model_path
from wai.engines.llamacpp.config import LlamaCppConfig
from wai.engines.llamacpp.inthread import InThreadEngine
from wai.engines.llamacpp.types import (
    Delta,
    EngineStopped,
    Failed,
    Finished,
    SamplingParams,
    TokenEvent,
    TokenRequest,
)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def backend(loop: asyncio.AbstractEventLoop, **overrides: Any) -> InThreadEngine:
    b = InThreadEngine(
        LlamaCppConfig(
            path=embedded_model_path(),
            name="t",
            n_slots=2,
            n_ctx_seq=256,
            n_batch=192,
            prefill_chunk=64,
            **overrides,
        )
    )
    loop.run_until_complete(b.start())
    return b


def request(tokens: list[int], max_tokens: int = 8) -> TokenRequest:
    return TokenRequest(tokens, max_tokens, SamplingParams(temperature=0), ignore_eos=True)


async def events_of(b: InThreadEngine, req: TokenRequest) -> list[TokenEvent]:
    return [ev async for ev in b.submit(req)]


async def settled(b: InThreadEngine) -> None:
    for _ in range(200):
        s = b.stats()
        if s.slots_busy == 0 and s.waiting == 0:
            return
        await asyncio.sleep(0.01)


def test_a_failed_decode_is_counted_as_failed(loop: asyncio.AbstractEventLoop) -> None:
    b = backend(loop)
    try:
        ok = b.tokenizer.tokenize("Hello", add_special=True, parse_special=False)
        # llama_decode refuses a token id outside the vocabulary
        evs = loop.run_until_complete(events_of(b, request([b.tokenizer.n_vocab + 7])))
        assert isinstance(evs[-1], Failed) and "llama_decode" in evs[-1].message
        s = b.stats()
        assert (s.requests_failed, s.requests_finished, s.slots_busy) == (1, 0, 0)
        evs = loop.run_until_complete(events_of(b, request(ok)))  # the slot works again
        assert isinstance(evs[-1], Finished) and evs[-1].usage.completion_tokens == 8
        assert b.stats().requests_finished == 1
    finally:
        loop.run_until_complete(b.close())


def test_breaking_out_of_a_generation_cancels_it(loop: asyncio.AbstractEventLoop) -> None:
    b = backend(loop)
    try:
        prompt = b.tokenizer.tokenize("Tell me a story", add_special=True, parse_special=False)

        async def first_token() -> None:
            async for ev in b.submit(request(prompt, max_tokens=200)):
                assert isinstance(ev, Delta)
                break
            await settled(b)

        loop.run_until_complete(first_token())
        s = b.stats()
        assert (s.requests_cancelled, s.slots_busy) == (1, 0)
        assert s.tokens_generated < 200
    finally:
        loop.run_until_complete(b.close())


def test_submit_after_close_raises_and_queued_requests_end(loop: asyncio.AbstractEventLoop) -> None:
    b = backend(loop)
    prompt = b.tokenizer.tokenize("Hello there", add_special=True, parse_special=False)

    async def go() -> list[TokenEvent]:
        # queued behind the stop message: it must end, not hang
        pending = [b.submit(request(prompt, max_tokens=200)) for _ in range(4)]
        await b.close()
        ends = []
        for gen in pending:
            evs = [ev async for ev in gen]
            ends.append(evs[-1])
        return ends

    ends = loop.run_until_complete(asyncio.wait_for(go(), timeout=60))
    assert all(isinstance(ev, Finished | Failed) for ev in ends)
    assert any(isinstance(ev, Failed) and "stopped" in ev.message for ev in ends)
    with pytest.raises(EngineStopped):
        loop.run_until_complete(_submit(b, prompt))


async def _submit(b: InThreadEngine, prompt: list[int]) -> None:
    b.submit(request(prompt))


def test_vectorised_greedy_picks_what_the_sampler_chain_picks(
    loop: asyncio.AbstractEventLoop,
) -> None:
    b = backend(loop)
    try:
        prompts = [
            b.tokenizer.tokenize(t, add_special=True, parse_special=False)
            for t in ("Tell me about the sea", "Name three colours")
        ]
        # repetition_penalty 1.0 is an exact no-op, but it makes the engine use a llama.cpp
        # sampler chain (greedy at its end) instead of the vectorised argmax
        chain = SamplingParams(temperature=0, repetition_penalty=1.0)

        async def both(params: SamplingParams) -> list[list[int]]:
            reqs = [TokenRequest(p, 24, params, ignore_eos=True) for p in prompts]
            runs = await asyncio.gather(*[events_of(b, r) for r in reqs])
            return [[ev.token for ev in evs if isinstance(ev, Delta)] for evs in runs]

        fast = loop.run_until_complete(both(SamplingParams(temperature=0)))
        slow = loop.run_until_complete(both(chain))
        assert fast == slow and all(len(t) == 24 for t in fast)
    finally:
        loop.run_until_complete(b.close())


def test_without_batch_invariance_a_prompt_chunk_shares_the_decode_rows_call(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The same workload (a new prompt arriving while another sequence decodes) in both modes:
    batch-invariant spends one more llama_decode on the newcomer's prompt chunk."""

    def steps(batch_invariant: bool) -> tuple[int, list[int]]:
        # speculation off: whether a step verifies drafts depends on call times measured at
        # start, so with it the number of steps would vary from run to run
        b = backend(loop, batch_invariant=batch_invariant, speculation="off")
        try:
            tok = b.tokenizer
            long = tok.tokenize("Tell me a long story", add_special=True, parse_special=False)
            short = tok.tokenize("Hello there, how are you?", add_special=True, parse_special=False)
            assert len(short) > 1  # not the length of a decode row

            async def go() -> list[int]:
                gen = b.submit(request(long, max_tokens=48))
                it = gen.__aiter__()
                await it.__anext__()  # the long one decodes now
                late = asyncio.ensure_future(events_of(b, request(short, max_tokens=4)))
                rest = [ev async for ev in it]
                evs = await late
                assert isinstance(rest[-1], Finished) and isinstance(evs[-1], Finished)
                return [ev.token for ev in evs if isinstance(ev, Delta)]

            s0 = b.stats().steps
            tokens = loop.run_until_complete(go())
            return b.stats().steps - s0, tokens
        finally:
            loop.run_until_complete(b.close())

    invariant, tokens_a = steps(True)
    mixed, tokens_b = steps(False)
    assert mixed == invariant - 1
    assert len(tokens_a) == len(tokens_b) == 4
