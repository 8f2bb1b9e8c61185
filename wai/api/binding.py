"""The Worker binding's wire protocol (worker-binding.md §2): what workerd's
`cloudflare-internal:ai-api` module sends through its fetcher when Worker code calls
`env.AI.run(model, inputs, options)`.

Request: `POST /run?version=3` (or `/ai-gateway/run?version=3`), the model in header
`cf-consn-model-id` (`[prefix:]model`), body `{"inputs": …, "options": …}`. Reply: the bare
output with Content-Type exactly `application/json`, or the Workers AI SSE stream, and header
`cf-ai-req-id`; errors as `{"internalCode", "name", "message", "description"}` with a non-2xx
status, which the binding raises as `InferenceUpstreamError("<code>: <description>")`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from wai.api.access import track
from wai.api.body import read_json
from wai.api.errors import ABORTED, CFError, bad_input
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
from wai.engine.base import EngineError, Failed
from wai.errors import RequestError
from wai.runtime import Runtime
from wai.schemas.text_generation import parse_text_generation

router = APIRouter()

DEPRECATED_SDK = 5019
_NAMES = {
    5006: "InvalidInput",
    5007: "NoSuchModel",
    3006: "RequestTooLarge",
    3040: "OutOfCapacity",
    3008: "Aborted",
    5019: "DeprecatedSdkVersion",
}


def binding_error(err: CFError, request_id: str) -> JSONResponse:
    description = f"{err.message.removeprefix('AiError: ')} ({request_id})"
    name = _NAMES.get(err.code, "AiError")
    body = {
        "internalCode": err.code,
        "name": name,
        "message": f"{name}: {description}",
        "description": description,
    }
    headers = {**err.headers, "cf-ai-req-id": request_id}
    return JSONResponse(body, status_code=err.status, headers=headers)


@router.post("/run", include_in_schema=True, summary="Worker AI binding protocol (version=3)")
async def binding_run(request: Request) -> Response:
    return await run_binding(request)


@router.post("/ai-gateway/run", summary="Worker AI binding protocol, through AI Gateway")
async def binding_gateway_run(request: Request) -> Response:
    return await run_binding(request)


# wrangler dev's remote AI fetcher: the binding protocol, forwarded with the original URL in
# X-Forwarded. Registered before the REST route, whose {model:path} would match it too.
@router.post("/client/v4/accounts/{account_id}/ai/run/proxy", include_in_schema=False)
async def binding_wrangler_proxy(request: Request, account_id: str) -> Response:
    return await run_binding(request)


async def run_binding(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    request_id: str = request.state.request_id
    try:
        if _version(request) != "3":
            raise CFError.inference(
                405,
                DEPRECATED_SDK,
                "Deprecated SDK version: this server "
                "speaks the binding protocol version 3 (@cloudflare/ai "
                "1.2.x, or env.AI.run)",
            )
        model_id = request.headers.get("cf-consn-model-id", "")
        if not model_id:
            raise bad_input("missing header cf-consn-model-id")
        model_id = (model_id.split(":", 1)[1] if ":" in model_id else model_id).strip()
        inputs = _inputs(await read_json(request, runtime.settings.limits.max_body_bytes))
        parsed = parse_text_generation(inputs)
        refuse_json_stream(parsed)
        served, generation = await runtime.submit(model_id, parsed)
        track(request, served, generation, parsed)  # access log, usage
    except (CFError, RequestError, EngineError) as e:
        return binding_error(to_cf_error(e), request_id)
    headers = {"x-wai-model": served.local_name, "cf-ai-req-id": request_id}
    if parsed.stream:
        return GenerationResponse(generation, cf_sse(generation), headers)
    done = await collect(request, generation)
    if done is None:
        return binding_error(CFError.inference(408, ABORTED, "Aborted"), request_id)
    if isinstance(done.final, Failed):
        return binding_error(failed_error(done.final), request_id)
    result: dict[str, Any] = cf_result(done.text, done.calls, parsed)
    if parsed.json_schema is not None:
        try:
            result["response"] = json_response(done.text, done.final)
        except CFError as e:
            return binding_error(e, request_id)
    return JSONResponse({**result, "usage": usage_dict(done.final.usage)}, headers=headers)


def _version(request: Request) -> str | None:
    """The protocol version: in the query, or, through wrangler's proxy route, in the query of
    the original URL it forwards in `X-Forwarded`."""
    forwarded = request.headers.get("x-forwarded")
    if forwarded:
        return parse_qs(urlsplit(forwarded).query).get("version", [None])[0]
    return request.query_params.get("version")


def _inputs(body: Any) -> Any:
    """The model inputs from `{"inputs", "options"}`; binding options that matter here
    (rejectIfBusy) are folded in where the REST schema expects them."""
    if not isinstance(body, dict) or "inputs" not in body:
        raise bad_input('expected a JSON object {"inputs": …, "options": …}')
    inputs, options = body["inputs"], body.get("options")
    if options is not None and not isinstance(options, dict):
        raise bad_input("'/options': Input should be an object")
    if isinstance(inputs, dict) and options and options.get("rejectIfBusy"):
        inputs = {**inputs, "options": {"rejectIfBusy": True}}
    return inputs
