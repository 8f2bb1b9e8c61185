"""Bearer-token auth as a pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streams).

With tokens configured, every route but /healthz and /readyz needs `Authorization: Bearer
<token>`, and each candidate is compared in constant time (hmac.compare_digest over all tokens,
no early exit). With none configured the server is in open local mode and accepts any
request; the CLI refuses to start that way on a non-loopback address.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from wai.api.errors import (
    AUTH_ERROR,
    INVALID_AUTH_FORMAT,
    INVALID_HEADERS,
    MISSING_AUTH,
    CFError,
    error_response,
)

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
_TOKEN_FORMAT = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")


def check_authorization(header: str | None, tokens: Sequence[bytes]) -> None:
    """Raise CFError unless the header carries one of `tokens`."""
    if header is None:
        raise CFError(
            400,
            MISSING_AUTH,
            "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
            gateway=True,
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not _TOKEN_FORMAT.fullmatch(token):
        raise CFError(
            400,
            INVALID_HEADERS,
            "Invalid request headers",
            gateway=True,
            chain=[
                {"code": INVALID_AUTH_FORMAT, "message": "Invalid format for Authorization header"}
            ],
        )
    presented = token.encode()
    ok = False
    for candidate in tokens:
        ok |= hmac.compare_digest(presented, candidate)
    if not ok:
        raise CFError(401, AUTH_ERROR, "Authentication error", gateway=True)


class TokenAuth:
    def __init__(
        self, app: ASGIApp, tokens: Sequence[str], public: frozenset[str] = PUBLIC_PATHS
    ) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        try:
            check_authorization(header, self.tokens)
        except CFError as e:
            await error_response(scope["path"], e)(scope, receive, send)
            return
        await self.app(scope, receive, send)
