"""Edge checks as pure ASGI middleware: header size, Host allow-list, per-token rate limits.

- Header size: the HTTP parser accepts headers of any size, so the total is bounded here.
- Host: a server on loopback answers only requests addressed to a loopback name (or a
  configured one). A web page cannot then reach it through DNS rebinding, where an attacker's
  domain is re-pointed at 127.0.0.1 and the browser sends `Host: attacker.example`.
- Rate limits: a token bucket per Bearer token (requests per minute) on inference routes;
  past it, 429 with code 3021 and `Retry-After`, as Workers AI answers.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from wai.api.errors import INVALID_HEADERS, CFError, error_response
from wai.errors import RATE_LIMITED

HEADERS_TOO_LARGE = 6100  # wai's own chain code under 6003
HOST_NOT_ALLOWED = 6101
# workers-binding.ai: the Host that workerd's AI binding sends (a Cloudflare-owned name, so not
# one an attacker can point at this machine).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1", "workers-binding.ai")


class EdgeGuard:
    """Header size and Host checks, before anything else runs."""

    def __init__(
        self, app: ASGIApp, max_header_bytes: int, allowed_hosts: Sequence[str], loopback: bool
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        hosts = {h.lower() for h in allowed_hosts}
        if loopback:
            hosts |= set(LOOPBACK_NAMES)
        self.allowed = frozenset(hosts)  # empty: any Host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if size > self.max_header_bytes:
            err = CFError(
                431,
                INVALID_HEADERS,
                "Invalid request headers",
                gateway=True,
                chain=[
                    {
                        "code": HEADERS_TOO_LARGE,
                        "message": f"headers total {size} bytes, over {self.max_header_bytes}",
                    }
                ],
            )
            await error_response(scope["path"], err)(scope, receive, send)
            return
        if self.allowed and _host(scope) not in self.allowed:
            err = CFError(
                400,
                INVALID_HEADERS,
                "Invalid request headers",
                gateway=True,
                chain=[{"code": HOST_NOT_ALLOWED, "message": "Host header not allowed"}],
            )
            await error_response(scope["path"], err)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _host(scope: Scope) -> str:
    for k, v in scope["headers"]:
        if k == b"host":
            host: str = bytes(v).decode("latin-1").lower()
            if host.startswith("["):  # [::1]:8787
                return host[: host.find("]") + 1]
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return ""


class TokenBuckets:
    """Requests per minute per key; `take` returns 0 when allowed, else seconds to wait.

    Memory is bounded two ways. Buckets are kept least recently used first, and one that has
    refilled to capacity is the same as no bucket at all, so each call drops such buckets from
    the front (amortised O(1)): a minute after a burst of distinct keys, none is left. And past
    `max_keys` the least recently used key is forgotten, which at worst hands that key a full
    bucket early (in open local mode any Authorization value is a new key)."""

    def __init__(
        self, rpm: int, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000
    ) -> None:
        self.capacity = float(rpm)
        self.rate = rpm / 60.0
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # (tokens, time)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        now = self.clock()
        self._prune(now)
        tokens, last = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)  # most recently used: last
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return 0.0 if allowed else (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        while self._buckets:
            tokens, last = next(iter(self._buckets.values()))
            if tokens + (now - last) * self.rate < self.capacity:
                return
            self._buckets.popitem(last=False)


INFERENCE_SUFFIXES = ("/chat/completions", "/completions", "/embeddings", "/rerank")


def is_inference(scope: Scope) -> bool:
    path: str = scope["path"]
    return scope["method"] == "POST" and (
        "/ai/run/" in path
        or path in ("/run", "/ai-gateway/run")
        or path.endswith(INFERENCE_SUFFIXES)
    )


class RateLimit:
    """Per-token requests per minute on inference routes (runs after auth): `rpm` for every
    task, `per_task` overriding it for a task (`task_of` says a request's, from its route or
    model id), each task its own buckets."""

    def __init__(
        self,
        app: ASGIApp,
        rpm: int,
        per_task: Mapping[str, int] | None = None,
        task_of: Callable[[Scope], str] = lambda scope: "text-generation",
    ) -> None:
        self.app = app
        self.rpm = rpm
        self.per_task = dict(per_task or {})
        self.task_of = task_of
        self._buckets: dict[str, TokenBuckets] = {}

    def buckets(self, task: str) -> TokenBuckets | None:
        rpm = self.per_task.get(task, self.rpm)
        if rpm <= 0:
            return None
        if task not in self._buckets:
            self._buckets[task] = TokenBuckets(rpm)
        return self._buckets[task]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limited = scope["type"] == "http" and (self.rpm > 0 or self.per_task)
        buckets = self.buckets(self.task_of(scope)) if limited and is_inference(scope) else None
        if buckets is None:
            await self.app(scope, receive, send)
            return
        # keyed by who auth found (never the raw header: `bearer` and `Bearer` are one token)
        wait = buckets.take(scope["state"]["identity"].key)
        if wait > 0:
            err = CFError.inference(
                429,
                RATE_LIMITED,
                "rate limiting: inference request per min rate reached",
                headers={"retry-after": str(math.ceil(wait))},
            )
            await error_response(scope["path"], err)(scope, receive, send)
            return
        await self.app(scope, receive, send)
