"""From validated input to the request every backend takes: the chat (a prompt becomes one user
turn, after the model's default system prompt) or a raw prompt, sampling, tools, and the
server's limits applied (prompt and message sizes, max_tokens)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wai.backends.base import (
    EmbeddingRequest,
    GenerationRequest,
    Message,
    RerankRequest,
    SamplingParams,
    Tool,
    ToolsRequest,
)
from wai.backends.local.json_schema import GrammarError, check_schema
from wai.catalog import ModelSpec
from wai.errors import InvalidInput
from wai.schemas.embeddings import EmbeddingInput
from wai.schemas.reranking import RerankInput
from wai.schemas.text_generation import ChatMessage, NamedToolChoice, TextGenerationInput
from wai.settings import Limits


def generation_request(
    spec: ModelSpec,
    limits: Limits,
    inp: TextGenerationInput,
    stop: Sequence[str] = (),
    logit_bias: Sequence[tuple[int, float]] = (),
) -> GenerationRequest:
    """The validated request any backend takes. Raises InvalidInput past a limit."""
    check_limits(limits, inp)
    prompt = None
    messages: tuple[Message, ...] | None = None
    if inp.prompt is not None and inp.raw:
        prompt = inp.prompt
    elif inp.prompt is not None:
        system = [Message("system", spec.default_system)] if spec.default_system else []
        messages = (*system, Message("user", inp.prompt))
    else:
        messages = tuple(_message(i, m) for i, m in enumerate(inp.messages or []))
    return GenerationRequest(
        max_tokens=max_tokens(limits, inp),
        messages=messages,
        prompt=prompt,
        sampling=SamplingParams(
            temperature=inp.temperature,
            top_p=inp.top_p,
            min_p=inp.min_p,
            top_k=inp.top_k,
            seed=inp.seed,
            repetition_penalty=inp.repetition_penalty,
            frequency_penalty=inp.frequency_penalty,
            presence_penalty=inp.presence_penalty,
            logit_bias=(*logit_bias, *inp.bias()),
        ),
        json_schema=inp.json_schema,
        tools=tools_request(inp),
        reject_if_busy=bool(inp.options and inp.options.reject_if_busy),
        ignore_eos=inp.ignore_eos,
        stop=tuple(stop),
        stream=inp.stream,
    )


def embedding_request(inp: EmbeddingInput) -> EmbeddingRequest:
    """The texts to embed, as an embedding backend takes them."""
    return EmbeddingRequest(
        inp.texts(),
        inp.pooling,
        inp.truncate_inputs,
        reject_if_busy=bool(inp.options and inp.options.reject_if_busy),
    )


def rerank_request(inp: RerankInput) -> RerankRequest | EmbeddingRequest:
    """The query and texts to score; without a query (bge-m3's query mode), the texts to
    embed."""
    busy = bool(inp.options and inp.options.reject_if_busy)
    if inp.query is None:
        return EmbeddingRequest(inp.texts(), None, inp.truncate_inputs, reject_if_busy=busy)
    return RerankRequest(inp.query, inp.texts(), inp.truncate_inputs, reject_if_busy=busy)


def tools_request(inp: TextGenerationInput) -> ToolsRequest | None:
    """The request's tools, each `parameters` checked against what the grammar supports;
    None without tools (or with tool_choice "none": the model then answers in text, and
    sees no tools)."""
    offered = inp.functions_offered()
    choice = inp.tool_choice
    if not offered or choice == "none":
        return None
    defs = []
    for path, fn in offered:
        params = fn.parameters if fn.parameters is not None else {"type": "object"}
        try:
            check_schema(params, f"{path}/parameters")
        except GrammarError as e:
            raise InvalidInput(str(e)) from e
        defs.append(Tool(fn.name, fn.description or "", params))
    if isinstance(choice, NamedToolChoice):  # the schema checked that it is offered
        choice_name = choice.function.name
    else:
        choice_name = "required" if choice == "required" else "auto"
    return ToolsRequest(tuple(defs), choice_name, inp.parallel_tool_calls)


def max_tokens(limits: Limits, inp: TextGenerationInput) -> int:
    """An explicit value must respect the cap; the default (256) is lowered to it."""
    cap = limits.max_tokens
    if "max_tokens" not in inp.model_fields_set:
        return min(inp.max_tokens, cap)
    if inp.max_tokens > cap:
        raise InvalidInput(f"'/max_tokens': must be at most {cap}")
    return inp.max_tokens


def check_limits(limits: Limits, inp: TextGenerationInput) -> None:
    if inp.prompt is not None and len(inp.prompt) > limits.max_prompt_chars:
        raise InvalidInput(f"'/prompt': longer than {limits.max_prompt_chars} characters")
    messages = inp.messages or []
    if len(messages) > limits.max_messages:
        raise InvalidInput(f"'/messages': more than {limits.max_messages} messages")
    for i, m in enumerate(messages):
        if len(m.text()) > limits.max_message_chars:
            raise InvalidInput(
                f"'/messages/{i}/content': longer than {limits.max_message_chars} characters"
            )


def _message(i: int, m: ChatMessage) -> Message:
    """A request message as backends take it: earlier calls in OpenAI's form with their
    arguments as objects, which is what chat templates expect."""
    calls = []
    for j, fn in enumerate(m.calls()):
        args: Any = fn.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                raise InvalidInput(
                    f"'/messages/{i}/tool_calls/{j}/function/arguments': not a JSON object"
                ) from None
        if not isinstance(args, dict):
            raise InvalidInput(f"'/messages/{i}/tool_calls/{j}': arguments must be an object")
        raw = (m.tool_calls or [])[j]
        call_id = getattr(raw, "id", None) or f"call_{i}_{j}"
        calls.append(
            {"id": call_id, "type": "function", "function": {"name": fn.name, "arguments": args}}
        )
    return Message(m.role, m.text(), tuple(calls), m.tool_call_id, m.name)
