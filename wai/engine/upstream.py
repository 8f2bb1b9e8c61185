"""A model served by OpenAI-compatible servers: vLLM's `vllm serve`, llama.cpp's `llama-server`,
TGI, Ollama's `/v1`. wai keeps its API, tokens, limits, metrics and usage in front of them.

Each request becomes one streamed `/chat/completions` (messages) or `/completions` (a raw prompt)
call on one replica, whose chunks are relayed as `Delta`s, the calls it made as one `ToolCalls`,
then `Finished` with the upstream's usage. A reader task owns the HTTP exchange: cancelling the
generation (its client went away) cancels the task, which closes the connection, and the
upstream frees its slot (llama-server, vLLM and TGI all stop a request whose socket closed).

Replicas: the least-outstanding healthy replica with room takes a request. A replica is ejected
when it cannot be reached, or after `EJECT_AFTER` failures in a row, and re-admitted when an
active health check (`GET {url}/models`, every `health_interval_s`) passes again. A request
that fails before its first token is retried on another replica; once text has gone out it
never is: its stream ends with an error event.

Failures in Workers AI's terms: past `timeout_s` 408/3007; every replica busy (429/503) or
`max_in_flight` everywhere with rejectIfBusy 429/3040; an upstream 4xx 400/5006 with the
upstream's message; no replica reachable 503/3043.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from wai.engine.base import (
    Backend,
    Delta,
    EngineBusy,
    EngineStats,
    EngineStopped,
    Event,
    Failed,
    Finished,
    FinishReason,
    Generation,
    GenerationRequest,
    Message,
    ToolCall,
    ToolCalls,
    UpstreamError,
    Usage,
)
from wai.errors import (
    BAD_INPUT,
    MODEL_UNAVAILABLE,
    OUT_OF_CAPACITY,
    TIMEOUT,
    bad_input_message,
)
from wai.settings import Upstream

log = logging.getLogger("wai.upstream")

EJECT_AFTER = 2  # failures in a row (a refused connection ejects at once)
MAX_ERROR_BYTES = 65_536  # of an upstream's error body
HEALTH_TIMEOUT = 5.0


@dataclass(slots=True)
class Replica:
    config: Upstream
    model: str
    label: str  # "replica 2": what clients and public endpoints see (never the URL)
    healthy: bool = True
    outstanding: int = 0
    failures: int = 0  # in a row
    requests: int = 0
    errors: int = 0
    ejections: int = 0
    last_error: str | None = None
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = self.config.url.rstrip("/")

    @property
    def has_room(self) -> bool:
        return self.healthy and self.outstanding < self.config.max_in_flight

    def report(self, private: bool = False) -> dict[str, object]:
        """Its state; with `private`, its URL and model name too (for token holders only:
        they name hosts inside the deployment)."""
        where = {"url": self.url, "model": self.model} if private else {}
        return {
            "replica": self.label,
            **where,
            "healthy": self.healthy,
            "outstanding": self.outstanding,
            "max_in_flight": self.config.max_in_flight,
            "requests": self.requests,
            "errors": self.errors,
            "ejections": self.ejections,
            "last_error": self.last_error,
        }


class _Retry(Exception):
    """This attempt failed before any text went out: another replica may take the request."""

    def __init__(self, reason: str, *, eject: bool = False, busy: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.eject = eject
        self.busy = busy


class UpstreamBackend(Backend):
    def __init__(
        self,
        name: str,
        upstreams: list[Upstream],
        *,
        health_interval_s: float = 5.0,
        max_waiting: int = 64,
    ) -> None:
        if not upstreams:
            raise ValueError("an upstream model needs at least one upstream")
        self.name = name
        self.replicas = [
            Replica(u, u.model or name, f"replica {i + 1}") for i, u in enumerate(upstreams)
        ]
        self.health_interval_s = health_interval_s
        self.max_waiting = max_waiting
        self._client: httpx.AsyncClient | None = None
        self._health: asyncio.Task[None] | None = None
        self._room = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._rotate = itertools.count()
        self._waiting = 0
        self._finished = 0
        self._cancelled = 0
        self._failed = 0
        self._generated = 0

    # -- lifecycle --

    async def start(self) -> None:
        """Check every replica once (an unreachable one starts ejected), then keep checking.
        Never fails: a model whose replicas are all down answers 503 until one comes up."""
        if self._client is not None:
            return
        slots = sum(r.config.max_in_flight for r in self.replicas) + len(self.replicas)
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots),
            timeout=None,
            trust_env=False,  # an upstream is reached directly, never through a proxy variable
        )
        await self.check_health()
        self._health = asyncio.create_task(self._health_loop(), name=f"health-{self.name}")

    async def close(self) -> None:
        self._closed = True
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
        async with self._room:
            self._room.notify_all()

    # -- health --

    async def check_health(self) -> None:
        await asyncio.gather(*(self._check(r) for r in self.replicas))

    async def _check(self, replica: Replica) -> None:
        assert self._client is not None
        timeout = min(HEALTH_TIMEOUT, replica.config.connect_timeout_s + 1)
        try:
            r = await self._client.get(
                f"{replica.url}/models", headers=self._headers(replica), timeout=timeout
            )
            ok, why = r.status_code == 200, f"health check: HTTP {r.status_code}"
        except httpx.HTTPError as e:
            ok, why = False, f"health check: {_describe(e)}"
        if ok and not replica.healthy:
            replica.healthy, replica.failures = True, 0
            log.info("%s of %s (%s) is back", replica.label, self.name, replica.url)
            async with self._room:
                self._room.notify_all()
        elif not ok:
            replica.last_error = why
            if replica.healthy:
                self._eject(replica, why)

    async def _health_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.health_interval_s)
            with contextlib.suppress(Exception):
                await self.check_health()

    def _eject(self, replica: Replica, why: str) -> None:
        replica.healthy = False
        replica.ejections += 1
        log.warning("%s of %s (%s) ejected: %s", replica.label, self.name, replica.url, why)

    def _note_failure(self, replica: Replica, why: str, eject_now: bool) -> None:
        replica.errors += 1
        replica.failures += 1
        replica.last_error = why
        if replica.healthy and (eject_now or replica.failures >= EJECT_AFTER):
            self._eject(replica, why)

    # -- routing --

    def _pick(self, tried: set[int]) -> Replica | None:
        """The healthy replica with room and the fewest requests in flight (ties in turn)."""
        start = next(self._rotate)
        n = len(self.replicas)
        best: Replica | None = None
        for k in range(n):
            i = (start + k) % n
            r = self.replicas[i]
            if i in tried or not r.has_room:
                continue
            if best is None or r.outstanding < best.outstanding:
                best = r
        return best

    async def _acquire(self, tried: set[int], reject_if_busy: bool) -> Replica:
        """A replica for one attempt, waiting for room while every healthy one is full."""
        replica = self._pick(tried)
        if replica is None:
            healthy = [r for i, r in enumerate(self.replicas) if r.healthy and i not in tried]
            if not healthy:
                raise UpstreamError(503, MODEL_UNAVAILABLE, self._down_message(), retry_after=1)
            if reject_if_busy or self._waiting >= self.max_waiting:
                raise EngineBusy("Capacity temporarily exceeded, please try again.")
            self._waiting += 1
            try:
                async with self._room:
                    while (replica := self._pick(tried)) is None:
                        if self._closed:
                            raise EngineStopped(f"the model {self.name} is shutting down")
                        if not any(
                            r.healthy for i, r in enumerate(self.replicas) if i not in tried
                        ):
                            raise UpstreamError(
                                503, MODEL_UNAVAILABLE, self._down_message(), retry_after=1
                            )
                        await self._room.wait()
            finally:
                self._waiting -= 1
        replica.outstanding += 1
        replica.requests += 1
        return replica

    async def _release(self, replica: Replica) -> None:
        replica.outstanding -= 1
        async with self._room:
            self._room.notify_all()

    def _down_message(self) -> str:
        why = "; ".join(f"{r.label}: {r.last_error or 'down'}" for r in self.replicas)
        return f"no upstream of {self.name} is answering ({why})"

    # -- requests --

    async def submit(self, request: GenerationRequest) -> Generation:
        """Returns once a replica has accepted the request (HTTP 200), so that a refusal is
        answered as an error, not as a broken stream."""
        if self._closed or self._client is None:
            raise EngineStopped(f"the model {self.name} is shutting down")
        path, body = _body(request)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._relay(request, path, body, queue, opened))
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

        return Generation(request.request_id, _drain(queue), cancel)

    async def _relay(
        self,
        request: GenerationRequest,
        path: str,
        body: dict[str, Any],
        queue: asyncio.Queue[Event],
        opened: asyncio.Future[None],
    ) -> None:
        """Try replicas until one answers; relay its stream. Before the first text, a failure
        moves on to another replica; after it, the stream ends with Failed."""
        deadline = time.monotonic() + max(r.config.timeout_s for r in self.replicas)
        tried: set[int] = set()
        reasons: list[str] = []
        busy = False
        relay = _Relay(queue)
        try:
            while True:
                try:
                    replica = await asyncio.wait_for(
                        self._acquire(tried, request.reject_if_busy),
                        max(0.0, deadline - time.monotonic()),
                    )
                except TimeoutError:
                    raise UpstreamError(
                        408, TIMEOUT, f"timed out waiting for an upstream of {self.name}"
                    ) from None
                index = self.replicas.index(replica)
                tried.add(index)
                try:
                    await self._attempt(replica, path, body, relay, opened, deadline)
                    self._finished += 1
                    return
                except _Retry as e:
                    reasons.append(f"{replica.label}: {e.reason}")
                    busy = busy or e.busy
                    if not e.busy:
                        self._note_failure(replica, e.reason, e.eject)
                finally:
                    await self._release(replica)
                if len(tried) == len(self.replicas):
                    if busy:
                        raise EngineBusy("Capacity temporarily exceeded, please try again.")
                    raise UpstreamError(
                        503,
                        MODEL_UNAVAILABLE,
                        f"no upstream of {self.name} answered: {'; '.join(reasons)}",
                        retry_after=1,
                    )
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
            self._end_with(opened, queue, UpstreamError(500, 5000, f"upstream relay: {e}"))
        finally:
            self._generated += relay.completion_tokens or relay.deltas

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
        relay: _Relay,
        opened: asyncio.Future[None],
        deadline: float,
    ) -> None:
        assert self._client is not None
        cfg = replica.config
        timeout = httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s)
        payload = {**body, "model": replica.model}
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                async with self._client.stream(
                    "POST",
                    f"{replica.url}{path}",
                    json=payload,
                    headers=self._headers(replica),
                    timeout=timeout,
                ) as response:
                    if response.status_code != 200:
                        await self._refused(replica, response)
                    if not opened.done():
                        opened.set_result(None)
                    await relay.run(response)
            replica.failures = 0
        except TimeoutError:
            if relay.started:
                raise UpstreamError(
                    408, TIMEOUT, f"{self.name}: {replica.label} timed out mid-answer"
                ) from None
            raise UpstreamError(
                408, TIMEOUT, f"{self.name}: {replica.label} timed out ({cfg.timeout_s:g} s)"
            ) from None
        except httpx.TimeoutException as e:
            if relay.started:
                raise UpstreamError(
                    408, TIMEOUT, f"{self.name}: {replica.label} timed out mid-answer"
                ) from None
            if isinstance(e, httpx.ConnectTimeout | httpx.PoolTimeout):
                raise _Retry(_describe(e), eject=True) from None
            raise UpstreamError(
                408, TIMEOUT, f"{self.name}: {replica.label} timed out ({cfg.timeout_s:g} s)"
            ) from None
        except (httpx.HTTPError, _BrokenStream) as e:
            why = _describe(e)
            if relay.started:
                self._note_failure(replica, why, isinstance(e, httpx.TransportError))
                log.warning(
                    "%s of %s (%s) failed mid-answer: %s",
                    replica.label,
                    self.name,
                    replica.url,
                    why,
                )
                raise UpstreamError(
                    503, MODEL_UNAVAILABLE, f"{self.name}: {replica.label} failed mid-answer"
                ) from None
            raise _Retry(why, eject=isinstance(e, httpx.ConnectError)) from None

    async def _refused(self, replica: Replica, response: httpx.Response) -> None:
        """An upstream's non-200 answer, as a retry (5xx, busy) or the client's error (4xx)."""
        raw = b""
        async for chunk in response.aiter_bytes():
            raw += chunk
            if len(raw) >= MAX_ERROR_BYTES:
                break
        message = _error_message(raw[:MAX_ERROR_BYTES], response.status_code)
        status = response.status_code
        if status in (429, 503):
            raise _Retry(f"busy (HTTP {status})", busy=True)
        if status >= 500:
            log.warning(
                "%s of %s (%s): HTTP %d: %s", replica.label, self.name, replica.url, status, message
            )
            raise _Retry(f"HTTP {status}")
        if status == 408:
            raise UpstreamError(408, TIMEOUT, f"the upstream timed out: {message}")
        if status in (401, 403, 404):
            # wai's configuration (key, model name), not the client's request
            raise UpstreamError(
                503,
                MODEL_UNAVAILABLE,
                f"{self.name}: {replica.label} refused wai (HTTP {status}): {message}",
                retry_after=1,
            )
        raise UpstreamError(400, BAD_INPUT, bad_input_message(message))

    def _headers(self, replica: Replica) -> dict[str, str]:
        headers = {"accept-encoding": "identity"}  # an event stream is read as it comes
        key = replica.config.api_key
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    # -- reporting --

    @property
    def info(self) -> dict[str, object]:  # type: ignore[override]
        return {"kind": "upstream", "replicas": [r.report() for r in self.replicas]}

    def details(self) -> dict[str, object]:
        return {"replicas": [r.report(private=True) for r in self.replicas]}

    def stats(self) -> EngineStats:
        return EngineStats(
            slots_total=sum(r.config.max_in_flight for r in self.replicas),
            slots_busy=sum(r.outstanding for r in self.replicas),
            waiting=self._waiting,
            requests_finished=self._finished,
            requests_cancelled=self._cancelled,
            requests_failed=self._failed,
            tokens_generated=self._generated,
        )

    def unready(self) -> str | None:
        if not any(r.healthy for r in self.replicas):
            return self._down_message()
        if self._waiting >= self.max_waiting:
            return f"queue full ({self._waiting} waiting)"
        return None


class _BrokenStream(Exception):
    """The upstream's stream ended without its last chunk, or sent an error in it."""


