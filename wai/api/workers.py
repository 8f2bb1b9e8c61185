"""The Workers AI REST route: POST /client/v4/accounts/{account_id}/ai/run/{model}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from wai.api.access import track
from wai.api.body import read_json
from wai.api.errors import ABORTED, CFError
from wai.api.framing import (
    cf_result,
    cf_sse,
    failed_error,
    json_response,
    refuse_json_stream,
    to_cf_error,
    usage_dict,
)
from wai.api.generation import GenerationResponse, collect
from wai.engine.base import EngineError, Failed, Generation
from wai.errors import RequestError
from wai.runtime import Runtime, Served
from wai.schemas.text_generation import TextGenerationInput, parse_text_generation

router = APIRouter()


@router.post("/client/v4/accounts/{account_id}/ai/run/{model:path}")
async def run_model(request: Request, account_id: str, model: str) -> Response:
    runtime: Runtime = request.app.state.runtime
    request_id: str = request.state.request_id
    try:
        body = await read_json(request, runtime.settings.limits.max_body_bytes)
        inputs = parse_text_generation(body)
        refuse_json_stream(inputs)
        served, generation = await runtime.submit(model, inputs)
        track(request, served, generation, inputs)  # access log, usage
    except (CFError, RequestError, EngineError) as e:
        return to_cf_error(e).response(request_id)
    headers = {"x-wai-model": served.local_name, "cf-ai-req-id": request_id}
    if inputs.stream:
        return GenerationResponse(generation, cf_sse(generation), headers)
    return await _complete(request, served, generation, request_id, headers, inputs)


async def _complete(
    request: Request,
    served: Served,
    generation: Generation,
    request_id: str,
    headers: dict[str, str],
    inputs: TextGenerationInput,
) -> Response:
    done = await collect(request, generation)
    if done is None:
        return CFError.inference(
            408, ABORTED, "Aborted: the client closed the connection"
        ).response(request_id)
    if isinstance(done.final, Failed):
        return failed_error(done.final).response(request_id)
    result: dict[str, Any] = cf_result(done.text, done.calls, inputs)
    if inputs.json_schema is not None:
        try:
            result["response"] = json_response(done.text, done.final)
        except CFError as e:
            return e.response(request_id)
    result["usage"] = usage_dict(done.final.usage)
    return JSONResponse(
        {"result": result, "success": True, "errors": [], "messages": []}, headers=headers
    )
