"""The Workers AI REST route: POST /client/v4/accounts/{account_id}/ai/run/{model}."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from wai.api import sse
from wai.api.body import read_json
from wai.api.errors import (
    ABORTED,
    BAD_INPUT,
    INTERNAL,
    MODEL_UNAVAILABLE,
    NO_SUCH_MODEL,
    OUT_OF_CAPACITY,
    CFError,
    bad_input,
)
from wai.api.generation import collect, guarded
from wai.engine.base import (
    Delta,
    EngineBusy,
    EngineError,
    Failed,
    Finished,
    Generation,
    PromptTooLong,
    Usage,
)
from wai.errors import InvalidInput, ModelUnavailable, RequestError, UnknownModel
from wai.runtime import Runtime
from wai.schemas.text_generation import parse_text_generation

router = APIRouter()


def usage_dict(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return out


def to_cf_error(e: Exception) -> CFError:
    """Map what the lower layers raise about a request to its Cloudflare error."""
    if isinstance(e, CFError):
        return e
    if isinstance(e, UnknownModel):
        return CFError.inference(400, NO_SUCH_MODEL, f"No such model: {e.message}")
    if isinstance(e, ModelUnavailable):
        return CFError.inference(503, MODEL_UNAVAILABLE, e.message)
    if isinstance(e, InvalidInput | PromptTooLong):
        return bad_input(str(e))
    if isinstance(e, EngineBusy):
        return CFError.inference(429, OUT_OF_CAPACITY, str(e), headers={"retry-after": "1"})
    if isinstance(e, RequestError):
        return CFError.inference(400, BAD_INPUT, e.message)
    return CFError.inference(500, INTERNAL, "Internal error")


@router.post("/client/v4/accounts/{account_id}/ai/run/{model:path}")
async def run_model(request: Request, account_id: str, model: str) -> Response:
    if model == "proxy":  # wrangler dev's AI fetcher: the binding protocol, forwarded
        from wai.api.binding import run_binding

        return await run_binding(request)
    runtime: Runtime = request.app.state.runtime
    request_id = str(uuid.uuid4())
    try:
        body = await read_json(request, runtime.settings.limits.max_body_bytes)
        inputs = parse_text_generation(body)
        served, generation = runtime.submit(model, inputs)
    except (CFError, RequestError, EngineError) as e:
        return to_cf_error(e).response(request_id)
    headers = {"x-wai-model": served.local_name, "cf-ai-req-id": request_id}
    if inputs.stream:
        return StreamingResponse(cf_sse(generation), headers={**sse.HEADERS, **headers})
    return await _complete(request, generation, request_id, headers)


async def cf_sse(generation: Generation) -> AsyncIterator[bytes]:
    """Workers AI's stream: a padded event per token, a usage event, [DONE]. Also what the
    Worker binding passes through untouched."""
    async for ev in guarded(generation):
        if isinstance(ev, Delta):
            yield sse.event({"response": ev.text, "p": sse.padding(ev.text)})
        elif isinstance(ev, Finished):
            yield sse.event({"response": "", "usage": usage_dict(ev.usage)})
        else:
            yield sse.event({"response": "", "error": {"code": INTERNAL, "message": ev.message}})
    yield sse.DONE


async def _complete(
    request: Request, generation: Generation, request_id: str, headers: dict[str, str]
) -> Response:
    done = await collect(request, generation)
    if done is None:
        return CFError.inference(408, ABORTED, "Aborted: the client closed the connection") \
            .response(request_id)
    if isinstance(done.final, Failed):
        return CFError.inference(500, INTERNAL, done.final.message).response(request_id)
    result = {"response": done.text, "usage": usage_dict(done.final.usage)}
    return JSONResponse(
        {"result": result, "success": True, "errors": [], "messages": []}, headers=headers
    )
