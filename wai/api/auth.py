"""Bearer-token auth as a pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streams).

With tokens configured, every route but the public ones needs `Authorization: Bearer <token>`
(the scheme in any case, as HTTP allows). Tokens are kept only as SHA-256 digests: a config may
give a token's value or `sha256:<hex>`; the presented token's digest is compared with every
candidate in constant time (hmac.compare_digest over all of them, no early exit).

A match is an `Identity`, put in the request's state for everything after auth: the rate
limiter, the allocation and usage key on it, never on the raw header or an unauthenticated
URL segment. A token entry of `[access.NAME]` names its accounts and permissions, as
Cloudflare's API tokens do; a request outside them gets `10000 Authentication error` (403). A
plain token (`tokens`, `--token`, `WAI_TOKENS`) may use any account id, but its allocation and
limits are its own. With no tokens at all the server is in open local mode and accepts any
request; the CLI refuses to start that way on a non-loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from wai.api.errors import (
    AUTH_ERROR,
    INVALID_AUTH_FORMAT,
    INVALID_HEADERS,
    MISSING_AUTH,
    CFError,
    error_response,
)
from wai.api.guard import is_inference
from wai.settings import PERMISSIONS, AccessEntry

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
_TOKEN_FORMAT = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")
_HASHED = re.compile(r"sha256:([0-9a-f]{64})")
_ACCOUNT = re.compile(r"^/client/v4/accounts/([^/]+)/")
ALL = frozenset(PERMISSIONS)


def digest(token: str) -> bytes:
    """The SHA-256 a token is kept as: of its value, or as given (`sha256:<hex>`)."""
    hashed = _HASHED.fullmatch(token)
    return bytes.fromhex(hashed.group(1)) if hashed else hashlib.sha256(token.encode()).digest()


def fingerprint(token_digest: bytes) -> str:
    """A short, non-reversible name for a token (the start of its SHA-256): what logs, usage
    and metrics show."""
    return "sha256:" + token_digest.hex()[:12]


def url_account(path: str) -> str | None:
    match = _ACCOUNT.match(path)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is: its token's name for logs, the key its limits and allocation are
    kept under, and its scope (accounts None: any account id)."""

    token: str  # the token's fingerprint ("-" in open mode without one)
    key: str
    accounts: tuple[str, ...] | None = None
    permissions: frozenset[str] = ALL
    own_allocation: bool = False  # a plain token: its allocation is the token's own

    def account_for(self, path: str) -> str:
        """The account a request is counted under: the URL's (which the scope allows), else
        the token's default account, else "default"."""
        account = url_account(path)
        if account is not None:
            return account
        return self.accounts[0] if self.accounts else "default"

    def allocation(self, path: str) -> dict[str, str]:
        """Whose daily allocation a request draws on: a plain token's own, else the
        account's (keyword arguments of UsageStore.neurons_on)."""
        return {"token": self.token} if self.own_allocation else {"account": self.account_for(path)}


def is_queued(scope: Scope) -> bool:
    """A REST call to the batch queue (`?queueRequest=true`); the binding's says so in its
    body, and api/queued.py checks its permission."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return any(v.lower() in ("true", "1") for v in query.get("queueRequest", []))


def permission_for(scope: Scope) -> str | None:
    """The permission a route needs (None: any valid token)."""
    path: str = scope["path"]
    if is_inference(scope):
        return "queue" if is_queued(scope) else "inference"
    if path.endswith(("/models/search", "/models/schema", "/v1/models")):
        return "catalog"
    if path in ("/wai/v1/usage", "/wai/v1/stats", "/metrics"):
        return "usage"
    return None


def _scheme_and_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; raises CFError otherwise."""
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
    return token


def denied() -> CFError:
    return CFError(403, AUTH_ERROR, "Authentication error", gateway=True)


class Tokens:
    """The configured tokens, as digests, each with the identity it grants."""

    def __init__(self, plain: Sequence[str], access: Mapping[str, AccessEntry]) -> None:
        self._candidates: list[tuple[bytes, Identity]] = []
        for token in plain:
            d = digest(token)
            name = fingerprint(d)
            self._candidates.append((d, Identity(name, name, own_allocation=True)))
        for name, entry in access.items():
            d = digest(entry.token)
            accounts = tuple(entry.accounts) or None
            identity = Identity(
                fingerprint(d), f"access:{name}", accounts, frozenset(entry.permissions)
            )
            self._candidates.append((d, identity))

    def __bool__(self) -> bool:
        return bool(self._candidates)

    def identify(self, header: str | None) -> Identity:
        """The identity a header's token grants; raises CFError (9106, 6003, 10000)."""
        presented = hashlib.sha256(_scheme_and_token(header).encode()).digest()
        found: Identity | None = None
        for candidate, identity in self._candidates:  # every one compared: no early exit
            if hmac.compare_digest(presented, candidate):
                found = identity
        if found is None:
            raise CFError(401, AUTH_ERROR, "Authentication error", gateway=True)
        return found


def open_identity(header: str | None) -> Identity:
    """Open local mode: whoever asks. Limits key on the token presented, if any (its scheme
    in any case, as auth would read it)."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return Identity("-", "open:-")
    name = fingerprint(hashlib.sha256(token.encode()).digest())
    return Identity(name, f"open:{name}")


def check_scope(identity: Identity, scope: Scope) -> None:
    """Raise CFError 10000 unless the identity may use this route on this account."""
    needed = permission_for(scope)
    if needed is not None and needed not in identity.permissions:
        raise denied()
    account = url_account(scope["path"])
    if identity.accounts is not None and account is not None and account not in identity.accounts:
        raise denied()


def _header(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


class TokenAuth:
    def __init__(
        self,
        app: ASGIApp,
        tokens: Sequence[str],
        access: Mapping[str, AccessEntry] | None = None,
        public: Iterable[str] = PUBLIC_PATHS,
    ) -> None:
        self.app = app
        self.tokens = Tokens(tokens, access or {})
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = _header(scope)
        state = scope.setdefault("state", {})
        if not self.tokens or scope["path"] in self.public:
            state["identity"] = (
                open_identity(header) if not self.tokens else Identity("-", "public")
            )
            await self.app(scope, receive, send)
            return
        try:
            identity = self.tokens.identify(header)
            check_scope(identity, scope)
        except CFError as e:
            await error_response(scope["path"], e)(scope, receive, send)
            return
        state["identity"] = identity
        await self.app(scope, receive, send)
