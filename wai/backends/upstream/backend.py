"""A model served by OpenAI-compatible servers: vLLM's `vllm serve`, llama.cpp's `llama-server`,
TGI, Ollama's `/v1`. wai keeps its API, tokens, limits, metrics and usage in front of them.

Each request is one streamed call on one replica (pool.py picks it; openai_format.py builds the
body and reads the answer). A reader task owns the HTTP exchange: cancelling the generation
(its client went away) cancels the task, which closes the connection, and the upstream frees
its slot (llama-server, vLLM and TGI all stop a request whose socket closed). A request that
fails before its first token is retried on another replica; once text has gone out it never
is: its stream ends with an error event.

Failures, as Workers AI codes: past `timeout_s` 3007; every replica busy (429/503) or
`max_in_flight` everywhere with rejectIfBusy 3040; an upstream 4xx 5006 with the upstream's
message; no replica reachable 3043.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx

from wai.backends.base import (
    Backend,
    EngineBusy,
    EngineStats,
    EngineStopped,
    Event,
    Failed,
    Generation,
    GenerationRequest,
    SynthesisRequest,
    TaskRequest,
    Text2TextRequest,
    TranscriptionRequest,
    TurnRequest,
    UpstreamError,
    UpstreamReport,
)
from wai.backends.upstream.openai_format import (
    BrokenStream,
    Relay,
    Retry,
    error_body,
    refusal,
    request_body,
)
from wai.backends.upstream.pool import Pool, Replica, busy, describe
from wai.backends.upstream.vectors_format import VectorsRelay, vectors_body
from wai.engines.llamacpp.types import queued_events
from wai.errors import INTERNAL, MODEL_UNAVAILABLE, OUT_OF_CAPACITY, TIMEOUT, InvalidInput
from wai.settings import Upstream

log = logging.getLogger("wai.upstream")

# An idle pooled connection is dropped before the upstream's own keep-alive timeout closes it
# (uvicorn's and so vLLM's and wai's 5 s; llama-server's is longer): at 5 s on both sides a
# request could take a connection in the instant the server closed it, and fail with "Server
# disconnected without sending a response" (seen on a health check every 5 s).
KEEPALIVE_EXPIRY_S = 2.0


class UpstreamBackend(Backend):
    def __init__(
        self,
        name: str,
        upstreams: list[Upstream],
        *,
        health_interval_s: float = 5.0,
        max_waiting: int = 64,
    ) -> None:
        self.name = name
        self.pool = Pool(name, upstreams, max_waiting)
        self.health_interval_s = health_interval_s
        self._client: httpx.AsyncClient | None = None
        self._health: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished = 0
        self._cancelled = 0
        self._failed = 0
        self._generated = 0

    @property
    def replicas(self) -> list[Replica]:
        return self.pool.replicas

    # -- lifecycle --

    async def start(self) -> None:
        """Check every replica once (an unreachable one starts ejected), then keep checking.
        Never fails: a model whose replicas are all down answers 503 until one comes up."""
        if self._client is not None:
            return
        slots = sum(r.config.max_in_flight for r in self.replicas) + len(self.replicas)
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=slots,
                max_keepalive_connections=slots,
                keepalive_expiry=KEEPALIVE_EXPIRY_S,
            ),
            timeout=None,
            trust_env=False,  # an upstream is reached directly, never through a proxy variable
        )
        await self.pool.check_health(self._client)
        self._health = asyncio.create_task(
            self.pool.health_loop(self._client, self.health_interval_s), name=f"health-{self.name}"
        )

    async def close(self) -> None:
        self.pool.closed = True
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        await self.pool.notify()

    # -- requests --

    async def submit(self, request: TaskRequest) -> Generation[Event]:
        """Returns once a replica has accepted the request (HTTP 200), so that a refusal is
        answered as an error, not as a broken stream."""
        if self.pool.closed or self._client is None:
            raise EngineStopped(f"the model {self.name} is shutting down")
        if isinstance(
            request, TranscriptionRequest | SynthesisRequest | TurnRequest | Text2TextRequest
        ):
            raise InvalidInput(
                f"{self.name} is served upstream: speech and text-to-text tasks are served "
                "locally only"
            )
        call = (
            request_body(request)
            if isinstance(request, GenerationRequest)
            else vectors_body(request)
        )
        queue: asyncio.Queue[Event] = asyncio.Queue()
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._relay(request, call, queue, opened))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.shield(opened)
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception:
            task.cancel()
            self._failed += 1
            raise

        def cancel() -> None:
            if not task.done():
                self._cancelled += 1
                task.cancel()

        return Generation(queued_events(queue), cancel)

    async def _relay(
        self,
        request: TaskRequest,
        call: tuple[str, dict[str, Any]],
        queue: asyncio.Queue[Event],
        opened: asyncio.Future[None],
    ) -> None:
        """Run the request to its end, however it ends: its outcome is on the queue (or, before
        the upstream accepted it, in `opened`)."""
        assert not isinstance(
            request, TranscriptionRequest | SynthesisRequest | TurnRequest | Text2TextRequest
        )
        relay = (
            Relay(queue) if isinstance(request, GenerationRequest) else VectorsRelay(queue, request)
        )
        try:
            await self._try_replicas(request, call, relay, opened)
            self._finished += 1
        except (UpstreamError, EngineBusy, EngineStopped) as e:
            self._end_with(opened, queue, e)
        except asyncio.CancelledError:
            if not opened.done():
                opened.cancel()
            # cancelled by its client (who reads no more), or by close(): then a reader may
            # still be waiting, and must not wait forever
            queue.put_nowait(Failed(f"the model {self.name} is shutting down", crashed=True))
            raise
        except Exception as e:  # a bug here must not leave the client waiting
            log.exception("relaying from an upstream of %s", self.name)
            self._end_with(opened, queue, UpstreamError(INTERNAL, f"upstream relay: {e}"))
        finally:
            self._generated += relay.completion_tokens or relay.deltas

    async def _try_replicas(
        self,
        request: TaskRequest,
        call: tuple[str, dict[str, Any]],
        relay: Relay,
        opened: asyncio.Future[None],
    ) -> None:
        """Replicas in turn until one answers: before the first text, a failure moves on to
        another replica; after it, the error ends the stream. `call`: the path and body."""
        path, body = call
        session = request.session if isinstance(request, GenerationRequest) else ""
        deadline = time.monotonic() + max(r.config.timeout_s for r in self.replicas)
        tried: set[int] = set()
        reasons: list[str] = []
        any_busy = False
        while len(tried) < len(self.replicas):
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    replica = await self.pool.acquire(tried, request.reject_if_busy, session)
            except TimeoutError:
                raise UpstreamError(
                    TIMEOUT, f"timed out waiting for an upstream of {self.name}"
                ) from None
            tried.add(self.replicas.index(replica))
            try:
                await self._attempt(replica, path, body, relay, opened, deadline)
                return
            except Retry as e:
                reasons.append(f"{replica.label}: {e.reason}")
                any_busy = any_busy or e.busy
                if not e.busy:
                    self.pool.note_failure(replica, e.reason, e.eject)
            finally:
                await self.pool.release(replica)
        if any_busy:
            raise busy()
        raise UpstreamError(
            MODEL_UNAVAILABLE,
            f"no upstream of {self.name} answered: {'; '.join(reasons)}",
            retry_after=1,
        )

    def _end_with(
        self, opened: asyncio.Future[None], queue: asyncio.Queue[Event], e: Exception
    ) -> None:
        if not opened.done():
            opened.set_exception(e)
            return
        self._failed += 1
        code = e.code if isinstance(e, UpstreamError) else OUT_OF_CAPACITY
        queue.put_nowait(Failed(str(e), crashed=code == MODEL_UNAVAILABLE, code=code))

    async def _attempt(
        self,
        replica: Replica,
        path: str,
        body: dict[str, Any],
        relay: Relay,
        opened: asyncio.Future[None],
        deadline: float,
    ) -> None:
        """One exchange with one replica. Raises Retry (nothing went out yet: another replica
        may take it) or UpstreamError."""
        assert self._client is not None
        cfg = replica.config
        timeout = httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s)
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                async with self._client.stream(
                    "POST",
                    f"{replica.url}{path}",
                    json={**body, "model": replica.model},
                    headers=replica.headers(),
                    timeout=timeout,
                ) as response:
                    if response.status_code != 200:
                        raise await self._refused(replica, response)
                    if not opened.done():
                        opened.set_result(None)
                    await relay.run(response)
            replica.failures = 0
        except (TimeoutError, httpx.TimeoutException) as e:
            raise self._timed_out(replica, relay, e) from None
        except (httpx.HTTPError, BrokenStream) as e:
            raise self._broken(replica, relay, e) from None

    async def _refused(self, replica: Replica, response: httpx.Response) -> Retry | UpstreamError:
        status, message = response.status_code, await error_body(response)
        if status >= 500:
            log.warning(
                "%s of %s (%s): HTTP %d: %s", replica.label, self.name, replica.url, status, message
            )
        return refusal(status, message, f"{self.name}: {replica.label}")

    def _timed_out(self, replica: Replica, relay: Relay, e: Exception) -> Retry | UpstreamError:
        """A timeout: before any text, a connection that never opened is another replica's
        turn; any other is the request's 3007."""
        if relay.started:
            return UpstreamError(TIMEOUT, f"{self.name}: {replica.label} timed out mid-answer")
        if isinstance(e, httpx.ConnectTimeout | httpx.PoolTimeout):
            return Retry(describe(e), eject=True)
        return UpstreamError(
            TIMEOUT, f"{self.name}: {replica.label} timed out ({replica.config.timeout_s:g} s)"
        )

    def _broken(self, replica: Replica, relay: Relay, e: Exception) -> Retry | UpstreamError:
        """A transport failure or a broken stream: a retry before any text, else the end."""
        why = describe(e)
        if not relay.started:
            return Retry(why, eject=isinstance(e, httpx.ConnectError))
        self.pool.note_failure(replica, why, isinstance(e, httpx.TransportError))
        log.warning(
            "%s of %s (%s) failed mid-answer: %s", replica.label, self.name, replica.url, why
        )
        return UpstreamError(MODEL_UNAVAILABLE, f"{self.name}: {replica.label} failed mid-answer")

    # -- reporting --

    def report(self) -> UpstreamReport:
        return UpstreamReport(tuple(r.report() for r in self.replicas))

    def details(self) -> dict[str, object]:
        return {"replicas": [r.report(private=True).as_dict() for r in self.replicas]}

    def stats(self) -> EngineStats:
        return EngineStats(
            slots_total=sum(r.config.max_in_flight for r in self.replicas),
            slots_busy=sum(r.outstanding for r in self.replicas),
            waiting=self.pool.waiting,
            requests_finished=self._finished,
            requests_cancelled=self._cancelled,
            requests_failed=self._failed,
            tokens_generated=self._generated,
        )

    def unready(self) -> str | None:
        return self.pool.unready()


def _loop_time(deadline: float) -> float:
    """A time.monotonic() deadline on the event loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
