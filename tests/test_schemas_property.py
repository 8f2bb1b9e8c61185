"""Hypothesis on the request schemas: any JSON value is either a valid request or a clear
request error, never anything else (no crash that would become a 500)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wai.errors import InvalidInput
from wai.schemas.openai import InvalidOpenAIRequest, parse_chat, parse_completion
from wai.schemas.text_generation import TextGenerationInput, parse_text_generation

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
KEYS = [
    "prompt",
    "messages",
    "raw",
    "stream",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "lora",
    "response_format",
    "tools",
    "options",
    "model",
    "stop",
    "n",
    "logprobs",
    "max_completion_tokens",
    "stream_options",
    "echo",
    "best_of",
]
messages = st.lists(
    st.fixed_dictionaries({"role": st.text(max_size=10)}, optional={"content": json_values}),
    max_size=3,
)
bodies = st.dictionaries(st.sampled_from(KEYS), json_values | messages, max_size=8) | json_values


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_workers_ai_input_is_valid_or_a_clear_5006(body: Any) -> None:
    try:
        inp = parse_text_generation(body)
    except InvalidInput as e:
        assert e.message
    else:
        assert isinstance(inp, TextGenerationInput)
        assert (inp.prompt is None) != (inp.messages is None)


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_openai_requests_are_valid_or_a_clear_400(body: Any) -> None:
    for parse in (parse_chat, parse_completion):
        try:
            req, inp, stops = parse(body)
        except InvalidOpenAIRequest as e:
            assert e.message
        else:
            assert req.model and isinstance(inp, TextGenerationInput)
            assert len(stops) <= 4
