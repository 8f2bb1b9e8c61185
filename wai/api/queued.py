"""The batch queue on the Workers AI routes: `?queueRequest=true` on REST, the option
`queueRequest: true` on the binding (wai/queue does the work). The answer is wrapped as the
route wraps any result: the REST envelope, or the binding's bare object."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wai.api.access import identity_of
from wai.api.auth import denied
from wai.api.framing import to_cf_error
from wai.api.inference import ANSWERED, Wrapping
from wai.queue import BatchQueue, Owner


def queue_requested(value: Any) -> bool:
    """`queueRequest` as a query parameter ("true") or a binding option (true)."""
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


async def run_queued(request: Request, model_id: str, body: Any, wrapping: Wrapping) -> Response:
    """Queue a batch, or poll one, for the request's account and token."""
    request_id: str = request.state.request_id
    queue: BatchQueue = request.app.state.queue
    identity = identity_of(request.scope)
    path: str = request.scope["path"]
    try:
        if "queue" not in identity.permissions:
            raise denied()
        owner = Owner(identity.account_for(path), identity.token, identity.allocation(path))
        result = await queue.run(model_id, body, owner)
    except ANSWERED as e:
        return wrapping.error(to_cf_error(e), request_id)
    return wrapping.result(result, {"cf-ai-req-id": request_id})
