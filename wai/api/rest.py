"""The Workers AI REST route: POST /client/v4/accounts/{account_id}/ai/run/{model}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from wai.api.body import read_json
from wai.api.errors import CFError
from wai.api.framing import to_cf_error
from wai.api.inference import ANSWERED, Wrapping, run_inference
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
    try:
        body = await read_json(request, runtime.settings.limits.max_body_bytes)
    except ANSWERED as e:
        return _error(to_cf_error(e), request.state.request_id)
    return await run_inference(request, model, body, REST)