class _Relay:
    """Reads one upstream's SSE stream into events: Delta per chunk of text, the tool calls
    assembled from their fragments, then Finished with the upstream's usage."""

    def __init__(self, queue: asyncio.Queue[Event]) -> None:
        self.queue = queue
        self.started = False  # text (or a call) has gone out: no more retries
        self.deltas = 0
        self.completion_tokens = 0

    async def run(self, response: httpx.Response) -> None:
        calls: dict[int, dict[str, str]] = {}
        reason: str | None = None
        usage: dict[str, Any] | None = None
        done = False
        events = _sse_data(response)
        async for data in events:
            if data == b"[DONE]":
                done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise _BrokenStream(f"not JSON: {data[:200]!r}") from None
            if not isinstance(chunk, dict):
                continue
            if "error" in chunk:
                raise _BrokenStream(_error_text(chunk["error"]))
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                reason = choice.get("finish_reason") or reason
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                if isinstance(text, str) and text:
                    self.started = True
                    self.deltas += 1
                    self.queue.put_nowait(Delta(text, -1))
                if isinstance(delta, dict) and delta.get("tool_calls"):
                    self.started = True
                    _merge_calls(calls, delta["tool_calls"])
        if not done and reason is None:
            raise _BrokenStream("the stream ended before its last chunk")
        parsed, leftover = _parse_calls(calls)
        if leftover:
            self.queue.put_nowait(Delta(leftover, -1))
        if parsed:
            self.queue.put_nowait(ToolCalls(parsed))
        finish: FinishReason = "length" if reason == "length" else "stop"
        counted = _usage(usage, self.deltas)
        self.completion_tokens = counted.completion_tokens
        self.queue.put_nowait(Finished(finish, counted))
        if done:
            await _read_to_end(events)


