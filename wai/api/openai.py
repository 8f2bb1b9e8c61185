"""OpenAI-compatible routes, under Workers AI's base (`/client/v4/accounts/{id}/ai/v1/...`) and
under `/v1/...` for plain OpenAI clients. Objects and stream chunks as OpenAI defines them;
errors in OpenAI's shape `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from wai.answers import Completed, failed_code, rank_scores, ranked, usage_dict
from wai.api import sse
from wai.api.access import track
from wai.api.body import read_json
from wai.api.errors import CFError, openai_error, openai_from_cf
from wai.api.framing import failed_error, to_cf_error
from wai.api.generation import GenerationResponse, collect
from wai.api.inference import session_key
from wai.backends.base import (
    Delta,
    EngineError,
    Event,
    Failed,
    Finished,
    Generation,
    ToolCall,
    ToolCalls,
    Vectors,
)
from wai.errors import MODEL_UNAVAILABLE, TIMEOUT, RequestError
from wai.runtime import Runtime, Served
from wai.schemas.embeddings import EmbeddingInput
from wai.schemas.openai import (
    InvalidOpenAIRequest,
    parse_chat,
    parse_completion,
    parse_embeddings_request,
    parse_rerank_request,
)
from wai.schemas.reranking import RerankApiRequest, RerankInput
from wai.schemas.text_generation import TextGenerationInput

router = APIRouter()
T = TypeVar("T")
GENERATES = ("text-generation",)
EMBEDS = ("text-embeddings",)
RANKS = ("reranking", "text-embeddings")  # an embedding model ranks by cosine similarity


def _finish_reason(ev: Finished) -> str:
    return "length" if ev.reason == "length" else "stop"


Parser = Callable[[Any], tuple[Any, TextGenerationInput, list[str]]]


async def _handle(request: Request, parse: Parser, chat: bool) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        body = await read_json(request, runtime.settings.limits.max_body_bytes)
        req, inp, stops = parse(body)
        _check_kind(runtime, req.model, GENERATES, "a text-generation model")
        served, generation = await runtime.submit(
            req.model, inp, stops, req.bias(), session=session_key(request)
        )
        track(request, served, generation, inp)  # access log, usage
    except InvalidOpenAIRequest as e:
        return openai_error(400, e.message, e.param)
    except (CFError, RequestError, EngineError) as e:
        return openai_from_cf(to_cf_error(e))
    prefix, obj = ("chatcmpl", "chat.completion") if chat else ("cmpl", "text_completion")
    meta = {
        "id": f"{prefix}-{secrets.token_hex(12)}",
        "created": int(time.time()),
        "model": req.model,
    }
    headers = {"x-wai-model": served.model_name}
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        chunks = _chunks(generation, meta, include_usage, chat)
        return GenerationResponse(generation, chunks, headers)
    done = await collect(request, generation)
    if done is None:
        return openai_error(408, "the client closed the connection")
    if isinstance(done.final, Failed):
        err = failed_error(done.final)
        return openai_error(
            err.status, done.final.message, code=_failed_name(done.final), headers=err.headers
        )
    reason = _finish_reason(done.final)
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": done.text}
        if done.calls:
            message = {
                "role": "assistant",
                "content": done.text or None,
                "tool_calls": [_tool_call(c) for c in done.calls],
            }
            reason = "tool_calls"
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "finish_reason": reason,
            "logprobs": None,
        }
    else:
        choice = {"index": 0, "text": done.text, "finish_reason": reason, "logprobs": None}
    return JSONResponse(
        {**meta, "object": obj, "choices": [choice], "usage": usage_dict(done.final.usage)},
        headers=headers,
    )


# OpenAI names for answers.failed_code's codes
_FAILED_NAMES = {MODEL_UNAVAILABLE: "engine_restarting", TIMEOUT: "timeout"}


def _failed_name(ev: Failed) -> str:
    return _FAILED_NAMES.get(failed_code(ev), "inference_failed")


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json()},
    }


async def _chunks(
    generation: Generation[Event],
    meta: dict[str, Any],
    include_usage: bool,
    chat: bool,
) -> AsyncIterator[bytes]:
    """OpenAI stream chunks: chat.completion.chunk (deltas) or text_completion (text). With
    tools, text that may start a call is held back; each call is then a delta with its id and
    name, and one with its arguments."""
    obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return sse.event({**meta, "object": obj, "choices": choices, **extra})

    def choice(text: str | None, reason: str | None = None) -> dict[str, Any]:
        body = (
            {"delta": {} if text is None else {"content": text}} if chat else {"text": text or ""}
        )
        return {"index": 0, **body, "finish_reason": reason, "logprobs": None}

    if chat:
        yield chunk([{**choice(""), "delta": {"role": "assistant", "content": ""}}])

    def calls_delta(calls: list[dict[str, Any]]) -> bytes:
        return chunk([{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}])

    called = False
    async for ev in generation:
        if isinstance(ev, Delta):
            if ev.text:
                yield chunk([choice(ev.text)])
        elif isinstance(ev, ToolCalls):
            for i, call in enumerate(ev.calls):
                head = _tool_call(call)
                head["function"] = {"name": call.name, "arguments": ""}
                yield calls_delta([{"index": i, **head}])
                yield calls_delta([{"index": i, "function": {"arguments": call.arguments_json()}}])
            called = True
        elif isinstance(ev, Finished):
            yield chunk([choice(None, "tool_calls" if called else _finish_reason(ev))])
            if include_usage:
                yield chunk([], usage=usage_dict(ev.usage))
        elif isinstance(ev, Failed):
            yield sse.event(
                {
                    "error": {
                        "message": ev.message,
                        "type": "server_error",
                        "param": None,
                        "code": _failed_name(ev),
                    }
                }
            )
    yield sse.DONE


async def chat_completions(request: Request) -> Response:
    return await _handle(request, parse_chat, chat=True)


async def completions(request: Request) -> Response:
    return await _handle(request, parse_completion, chat=False)


def _check_kind(runtime: Runtime, model: str, kinds: tuple[str, ...], noun: str) -> None:
    """A known id of another kind than the route serves is refused naming the parameter
    (an unknown one is left to the runtime's 404)."""
    known = runtime.models.model_for(model) is not None
    if known and runtime.models.spec_for(model).kind not in kinds:
        raise InvalidOpenAIRequest(f"{model} is not {noun}", "model")


async def _vectors(
    request: Request,
    model: str,
    inp: EmbeddingInput | RerankInput,
    kinds: tuple[str, ...],
    noun: str,
) -> tuple[Served, Completed] | Response:
    """Submit an embedding or reranking input to a model of one of `kinds` (`noun`: such a
    model, in words) and collect its output; a refusal or failure as OpenAI's error."""
    runtime: Runtime = request.app.state.runtime
    try:
        _check_kind(runtime, model, kinds, noun)
        served, generation = await runtime.submit(model, inp)
        track(request, served, generation, inp)  # access log, usage
    except InvalidOpenAIRequest as e:
        return openai_error(400, e.message, e.param)
    except (CFError, RequestError, EngineError) as e:
        return openai_from_cf(to_cf_error(e))
    done = await collect(request, generation)
    if done is None:
        return openai_error(408, "the client closed the connection")
    if isinstance(done.final, Failed) or done.vectors is None:
        failed = done.final if isinstance(done.final, Failed) else Failed("no output")
        return openai_error(failed_error(failed).status, failed.message, code=_failed_name(failed))
    return served, done


async def _parsed(request: Request, parse: Callable[[Any], T]) -> T | Response:
    runtime: Runtime = request.app.state.runtime
    try:
        return parse(await read_json(request, runtime.settings.limits.max_body_bytes))
    except InvalidOpenAIRequest as e:
        return openai_error(400, e.message, e.param)
    except (CFError, RequestError) as e:
        return openai_from_cf(to_cf_error(e))


async def embeddings(request: Request) -> Response:
    parsed = await _parsed(request, parse_embeddings_request)
    if isinstance(parsed, Response):
        return parsed
    req, inp = parsed
    outcome = await _vectors(request, req.model, inp, EMBEDS, "an embedding model")
    if isinstance(outcome, Response):
        return outcome
    served, done = outcome
    assert done.vectors is not None and isinstance(done.final, Finished)
    dims = done.vectors.shape[1]
    if req.dimensions is not None and req.dimensions != dims:  # the model's own size only
        message = f"dimensions: {served.model_name} gives {dims} dimensions, not {req.dimensions}"
        return openai_error(400, message, "dimensions")
    data = [
        {"object": "embedding", "index": i, "embedding": vector}
        for i, vector in enumerate(_encoded(done.vectors, req.encoding_format))
    ]
    tokens = done.final.usage.prompt_tokens
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    body = {"object": "list", "data": data, "model": req.model, "usage": usage}
    return JSONResponse(body, headers={"x-wai-model": served.model_name})


async def rerank(request: Request) -> Response:
    """`POST /v1/rerank` (llama.cpp's server, vLLM, Jina, Cohere): the documents' scores
    against the query, best first, by the id's reranker (or, for an embedding id or with no
    reranker configured, by cosine similarity; `x-wai-model` says which)."""
    req = await _parsed(request, parse_rerank_request)
    if isinstance(req, Response):
        return req
    outcome = await _vectors(request, req.model, req.as_input(), RANKS, "a reranking model")
    if isinstance(outcome, Response):
        return outcome
    served, done = outcome
    assert done.vectors is not None and isinstance(done.final, Finished)
    return JSONResponse(
        _rerank_body(req, done.vectors, done.final), headers={"x-wai-model": served.label}
    )


def _rerank_body(req: RerankApiRequest, vectors: Vectors, final: Finished) -> dict[str, Any]:
    texts = req.texts()
    results = []
    for i, score in ranked(rank_scores(vectors), req.top_n):
        item: dict[str, Any] = {"index": i, "relevance_score": score}
        if req.return_documents:
            item["document"] = {"text": texts[i]}
        results.append(item)
    tokens = final.usage.prompt_tokens
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "model": req.model, "results": results, "usage": usage}


