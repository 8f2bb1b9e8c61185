"""backends/local/backend.py: a generation request made into prompt tokens and a grammar, in
front of a real engine (the embedded model, on a thread)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from wai.backends.base import (
    Delta,
    Event,
    Finished,
    GenerationRequest,
    Message,
    SamplingParams,
    Tool,
    ToolCalls,
    ToolsRequest,
)
from wai.backends.local.backend import LocalBackend
from wai.catalog import embedded_model_path
from wai.engines.llamacpp.config import LlamaCppConfig
from wai.engines.llamacpp.inthread import InThreadEngine
from wai.errors import InvalidInput

GREEDY = SamplingParams(temperature=0)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def backend(loop: asyncio.AbstractEventLoop) -> Iterator[LocalBackend]:
    config = LlamaCppConfig(embedded_model_path(), "t", n_slots=2, n_ctx_seq=512, n_batch=256)
    b = LocalBackend(InThreadEngine(config))
    loop.run_until_complete(b.start())
    yield b
    loop.run_until_complete(b.close())


def _run(
    loop: asyncio.AbstractEventLoop, backend: LocalBackend, request: GenerationRequest
) -> list[Event]:
    async def go() -> list[Event]:
        return [ev async for ev in await backend.submit(request)]

    return loop.run_until_complete(go())


def test_a_chat_is_templated_and_a_raw_prompt_is_not(backend: LocalBackend) -> None:
    tok = backend.engine.tokenizer
    chat = backend.prompt_tokens(GenerationRequest(8, messages=(Message("user", "Hi"),)))
    text = "".join(tok.token_text(t) for t in chat)
    assert "<|im_start|>user" in text and "Hi" in text  # SmolLM2's ChatML template
    raw = backend.prompt_tokens(GenerationRequest(8, prompt="Hi"))
    assert raw == tok.tokenize("Hi", add_special=True, parse_special=True)


def test_text_with_no_token_still_leaves_something_to_continue(backend: LocalBackend) -> None:
    assert backend.prompt_tokens(GenerationRequest(8, prompt="")) != []


def test_a_logit_bias_outside_the_vocabulary_is_refused_by_name(
    loop: asyncio.AbstractEventLoop, backend: LocalBackend
) -> None:
    n_vocab = backend.n_vocab or 0
    request = GenerationRequest(
        4, prompt="x", sampling=SamplingParams(temperature=0, logit_bias=((n_vocab, 1.0),))
    )
    with pytest.raises(InvalidInput, match=f"token {n_vocab} is not in the model's vocabulary"):
        _run(loop, backend, request)


def test_json_mode_answers_json_and_a_schema_it_cannot_enforce_is_named(
    loop: asyncio.AbstractEventLoop, backend: LocalBackend
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    request = GenerationRequest(
        48, messages=(Message("user", "A number?"),), sampling=GREEDY, json_schema=schema
    )
    events = _run(loop, backend, request)
    final = events[-1]
    assert isinstance(final, Finished) and final.reason == "stop"
    value = json.loads("".join(ev.text for ev in events if isinstance(ev, Delta)))
    assert isinstance(value["n"], int)
    bad = GenerationRequest(4, prompt="x", json_schema={"type": "string", "format": {"x": 1}})
    with pytest.raises(InvalidInput, match="/response_format"):
        _run(loop, backend, bad)


def test_a_required_tool_call_comes_out_as_tool_calls_not_text(
    loop: asyncio.AbstractEventLoop, backend: LocalBackend
) -> None:
    tool = Tool("get_time", "The time in a city", {"type": "object", "properties": {}})
    request = GenerationRequest(
        64,
        messages=(Message("user", "What time is it?"),),
        sampling=GREEDY,
        tools=ToolsRequest((tool,), "required"),
    )
    events = _run(loop, backend, request)
    (calls,) = [ev for ev in events if isinstance(ev, ToolCalls)]
    assert [c.name for c in calls.calls] == ["get_time"]
    assert isinstance(events[-1], Finished)
    assert "<tool_call>" not in "".join(ev.text for ev in events if isinstance(ev, Delta))


def test_the_model_reports_how_it_runs(backend: LocalBackend) -> None:
    info = backend.report()
    assert info is not None and info.device.startswith("CPU") and info.probe
    assert backend.unready() is None and backend.n_ctx_seq == 512
