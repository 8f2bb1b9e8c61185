"""The Python client: `Ai(...).run(model, inputs)` answers what the Worker binding answers.

    from wai import Ai
    ai = Ai()                                   # a local wai on 127.0.0.1:8787
    ai.run("@cf/meta/llama-2-7b-chat-int8", {"prompt": "Tell me a story"})
    # -> {"response": "...", "usage": {...}}
    ai.run("@cf/openai/whisper", open("talk.mp3", "rb").read())   # audio in: {"text", …}
    ai.run("@cf/deepgram/aura-2-en", {"text": "Hello"})           # audio out: bytes
    for event in ai.run(model, {"prompt": "…", "stream": True}):
        print(event["response"], end="")

Pointed at `https://api.cloudflare.com/client/v4` (with a real token and account id) it is a
client for Workers AI itself: the API is the same. `Ai.local()` runs the engine in this
process, with no server. Failures raise `AiError` carrying the Cloudflare code and message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8787/client/v4"
INTERNAL = 5000
MAX_RETRIES = 2  # on 429 (busy, rate limited), as the official SDKs do
MAX_RETRY_WAIT = 60.0  # seconds; a longer Retry-After is not waited for
T = TypeVar("T")


class AiError(Exception):
    """A failed call: `code` is the Cloudflare code (5006 bad input, 5007 no such model, …)."""

    def __init__(self, code: int, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _url(base_url: str, account_id: str, model: str) -> str:
    return f"{base_url.rstrip('/')}/accounts/{account_id}/ai/run/{model}"


CLOUDFLARE_API_HOST = "api.cloudflare.com"


def _headers(token: str | None, base_url: str) -> dict[str, str]:
    """The token given, else $WAI_TOKEN (meant for wai), else $CLOUDFLARE_API_TOKEN only when
    the client talks to Cloudflare's API, the one host it was meant for (never to a local wai
    or whatever other server `base_url` names)."""
    if token is None:
        token = os.environ.get("WAI_TOKEN")
    if token is None and httpx.URL(base_url).host == CLOUDFLARE_API_HOST:
        token = os.environ.get("CLOUDFLARE_API_TOKEN")
    return {"Authorization": f"Bearer {token or 'local'}"}


def _error(status: int, body: bytes) -> AiError:
    try:
        err = json.loads(body)["errors"][0]
        return AiError(int(err["code"]), str(err["message"]), status)
    except (ValueError, KeyError, IndexError, TypeError):
        return AiError(status, body.decode("utf-8", "replace")[:500], status)


def _result(resp: httpx.Response) -> Any:
    """The result of a whole answer; bytes where the model answers with audio (Aura)."""
    if resp.status_code >= 400:
        raise _error(resp.status_code, resp.content)
    if resp.headers.get("content-type", "").startswith("audio/"):
        return resp.content
    body = resp.json()
    if not body.get("success", False):
        raise _error(resp.status_code, resp.content)
    result: dict[str, Any] = body["result"]
    return result


def _body(inputs: dict[str, Any] | bytes) -> dict[str, Any]:
    """The request body: JSON, or the audio itself."""
    if isinstance(inputs, bytes | bytearray):
        return {"content": bytes(inputs), "headers": {"content-type": "application/octet-stream"}}
    return {"json": inputs}


def _event(line: str) -> dict[str, Any] | None:
    """One SSE line -> its event, or None (not data, or [DONE]). An error event (the stream
    failed after it started) raises AiError."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return None
    event: dict[str, Any] = json.loads(line[6:])
    error = event.get("error")
    if error is not None:
        if isinstance(error, dict):
            raise AiError(int(error.get("code") or 5000), str(error.get("message", "")))
        raise AiError(5000, str(error))
    return event


def _retry_wait(resp: httpx.Response, attempt: int) -> float | None:
    """Seconds to wait before retrying this response, or None: not retried."""
    if resp.status_code != 429:
        return None
    try:
        wait = float(resp.headers.get("retry-after", ""))
    except ValueError:
        wait = 0.5 * 2**attempt
    return wait if 0 <= wait <= MAX_RETRY_WAIT else None


