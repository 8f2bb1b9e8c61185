"""The Workers AI REST route: POST /client/v4/accounts/{account_id}/ai/run/{model} (with
`?queueRequest=true`: the batch queue, api/queued.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from wai.api.body import read_audio_or_json, read_json
from wai.api.errors import CFError
from wai.api.framing import to_cf_error
from wai.api.inference import ANSWERED, Wrapping, body_limit, run_inference, takes_audio
from wai.api.queued import queue_requested, run_queued
from wai.runtime import Runtime

router = APIRouter()


def _envelope(result: dict[str, Any], headers: dict[str, str]) -> Response:
    return JSONResponse(
        {"result": result, "success": True, "errors": [], "messages": []}, headers=headers
    )


def _error(err: CFError, request_id: str) -> Response:
    return err.response(request_id)


REST = Wrapping(_envelope, _error, "Aborted: the client closed the connection")


@router.post("/client/v4/accounts/{account_id}/ai/run/{model:path}")
async def run_model(request: Request, account_id: str, model: str) -> Response:
    runtime: Runtime = request.app.state.runtime
    queued = queue_requested(request.query_params.get("queueRequest"))
    settings = runtime.settings
    limit = settings.queue.max_body_bytes if queued else body_limit(runtime, model)
    try:
        if takes_audio(runtime, model) and not queued:
            body = await read_audio_or_json(request, limit)
        else:
            body = await read_json(request, limit)
    except ANSWERED as e:
        return _error(to_cf_error(e), request.state.request_id)
    if queued:
        return await run_queued(request, model, body, REST)
    return await run_inference(request, model, body, REST)