async def _read_to_end(events: AsyncIterator[bytes]) -> None:
    """Read what follows `[DONE]` (the end of the chunked body), so that the connection goes
    back to the pool: one left unread is closed, and the next request pays a new connection.
    An upstream that keeps the stream open past a second is closed after all."""
    with contextlib.suppress(TimeoutError, httpx.HTTPError, _BrokenStream):
        async with asyncio.timeout(1.0):
            async for _ in events:
                pass


async def _sse_data(response: httpx.Response) -> AsyncIterator[bytes]:
    """The `data:` payloads of an event stream, straight from the socket's bytes (httpx's line
    iterator decodes and re-splits every chunk: most of the relay's time). The request asks for
    no content encoding, so the raw bytes are the text."""
    buf = b""
    async for chunk in response.aiter_raw():
        buf = buf + chunk if buf else chunk
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            line = buf[start:end]
            start = end + 1
            if line.startswith(b"data:"):  # not blank lines, comments, pings
                yield line[5:].strip()
        buf = buf[start:]
    if buf.startswith(b"data:"):
        yield buf[5:].strip()


async def _drain(queue: asyncio.Queue[Event]) -> AsyncIterator[Event]:
    while True:
        ev = await queue.get()
        yield ev
        if isinstance(ev, Finished | Failed):
            return


