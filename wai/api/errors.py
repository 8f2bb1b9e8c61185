"""Cloudflare v4 error envelopes and the codes wai answers with (spec §1.4, §1.5).

Inference-side errors carry `"result": {}` and an "AiError: " message ending with the request
id; gateway-side errors (auth, routing) carry `"result": null`. Key order follows captures:
errors, success, result, messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

# Workers AI / Cloudflare API codes.
BAD_INPUT = 5006
NO_SUCH_MODEL = 5007
REQUEST_TOO_LARGE = 3006
ABORTED = 3008
OUT_OF_CAPACITY = 3040
INTERNAL = 5000
MODEL_UNAVAILABLE = 3043  # wai's own: the model's weights could not be loaded
MISSING_AUTH = 9106
INVALID_HEADERS = 6003
INVALID_AUTH_FORMAT = 6111
AUTH_ERROR = 10000
NO_ROUTE = 7000
METHOD_NOT_ALLOWED = 7001


class CFError(Exception):
    """An error answered in the Cloudflare envelope."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        gateway: bool = False,
        chain: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.gateway = gateway
        self.chain = chain
        self.headers = dict(headers or {})

    @classmethod
    def inference(cls, status: int, code: int, message: str, **kw: Any) -> CFError:
        return cls(status, code, f"AiError: {message}", **kw)

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        message = self.message
        if not self.gateway and request_id:
            message = f"{message} ({request_id})"
        err: dict[str, Any] = {"code": self.code, "message": message}
        if self.chain:
            err["error_chain"] = self.chain
        return {
            "errors": [err],
            "success": False,
            "result": None if self.gateway else {},
            "messages": [],
        }

    def response(self, request_id: str | None = None) -> JSONResponse:
        headers = dict(self.headers)
        if request_id:
            headers["cf-ai-req-id"] = request_id
        return JSONResponse(self.body(request_id), status_code=self.status, headers=headers)


def bad_input(detail: str) -> CFError:
    return CFError.inference(400, BAD_INPUT, f"Bad input: Error: {detail}")
