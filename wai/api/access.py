"""Per HTTP request, around everything else (ASGI middleware: streams are not buffered): a
request id, counted in the metrics and in usage, and one access-log line; and, after auth, the
daily neuron allocation.

- The id is Workers AI's `cf-ai-req-id`: every response carries it, error messages end with it
  in parentheses, and the log line has it. Routes read it from `request.state.request_id`.
- The access log is one JSON object per line on logger `wai.access`: id, method, route,
  account, a fingerprint of the token (never the token), local model, status, prompt,
  completion and cached tokens, time to first token and total time. Prompts and outputs are
  logged only with `log_content = true`. Health checks and scrapes log at DEBUG, everything
  else at INFO.
- Usage (usage.py) is counted per account (the URL's account id, else the token's default
  account, else "default"), token fingerprint and model id when a generation finishes
  (`track`), before its last bytes go out: a client that has its answer has been counted,
  whatever happens to the server next.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wai.api.auth import Identity, is_queued
from wai.api.errors import CFError, error_response
from wai.api.guard import is_inference
from wai.api.metrics import Metrics
from wai.backends.base import Event, Finished, Generation
from wai.errors import ACCOUNT_LIMITED, AllocationSpent
from wai.runtime import Served
from wai.schemas.embeddings import EmbeddingInput
from wai.schemas.text_generation import TextGenerationInput
from wai.usage import UsageStore

log = logging.getLogger("wai.access")
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def identity_of(scope: Scope) -> Identity:
    """The request's identity, as auth found it (a request refused before auth has none)."""
    identity: Identity | None = scope.get("state", {}).get("identity")
    return identity if identity is not None else Identity("-", "-")


class Allocation:
    """The daily neuron allocation (after auth: only an authenticated request reaches the
    usage database, and off the event loop). An inference request whose allocation key (its
    scoped token's account, a plain token's own) has spent `daily_neurons` today gets
    429/3036 before anything runs, as on Workers Free."""

    def __init__(self, app: ASGIApp, usage: UsageStore, daily_neurons: float) -> None:
        self.app = app
        self.usage = usage
        self.daily_neurons = daily_neurons

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # the batch queue checks the allocation itself: when a batch is queued and when each
        # item runs, never when its results are polled
        if (
            scope["type"] != "http"
            or self.daily_neurons <= 0
            or not is_inference(scope)
            or is_queued(scope)
        ):
            await self.app(scope, receive, send)
            return
        identity: Identity = scope["state"]["identity"]
        whose = identity.allocation(scope["path"])
        spent = await asyncio.to_thread(lambda: self.usage.neurons_on(**whose))
        if spent < self.daily_neurons:
            await self.app(scope, receive, send)
            return
        err = CFError.inference(
            429, ACCOUNT_LIMITED, AllocationSpent(self.daily_neurons, spent).message
        )
        scope["state"]["refused"] = True
        await error_response(scope["path"], err, scope["state"]["request_id"])(scope, receive, send)


class Access:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        log_content: bool = False,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.log_content = log_content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.monotonic()
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        seen: dict[str, Any] = {"status": 500, "model": ""}
        app = self.app

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                headers = list(message.get("headers", []))
                for name, value in headers:
                    if name == b"x-wai-model":
                        seen["model"] = value.decode("latin-1")
                if not any(name == b"cf-ai-req-id" for name, _ in headers):
                    headers.append((b"cf-ai-req-id", request_id.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await app(scope, receive, watch)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, seen["model"], str(seen["status"])).inc()
            level = logging.DEBUG if scope["path"] in QUIET_PATHS else logging.INFO
            if log.isEnabledFor(level):
                line = self._line(scope, route, seen, t0)
                if self.log_content:
                    line.update(_content(scope))
                log.log(level, json.dumps(line, ensure_ascii=False))

    @staticmethod
    def _line(scope: Scope, route: str, seen: dict[str, Any], t0: float) -> dict[str, Any]:
        state = scope.get("state", {})
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "id": state.get("request_id"),
            "method": scope["method"],
            "route": route,
            "account": scope.get("path_params", {}).get("account_id"),
            "token": identity_of(scope).token,
            "model": seen["model"] or None,
            "status": seen["status"],
            "duration_ms": round((time.monotonic() - t0) * 1000, 1),
        }
        generation: Generation[Event] | None = state.get("generation")
        if generation is not None:
            final = generation.final
            if isinstance(final, Finished):
                line["prompt_tokens"] = final.usage.prompt_tokens
                line["completion_tokens"] = final.usage.completion_tokens
                line["cached_tokens"] = final.usage.cached_tokens
                line["finish_reason"] = final.reason
            elif generation.done:
                line["finish_reason"] = "failed" if final is not None else "cancelled"
            if generation.first_token_at is not None:
                ttft = generation.first_token_at - generation.submitted_at
                line["ttft_ms"] = round(ttft * 1000, 1)
        return line


def _content(scope: Scope) -> dict[str, Any]:
    """The prompt and the output (log_content = true only)."""
    state = scope.get("state", {})
    out: dict[str, Any] = {}
    inputs: TextGenerationInput | EmbeddingInput | None = state.get("inputs")
    if isinstance(inputs, EmbeddingInput):
        out["texts"] = list(inputs.texts())
    elif inputs is not None:
        if inputs.prompt is not None:
            out["prompt"] = inputs.prompt
        else:
            out["messages"] = [{"role": m.role, "content": m.text()} for m in inputs.messages or []]
    generation: Generation[Event] | None = state.get("generation")
    if generation is not None and generation.text is not None:
        out["output"] = "".join(generation.text)
    return out


def track(request: Request, served: Served, generation: Generation[Event], inputs: Any) -> None:
    """A route's generation, for the access log, the metrics and usage accounting. Usage is
    counted when the generation ends (its final event, before the route sends it on)."""
    state = request.state
    state.served, state.generation, state.inputs = served, generation, inputs
    app_state = request.app.state
    if app_state.log_content:
        generation.text = []  # kept for the log line
    metrics: Metrics = app_state.metrics
    metrics.observe(served, generation)
    usage: UsageStore = app_state.usage
    identity = identity_of(request.scope)
    account = identity.account_for(request.scope["path"])
    token = identity.token

    def count() -> None:
        final = generation.final
        if not isinstance(final, Finished):
            return  # cancelled or failed: nothing was delivered
        u = final.usage
        try:
            usage.add(
                account, token, served.model_id, u.prompt_tokens, u.completion_tokens,
                u.cached_tokens, audio_seconds=u.audio_seconds, characters=u.characters,
            )  # fmt: skip
        except sqlite3.Error:
            log.exception("usage not counted for %s", state.request_id)

    generation.add_done_callback(count)
