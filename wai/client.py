"""The Python client: `Ai(...).run(model, inputs)` answers what the Worker binding answers.

    from wai import Ai
    ai = Ai()                                   # a local wai on 127.0.0.1:8787
    ai.run("@cf/meta/llama-2-7b-chat-int8", {"prompt": "Tell me a story"})
    # -> {"response": "...", "usage": {...}}
    for event in ai.run(model, {"prompt": "…", "stream": True}):
        print(event["response"], end="")

Pointed at `https://api.cloudflare.com/client/v4` (with a real token and account id) it is a
client for Workers AI itself: the API is the same. `Ai.local()` runs the engine in this
process, with no server. Failures raise `AiError` carrying the Cloudflare code and message.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8787/client/v4"
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


def _headers(token: str | None) -> dict[str, str]:
    token = token or os.environ.get("WAI_TOKEN") or os.environ.get("CLOUDFLARE_API_TOKEN")
    return {"Authorization": f"Bearer {token or 'local'}"}


def _error(status: int, body: bytes) -> AiError:
    try:
        err = json.loads(body)["errors"][0]
        return AiError(int(err["code"]), str(err["message"]), status)
    except (ValueError, KeyError, IndexError, TypeError):
        return AiError(status, body.decode("utf-8", "replace")[:500], status)


def _result(resp: httpx.Response) -> dict[str, Any]:
    if resp.status_code >= 400:
        raise _error(resp.status_code, resp.content)
    body = resp.json()
    if not body.get("success", False):
        raise _error(resp.status_code, resp.content)
    result: dict[str, Any] = body["result"]
    return result


def _event(line: str) -> dict[str, Any] | None:
    """One SSE line -> its event, or None (not data, or [DONE])."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return None
    event: dict[str, Any] = json.loads(line[6:])
    return event


class Ai:
    """Synchronous client."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, token: str | None = None,
                 account_id: str = "local", timeout: float = 300.0) -> None:
        self.base_url = base_url
        self.account_id = account_id
        self._http = httpx.Client(headers=_headers(token), timeout=timeout)

    @staticmethod
    def local(**settings: Any) -> LocalAi:
        """The engine in this process (no server): settings as in wai.toml."""
        return LocalAi(**settings)

    def run(self, model: str, inputs: dict[str, Any]) -> Any:
        """`{"response": …, "usage": …}`, or with `"stream": True` an iterator of events."""
        url = _url(self.base_url, self.account_id, model)
        if inputs.get("stream"):
            return self._stream(url, inputs)
        return _result(self._http.post(url, json=inputs))

    def _stream(self, url: str, inputs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self._http.stream("POST", url, json=inputs) as resp:
            if resp.status_code >= 400:
                raise _error(resp.status_code, resp.read())
            for line in resp.iter_lines():
                event = _event(line)
                if event is not None:
                    yield event

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Ai:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncAi:
    """Asynchronous client: `await ai.run(...)`; streams are async iterators."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, token: str | None = None,
                 account_id: str = "local", timeout: float = 300.0) -> None:
        self.base_url = base_url
        self.account_id = account_id
        self._http = httpx.AsyncClient(headers=_headers(token), timeout=timeout)

    async def run(self, model: str, inputs: dict[str, Any]) -> Any:
        url = _url(self.base_url, self.account_id, model)
        if inputs.get("stream"):
            return self._stream(url, inputs)
        return _result(await self._http.post(url, json=inputs))

    async def _stream(self, url: str, inputs: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async with self._http.stream("POST", url, json=inputs) as resp:
            if resp.status_code >= 400:
                raise _error(resp.status_code, await resp.aread())
            async for line in resp.aiter_lines():
                event = _event(line)
                if event is not None:
                    yield event

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
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wai-local",
                                        daemon=True)
        self._thread.start()
        self._call(self._runtime.start())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def run(self, model: str, inputs: dict[str, Any]) -> Any:
        if inputs.get("stream"):
            return self._stream(model, inputs)
        events = list(self._stream(model, inputs))
        text = "".join(e["response"] for e in events)
        return {"response": text, "usage": events[-1]["usage"]}

    def _stream(self, model: str, inputs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        items: queue.SimpleQueue[dict[str, Any] | BaseException | None] = queue.SimpleQueue()

        async def pump() -> None:
            try:
                async for event in _local_events(self._runtime, model, inputs):
                    items.put(event)
                items.put(None)
            except BaseException as e:  # handed to the caller's thread
                items.put(e)

        asyncio.run_coroutine_threadsafe(pump(), self._loop)
        while (item := items.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._call(self._runtime.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> LocalAi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _local_events(
    runtime: Any, model: str, inputs: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    from wai.api.workers import to_cf_error
    from wai.engine.base import Delta, EngineError, Failed, Finished
    from wai.errors import RequestError
    from wai.schemas.text_generation import parse_text_generation

    try:
        _, generation = runtime.submit(model, parse_text_generation(inputs))
    except (RequestError, EngineError) as e:
        err = to_cf_error(e)
        raise AiError(err.code, err.message, err.status) from e
    async for ev in generation:
        if isinstance(ev, Delta):
            yield {"response": ev.text}
        elif isinstance(ev, Finished):
            u = ev.usage
            yield {"response": "", "usage": {
                "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                "total_tokens": u.total_tokens}}
        elif isinstance(ev, Failed):
            raise AiError(5000, ev.message)