class _Remote:
    """What both HTTP clients share: where to send, how to authenticate, when to retry."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        token: str | None = None,
        account_id: str = "local",
        timeout: float = 300.0,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        self.base_url = base_url
        self.account_id = account_id
        self.max_retries = max_retries
        self._http = self._open(_headers(token, base_url), timeout)

    def _open(self, headers: dict[str, str], timeout: float) -> Any:
        raise NotImplementedError

    def _url(self, model: str, queue_request: bool = False) -> str:
        url = _url(self.base_url, self.account_id, model)
        return f"{url}?queueRequest=true" if queue_request else url

    def _retry_after(self, resp: httpx.Response, attempt: int) -> float | None:
        return _retry_wait(resp, attempt) if attempt < self.max_retries else None


class Ai(_Remote):
    """Synchronous client."""

    _http: httpx.Client

    def _open(self, headers: dict[str, str], timeout: float) -> httpx.Client:
        return httpx.Client(headers=headers, timeout=timeout)

    @staticmethod
    def local(**settings: Any) -> LocalAi:
        """The engine in this process (no server): settings as in wai.toml."""
        return LocalAi(**settings)

    def run(
        self, model: str, inputs: dict[str, Any] | bytes, *, queue_request: bool = False
    ) -> Any:
        """`{"response": …, "usage": …}`, or with `"stream": True` an iterator of events.
        `inputs` as bytes: the audio itself (speech recognition, turn detection).
        `queue_request`: the batch queue (`{"requests": [...]}` to queue, `{"request_id"}` to
        poll), as the binding's `{queueRequest: true}`."""
        url = self._url(model, queue_request)
        if isinstance(inputs, dict) and inputs.get("stream") and not queue_request:
            return self._stream(url, inputs)
        for attempt in range(self.max_retries + 1):
            resp = self._http.post(url, **_body(inputs))
            wait = self._retry_after(resp, attempt)
            if wait is None:
                break
            time.sleep(wait)
        return _result(resp)

    def _stream(self, url: str, inputs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for attempt in range(self.max_retries + 1):
            with self._http.stream("POST", url, json=inputs) as resp:
                if resp.status_code >= 400:
                    wait = self._retry_after(resp, attempt)
                    if wait is None:
                        raise _error(resp.status_code, resp.read())
                else:
                    for line in resp.iter_lines():
                        event = _event(line)
                        if event is not None:
                            yield event
                    return
            time.sleep(wait)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Ai:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncAi(_Remote):
    """Asynchronous client: `await ai.run(...)`; streams are async iterators."""

    _http: httpx.AsyncClient

    def _open(self, headers: dict[str, str], timeout: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers=headers, timeout=timeout)

    async def run(
        self, model: str, inputs: dict[str, Any] | bytes, *, queue_request: bool = False
    ) -> Any:
        url = self._url(model, queue_request)
        if isinstance(inputs, dict) and inputs.get("stream") and not queue_request:
            return self._stream(url, inputs)
        for attempt in range(self.max_retries + 1):
            resp = await self._http.post(url, **_body(inputs))
            wait = self._retry_after(resp, attempt)
            if wait is None:
                break
            await asyncio.sleep(wait)
        return _result(resp)

    async def _stream(self, url: str, inputs: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for attempt in range(self.max_retries + 1):
            async with self._http.stream("POST", url, json=inputs) as resp:
                if resp.status_code >= 400:
                    wait = self._retry_after(resp, attempt)
                    if wait is None:
                        raise _error(resp.status_code, await resp.aread())
                else:
                    async for line in resp.aiter_lines():
                        event = _event(line)
                        if event is not None:
                            yield event
                    return
            await asyncio.sleep(wait)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncAi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class LocalAi:
    """`Ai.local()`: the same `run`, answered by an engine in this process. The engine runs on
    its own event loop thread, so this works from plain scripts and from notebooks."""

    def __init__(self, **settings: Any) -> None:
        from wai.runtime import Runtime
        from wai.settings import Settings

        self._runtime = Runtime(Settings.model_validate(settings))
        self._queue: Any = None  # wai.queue.BatchQueue, once asked for
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="wai-local", daemon=True
        )
        self._thread.start()
        self._call(self._runtime.start())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            # interrupted (Ctrl-C) or failed: a generation still running is cancelled, which
            # frees its slot now, not at max_tokens
            future.cancel()
            raise

    def run(
        self, model: str, inputs: dict[str, Any] | bytes, *, queue_request: bool = False
    ) -> Any:
        if isinstance(inputs, bytes | bytearray):
            return self._call(_local_result(self._runtime, model, bytes(inputs)))
        if queue_request:
            return self._call(self._queued(model, inputs))
        if inputs.get("stream"):
            return self._stream(model, inputs)
        return self._call(_local_result(self._runtime, model, inputs))

    async def _queued(self, model: str, inputs: dict[str, Any]) -> Any:
        """The batch queue in this process, started at its first use, in the usage database
        the settings name (batches outlive the process, as a server's do)."""
        from wai.answers import classify
        from wai.errors import RequestError
        from wai.queue import BatchQueue, Owner, QueueStore

        if self._queue is None:
            s = self._runtime.settings
            self._queue = BatchQueue(
                self._runtime, QueueStore(s.usage_db or s.cache_dir / "usage.db")
            )
            await self._queue.start()
        try:
            return await self._queue.run(
                model, inputs, Owner("default", "-", {"account": "default"})
            )
        except RequestError as e:
            f = classify(e)
            raise AiError(f.code, f"AiError: {f.message}") from e

    def _stream(self, model: str, inputs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        items: queue.SimpleQueue[dict[str, Any] | BaseException | None] = queue.SimpleQueue()

        async def pump() -> None:
            try:
                async for event in _local_events(self._runtime, model, inputs):
                    items.put(event)
                items.put(None)
            except asyncio.CancelledError:
                raise
            except BaseException as e:  # handed to the caller's thread
                items.put(e)

        pumping = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while (item := items.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # The caller broke out (or raised): cancelling the pump closes the generation's
            # iterator, which cancels the request and frees its slot now, not at max_tokens.
            pumping.cancel()

    def close(self) -> None:
        if self._queue is not None:
            self._call(self._queue.close())
            self._queue.store.close()
        self._call(self._runtime.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> LocalAi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _local_submit(runtime: Any, model: str, inputs: dict[str, Any] | bytes) -> Any:
    """Submit as the server would; a refusal raises AiError with Workers AI's code."""
    from wai.answers import classify
    from wai.backends.base import EngineError
    from wai.errors import RequestError
    from wai.schemas import parse_inputs
    from wai.schemas.speech import RawAudio

    try:
        runtime.name_for(model)  # an unknown id, or one of a task not run here: said first
        body = RawAudio(inputs) if isinstance(inputs, bytes) else inputs
        max_audio = runtime.settings.limits.max_audio_bytes
        parsed = parse_inputs(runtime.models.spec_for(model), body, max_audio)
        _, generation = await runtime.submit(model, parsed)
    except (RequestError, EngineError) as e:
        f = classify(e)
        raise AiError(f.code, f"AiError: {f.message}") from e
    return parsed, generation


async def _local_result(runtime: Any, model: str, inputs: dict[str, Any] | bytes) -> Any:
    """The whole answer, as the binding answers it (answers.whole_answer): bytes where the
    model answers with audio (Aura)."""
    from wai.answers import Unanswered, whole_answer
    from wai.schemas.tts import SpeechInput

    parsed, generation = await _local_submit(runtime, model, inputs)
    try:
        result, _ = await whole_answer(generation, parsed)
    except Unanswered as e:
        raise AiError(e.code, e.message if e.failed else f"AiError: {e.message}") from e
    if isinstance(parsed, SpeechInput) and parsed.shape == "aura":
        return base64.b64decode(result["audio"])
    return result


async def _local_events(
    runtime: Any, model: str, inputs: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """Workers AI's stream events (as framing.cf_sse sends them, without the padding)."""
    from wai.answers import cf_tool_calls, failed_code, usage_dict
    from wai.backends.base import Delta, Failed, Finished, ToolCalls

    _, generation = await _local_submit(runtime, model, inputs)
    # with tools: text that may start a call held back, the calls in one event at the end
    async for ev in generation:
        if isinstance(ev, Delta):
            yield {"response": ev.text}
        elif isinstance(ev, ToolCalls):
            yield {"response": "", "tool_calls": cf_tool_calls(ev.calls)}
        elif isinstance(ev, Finished):
            yield {"response": "", "usage": usage_dict(ev.usage)}
        elif isinstance(ev, Failed):
            raise AiError(failed_code(ev), ev.message)
