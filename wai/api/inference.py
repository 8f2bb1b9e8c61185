"""Workers AI's inference as the REST route and the Worker binding both answer it: the model
id's task picks the input schema (text generation or text embeddings); parse the inputs,
submit, then stream Workers AI's events or answer the whole result. The two routes differ only
in how they wrap it (the REST envelope or the bare output, and their error shapes): a
`Wrapping` says how."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wai.answers import cf_embeddings, cf_result
from wai.api.access import track
from wai.api.errors import ABORTED, CFError
from wai.api.framing import cf_sse, failed_error, refuse_json_stream, to_cf_error
from wai.api.generation import GenerationResponse, collect
from wai.backends.base import EngineError, Failed
from wai.catalog import TEXT_EMBEDDINGS
from wai.errors import RequestError
from wai.runtime import Runtime
from wai.schemas.embeddings import parse_embeddings
from wai.schemas.text_generation import parse_text_generation

# errors a route answers in its own shape
ANSWERED = (CFError, RequestError, EngineError)


@dataclass(frozen=True, slots=True)
class Wrapping:
    # a whole result (response, tool_calls, usage) and the headers -> the response
    result: Callable[[dict[str, Any], dict[str, str]], Response]
    # an error and the request id -> the response
    error: Callable[[CFError, str], Response]
    aborted: str  # the message when the client went away first


async def run_inference(
    request: Request, model_id: str, inputs: Any, wrapping: Wrapping
) -> Response:
    """Whatever the model id's task."""
    runtime: Runtime = request.app.state.runtime
    if runtime.models.spec_for(model_id).task == TEXT_EMBEDDINGS:
        return await run_embeddings(request, model_id, inputs, wrapping)
    return await run_text_generation(request, model_id, inputs, wrapping)


async def run_embeddings(
    request: Request, model_id: str, inputs: Any, wrapping: Wrapping
) -> Response:
    runtime: Runtime = request.app.state.runtime
    request_id: str = request.state.request_id
    try:
        parsed = parse_embeddings(inputs)
        served, generation = await runtime.submit(model_id, parsed)
        track(request, served, generation, parsed)  # access log, usage
    except ANSWERED as e:
        return wrapping.error(to_cf_error(e), request_id)
    headers = {"x-wai-model": served.model_name, "cf-ai-req-id": request_id}
    done = await collect(request, generation)
    if done is None:
        return wrapping.error(CFError.inference(408, ABORTED, wrapping.aborted), request_id)
    if isinstance(done.final, Failed) or done.vectors is None:
        failed = done.final if isinstance(done.final, Failed) else Failed("no vectors")
        return wrapping.error(failed_error(failed), request_id)
    return wrapping.result(cf_embeddings(done.vectors), headers)


async def run_text_generation(
    request: Request, model_id: str, inputs: Any, wrapping: Wrapping
) -> Response:
    runtime: Runtime = request.app.state.runtime
    request_id: str = request.state.request_id
    try:
        parsed = parse_text_generation(inputs)
        refuse_json_stream(parsed)
        served, generation = await runtime.submit(model_id, parsed)
        track(request, served, generation, parsed)  # access log, usage
    except ANSWERED as e:
        return wrapping.error(to_cf_error(e), request_id)
    headers = {"x-wai-model": served.model_name, "cf-ai-req-id": request_id}
    if parsed.stream:
        return GenerationResponse(generation, cf_sse(generation), headers)
    done = await collect(request, generation)
    if done is None:
        return wrapping.error(CFError.inference(408, ABORTED, wrapping.aborted), request_id)
    if isinstance(done.final, Failed):
        return wrapping.error(failed_error(done.final), request_id)
    try:
        result = cf_result(done.text, done.calls, done.final, parsed)
    except RequestError as e:  # JSON mode's object did not close
        return wrapping.error(to_cf_error(e), request_id)
    return wrapping.result(result, headers)