def _body(request: GenerationRequest) -> tuple[str, dict[str, Any]]:
    """The OpenAI request for a generation: its path and body (the model is set per replica)."""
    s = request.sampling
    body: dict[str, Any] = {
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": request.max_tokens,
        "temperature": s.temperature,
    }
    optional = {
        "top_p": s.top_p,
        "top_k": s.top_k,
        "min_p": s.min_p,
        "seed": s.seed,
        "frequency_penalty": s.frequency_penalty,
        "presence_penalty": s.presence_penalty,
        # vLLM and TGI's name, and llama-server's
        "repetition_penalty": s.repetition_penalty,
        "repeat_penalty": s.repetition_penalty,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if s.logit_bias:
        body["logit_bias"] = {str(t): b for t, b in s.logit_bias}
    if request.stop:
        body["stop"] = list(request.stop)
    if request.ignore_eos:
        body["ignore_eos"] = True
    if request.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": request.json_schema, "strict": True},
        }
    if request.prompt is not None:
        body["prompt"] = request.prompt
        return "/completions", body
    body["messages"] = [_openai_message(m) for m in request.messages or ()]
    if request.tools is not None:
        body["tools"] = [t.openai() for t in request.tools.tools]
        named = request.tools.named
        body["tool_choice"] = (
            {"type": "function", "function": {"name": named}}
            if named is not None
            else request.tools.choice
        )
        body["parallel_tool_calls"] = request.tools.parallel
    return "/chat/completions", body


