"""The ASGI application: create_app(settings) -> FastAPI. No module-level state."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

import wai
from wai.api import audio, binding, models, openai, openapi, playground, rest
from wai.api.access import Access, Allocation
from wai.api.auth import PUBLIC_PATHS, TokenAuth
from wai.api.errors import (
    AUTH_ERROR,
    BAD_INPUT,
    INTERNAL,
    METHOD_NOT_ALLOWED,
    NO_ROUTE,
    CFError,
    bad_input,
)
from wai.api.guard import EdgeGuard, RateLimit
from wai.api.metrics import Metrics, metrics_route
from wai.catalog import OWN_SHAPE_KINDS
from wai.queue import BatchQueue, QueueStore
from wai.runtime import Runtime
from wai.settings import Settings
from wai.usage import By, UsageStore

log = logging.getLogger("wai.api")


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime(settings)
    db = settings.usage_db or settings.cache_dir / "usage.db"
    usage = UsageStore(db)
    queue = BatchQueue(runtime, QueueStore(db))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        await queue.start()
        try:
            yield
        finally:
            await queue.close()
            await runtime.close()
            queue.store.close()
            usage.close()

    app = FastAPI(
        title="wai",
        version=wai.__version__,
        lifespan=lifespan,
        summary="A self-hosted, Workers AI-compatible LLM inference server",
    )
    app.state.runtime = runtime
    app.state.metrics = metrics = Metrics(runtime, queue)
    app.state.log_content = settings.log_content
    app.state.usage = usage
    app.state.queue = queue
    app.include_router(binding.router)  # first: its /ai/run/proxy before the REST route
    app.include_router(rest.router)
    app.include_router(openai.router)
    app.include_router(audio.router)
    app.include_router(models.router)
    app.include_router(playground.router)
    app.include_router(_health_routes(runtime))
    app.include_router(_service_routes(runtime, usage))
    app.add_api_route("/metrics", metrics_route, methods=["GET"], include_in_schema=False)
    openapi.install(app, settings, _model_ids(runtime), lambda: _vocab_size(runtime))
    app.add_exception_handler(CFError, _cf_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    _add_middleware(app, settings, metrics, usage, _task_of(runtime))
    return app


def _model_ids(runtime: Runtime) -> openapi.ModelIds:
    """The ids the OpenAPI document lists, by the body their route takes."""
    models = runtime.models
    kinds = {
        i: models.spec_for(i).kind if not models.needs_weights(i) else None
        for i in models.known_ids()
    }
    served = [i for i, kind in kinds.items() if kind is not None]
    return openapi.ModelIds(
        served,
        [i for i in served if kinds[i] == "text-embeddings"],
        [i for i in served if kinds[i] == "reranking"],
        {i: models.spec_for(i).schema for i in served if kinds[i] in OWN_SHAPE_KINDS},
    )


def _vocab_size(runtime: Runtime) -> int | None:
    """The smallest vocabulary of the loaded models (logit_bias token ids stay below it)."""
    sizes = (v for b in runtime.backends.values() if (v := b.n_vocab) is not None)
    return min(sizes, default=None)


def _task_of(runtime: Runtime) -> Callable[[Scope], str]:
    """An inference request's task (for its rate limit), before its body is read: from the
    route, or the model id in the path or the binding's header."""

    def task(scope: Scope) -> str:
        path: str = scope["path"]
        if path.endswith("/embeddings"):
            return "text-embeddings"
        if path.endswith("/rerank"):
            return "reranking"
        if path.endswith("/audio/speech"):
            return "text-to-speech"
        if "/audio/" in path:
            return "automatic-speech-recognition"
        if "/ai/run/" in path:
            model = path.split("/ai/run/", 1)[1]
        elif path in ("/run", "/ai-gateway/run"):
            header = next((v for k, v in scope["headers"] if k == b"cf-consn-model-id"), b"")
            model = binding.model_of_header(header.decode("latin-1"))
        else:
            return "text-generation"
        return runtime.models.spec_for(model).kind or "text-generation"

    return task


