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

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from wai.api.body import parse_json, read_body, too_large
from wai.api.errors import CFError, bad_input
from wai.api.framing import to_cf_error
from wai.api.inference import ANSWERED, Wrapping, body_limit, run_inference
from wai.api.queued import queue_requested, run_queued
from wai.runtime import Runtime
from wai.schemas.speech import RawAudio

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


def binding_error(err: CFError, request_id: str) -> Response:
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


def model_of_header(value: str) -> str:
    """The model id of a `cf-consn-model-id` header (`[prefix:]model`)."""
    return (value.split(":", 1)[1] if ":" in value else value).strip()


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


def _bare(result: dict[str, Any], headers: dict[str, str]) -> Response:
    return JSONResponse(result, headers=headers)


BINDING = Wrapping(_bare, binding_error, "Aborted")


async def run_binding(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
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
        model_id = model_of_header(model_id)
        limits = runtime.settings
        limit = body_limit(runtime, model_id)
        raw = await read_body(request, max(limits.queue.max_body_bytes, limit))
        if "userInputs" in request.query_params:  # an input that is a ReadableStream
            queued, inputs = False, _stream_inputs(request, raw)
        else:
            body = parse_json(raw)
            queued, inputs = _queued(body), _inputs(body)
        if not queued and len(raw) > limit:
            raise too_large(limit)
    except ANSWERED as e:
        return binding_error(to_cf_error(e), request.state.request_id)
    if queued:
        return await run_queued(request, model_id, inputs, BINDING)
    return await run_inference(request, model_id, inputs, BINDING)


def _queued(body: Any) -> bool:
    """`env.AI.run(model, inputs, {queueRequest: true})`: the batch queue (a batch body may
    be as large as the queue allows, others as large as `limits.max_body_bytes`)."""
    options = body.get("options") if isinstance(body, dict) else None
    return isinstance(options, dict) and queue_requested(options.get("queueRequest"))


def _stream_inputs(request: Request, raw: bytes) -> RawAudio:
    """workerd's binding with a ReadableStream input (nova-3's `audio: {body: stream,
    contentType}`): the stream is the request body, the other inputs JSON in the query's
    `userInputs`, the binding's options query parameters beside it."""
    try:
        fields = json.loads(request.query_params["userInputs"])
    except ValueError:
        raise bad_input("'userInputs': not valid JSON") from None
    if not isinstance(fields, dict):
        raise bad_input("'userInputs': expected a JSON object")
    query = request.query_params
    if queue_requested(query.get("queueRequest")):
        raise bad_input(
            "queueRequest with a ReadableStream input: the batch queue takes JSON inputs (the "
            "audio's bytes in the inputs)"
        )
    if queue_requested(query.get("rejectIfBusy")):
        fields = {**fields, "options": {"rejectIfBusy": True}}
    return RawAudio(raw, fields)


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