def _openai_message(m: Message) -> dict[str, Any]:
    out = m.as_dict()
    if m.tool_calls:
        out["tool_calls"] = [
            {
                **c,
                "function": {
                    **c["function"],
                    "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False),
                },
            }
            for c in m.tool_calls
        ]
    return out


def _merge_calls(calls: dict[int, dict[str, str]], fragments: Any) -> None:
    """OpenAI streams a call in pieces by index: id and name first, arguments in fragments."""
    if not isinstance(fragments, list):
        return
    for frag in fragments:
        if not isinstance(frag, dict):
            continue
        index = frag.get("index", len(calls))
        call = calls.setdefault(index if isinstance(index, int) else len(calls), {})
        if isinstance(frag.get("id"), str):
            call["id"] = frag["id"]
        fn = frag.get("function")
        if isinstance(fn, dict):
            if isinstance(fn.get("name"), str):
                call["name"] = call.get("name", "") + fn["name"]
            if isinstance(fn.get("arguments"), str):
                call["arguments"] = call.get("arguments", "") + fn["arguments"]


def _parse_calls(calls: dict[int, dict[str, str]]) -> tuple[list[ToolCall], str]:
    """The calls, with arguments as objects; a call whose arguments are not a JSON object
    is given back as text (nothing the upstream said is dropped)."""
    parsed: list[ToolCall] = []
    leftover = ""
    for i in sorted(calls):
        c = calls[i]
        raw = c.get("arguments", "") or "{}"
        try:
            args = json.loads(raw)
        except ValueError:
            args = None
        if not isinstance(args, dict) or not c.get("name"):
            leftover += json.dumps({"name": c.get("name", ""), "arguments": raw})
            continue
        parsed.append(ToolCall(c.get("id") or f"call_{i}", c["name"], args))
    return parsed, leftover


def _usage(usage: dict[str, Any] | None, deltas: int) -> Usage:
    """The upstream's usage; without one (an upstream that does not send it), the chunks
    counted as tokens."""
    if not usage:
        return Usage(0, deltas)
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        int(cached or 0),
    )


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err)


def _error_message(raw: bytes, status: int) -> str:
    """The message in an upstream's error body (OpenAI's, vLLM's, TGI's shapes), or its text."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:500] or f"HTTP {status}"
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if key in body:
                return _error_text(body[key])[:2000]
    return text[:500]


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _loop_time(deadline: float) -> float:
    """A time.monotonic() deadline on the event loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