def _add_middleware(
    app: FastAPI,
    settings: Settings,
    metrics: Metrics,
    usage: UsageStore,
    task_of: Callable[[Scope], str],
) -> None:
    # outermost last: request counting, edge checks, auth, per-token rate limits, then the
    # allocation (which reads the usage database: only for requests that got this far)
    app.add_middleware(Allocation, usage=usage, daily_neurons=settings.daily_neurons)
    app.add_middleware(
        RateLimit,
        rpm=settings.rate_limit_rpm,
        per_task={str(k): v for k, v in settings.rate_limits.items()},
        task_of=task_of,
    )
    public = PUBLIC_PATHS | playground.PATHS | ({"/metrics"} if settings.metrics_public else set())
    app.add_middleware(TokenAuth, tokens=settings.tokens, access=settings.access, public=public)
    app.add_middleware(
        EdgeGuard,
        max_header_bytes=settings.limits.max_header_bytes,
        allowed_hosts=settings.allowed_hosts,
        loopback=settings.loopback,
    )
    # outermost: ids, counts and logs every answer
    app.add_middleware(
        Access,
        metrics=metrics,
        log_content=settings.log_content,
    )


def _health_routes(runtime: Runtime) -> APIRouter:
    """Liveness and readiness, public, for load balancers and orchestrators."""
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> Response:
        failed = runtime.failures()
        answering = sorted(n for n in runtime.backends if n not in failed)
        if not runtime.ready or not answering:
            return JSONResponse(
                {"status": "loading" if not runtime.ready else "no model", "failed": failed},
                status_code=503,
            )
        runs = {
            name: report.public()
            for name, b in runtime.backends.items()
            if (report := b.report()) is not None
        }
        return JSONResponse({"status": "ok", "models": answering, "failed": failed, "runs": runs})

    @router.get("/readyz")
    async def readyz() -> Response:
        """Readiness, for load balancers and Kubernetes (liveness is /healthz)."""
        reasons = runtime.readiness()
        if reasons:
            return JSONResponse(
                {"status": "not ready", "reasons": reasons},
                status_code=503,
                headers={"retry-after": "1"},
            )
        return JSONResponse({"status": "ready", "models": sorted(runtime.backends)})

    return router


def _service_routes(runtime: Runtime, usage: UsageStore) -> APIRouter:
    """wai's own routes behind the tokens: usage and stats."""
    router = APIRouter()

    @router.get("/wai/v1/usage")
    async def usage_report(
        request: Request,
        since: Annotated[
            str | None,
            Query(
                pattern=r"^[1-9]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$",
                json_schema_extra={"format": "date"},
            ),
        ] = None,
        account: Annotated[str | None, Query(max_length=256)] = None,
        by: By = "model",
    ) -> dict[str, Any]:
        """Requests, tokens and neurons per account and model (or day, or account), from
        `since` (a UTC day, YYYY-MM-DD) on; what `wai usage` prints."""
        try:
            day = date.fromisoformat(since) if since is not None else None
        except ValueError:
            raise bad_input(f"'since': not a date: {since}") from None
        scope = request.state.identity.accounts  # a scoped token sees its own accounts only
        if scope is not None and account is not None and account not in scope:
            raise CFError(403, AUTH_ERROR, "Authentication error", gateway=True)
        rows = usage.report(day, account, by)
        if scope is not None:
            rows = [r for r in rows if r["account"] in scope]
        return {"by": by, "since": since, "account": account, "usage": rows}

    @router.get("/wai/v1/stats")
    async def stats() -> dict[str, Any]:
        """Counters per loaded model (slots, queue, finished and cancelled requests; for an
        upstream model its replicas' capacity), and the registry: every model's state, bytes,
        loads and unloads."""
        registry = asdict(runtime.registry.report()) if runtime.registry is not None else {}
        return {
            "models": {name: asdict(s) for name, s in runtime.stats().items()},
            "registry": registry,
            "upstreams": {name: d for name, b in runtime.backends.items() if (d := b.details())},
        }

    return router


async def _cf_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CFError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err = CFError(404, NO_ROUTE, "No route for that URI", gateway=True)
    elif exc.status_code == 405:
        err = CFError(
            405, METHOD_NOT_ALLOWED, "Method not allowed", gateway=True, headers=exc.headers
        )
    else:
        err = CFError(exc.status_code, exc.status_code, str(exc.detail), gateway=True)
    return err.response()


async def _validation_error(request: Request, exc: Exception) -> Response:
    return CFError(400, BAD_INPUT, "Bad input", gateway=True).response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Never a traceback on the wire; the log keeps it.
    request_id = getattr(request.state, "request_id", None) or str(uuid.uuid4())
    log.exception("internal error (%s) on %s %s", request_id, request.method, request.url.path)
    return CFError.inference(500, INTERNAL, "Internal error").response(request_id)