def _encoded(vectors: Vectors, encoding: str) -> list[Any]:
    """Each vector as floats, or as the base64 of its float32 bytes (little-endian), which is
    what the openai SDK asks for by default and decodes."""
    if encoding == "float":
        return vectors.rows()
    array = vectors.array().astype("<f4")
    return [base64.b64encode(row.tobytes()).decode() for row in array]


async def models(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    created = int(time.time())
    data = [
        {
            "id": mid,
            "object": "model",
            "created": created,
            "owned_by": runtime.models.model_for(mid) or "wai",
        }
        for mid in runtime.answering_ids()
    ]
    return JSONResponse({"object": "list", "data": data})


for base in ("/v1", "/client/v4/accounts/{account_id}/ai/v1"):
    router.add_api_route(
        f"{base}/chat/completions",
        chat_completions,
        methods=["POST"],
        summary="OpenAI chat completions",
    )
    router.add_api_route(
        f"{base}/completions", completions, methods=["POST"], summary="OpenAI completions"
    )
    router.add_api_route(f"{base}/models", models, methods=["GET"], summary="OpenAI models")
    router.add_api_route(
        f"{base}/embeddings", embeddings, methods=["POST"], summary="OpenAI embeddings"
    )
router.add_api_route(
    "/v1/rerank", rerank, methods=["POST"], summary="Rerank (llama.cpp's server, vLLM, Jina)"
)
