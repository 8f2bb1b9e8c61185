"""Cloudflare v4 error envelopes and the codes wai answers with (spec §1.4, §1.5).

Inference-side errors carry `"result": {}` and an "AiError: " message ending with the request
id; gateway-side errors (auth, routing) carry `"result": null`. Key order follows captures:
errors, success, result, messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from wai.errors import (
    ABORTED,
    AUTH_ERROR,
    BAD_INPUT,
    INTERNAL,
    INVALID_AUTH_FORMAT,
    INVALID_HEADERS,
    METHOD_NOT_ALLOWED,
    MISSING_AUTH,
    MODEL_UNAVAILABLE,
    NO_ROUTE,
    NO_SUCH_MODEL,
    OUT_OF_CAPACITY,
    REQUEST_TOO_LARGE,
    bad_input_message,
)

__all__ = [
    "ABORTED",
    "AUTH_ERROR",
    "BAD_INPUT",
    "INTERNAL",
    "INVALID_AUTH_FORMAT",
    "INVALID_HEADERS",
    "METHOD_NOT_ALLOWED",
    "MISSING_AUTH",
    "MODEL_UNAVAILABLE",
    "NO_ROUTE",
    "NO_SUCH_MODEL",
    "OUT_OF_CAPACITY",
    "REQUEST_TOO_LARGE",
    "CFError",
    "bad_input",
    "error_response",
    "is_openai_path",
    "openai_error",
    "openai_from_cf",
]


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
    return CFError.inference(400, BAD_INPUT, bad_input_message(detail))


# --- the same errors, shaped for OpenAI clients (on the OpenAI-compatible routes) -------------

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
}
_OPENAI_CODES = {
    NO_SUCH_MODEL: "model_not_found",
    OUT_OF_CAPACITY: "rate_limit_exceeded",
    REQUEST_TOO_LARGE: "request_too_large",
    AUTH_ERROR: "invalid_api_key",
    MISSING_AUTH: "missing_api_key",
}


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/") or "/ai/v1/" in path


def openai_error(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "message": message,
            "type": _OPENAI_TYPES.get(status, "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def openai_from_cf(err: CFError) -> JSONResponse:
    """A Cloudflare error as OpenAI clients expect it: unknown model is a 404, a missing key a
    401; the Cloudflare code survives in `error.code` when OpenAI has no name for it."""
    status = {NO_SUCH_MODEL: 404, MISSING_AUTH: 401}.get(err.code, err.status)
    return openai_error(
        status,
        err.message.removeprefix("AiError: "),
        None,
        _OPENAI_CODES.get(err.code, str(err.code)),
        err.headers,
    )


def error_response(path: str, err: CFError, request_id: str | None = None) -> JSONResponse:
    """The error in the shape the route's clients read."""
    return openai_from_cf(err) if is_openai_path(path) else err.response(request_id)
