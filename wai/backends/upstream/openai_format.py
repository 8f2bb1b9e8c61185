"""The OpenAI wire format, as wai speaks it to an upstream: the request body for a generation,
the streamed answer read back into events, and what an upstream's refusal means.

Each request becomes one streamed `/chat/completions` (messages) or `/completions` (a raw
prompt) call, whose chunks become `Delta`s, the calls it made one `ToolCalls` (assembled from
their streamed fragments), then `Finished` with the upstream's usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from wai.backends.base import (
    Delta,
    Event,
    Finished,
    FinishReason,
    GenerationRequest,
    Message,
    ToolCall,
    ToolCalls,
    UpstreamError,
    Usage,
)
from wai.errors import BAD_INPUT, MODEL_UNAVAILABLE, TIMEOUT, bad_input_message

MAX_ERROR_BYTES = 65_536  # of an upstream's error body
# of one line of an upstream's event stream: a chunk is a few hundred bytes; a whole answer in
# one chunk (some servers send tool calls so) stays far below
MAX_LINE_BYTES = 8 * 1024 * 1024


class Retry(Exception):
    """This attempt failed before any text went out: another replica may take the request."""

    def __init__(self, reason: str, *, eject: bool = False, busy: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.eject = eject
        self.busy = busy


def refusal(status: int, message: str, where: str) -> Retry | UpstreamError:
    """An upstream's non-200 answer, as a retry (5xx, busy) or the client's error (4xx).
    `where` names the model and replica, for messages about wai's own configuration."""
    if status in (429, 503):
        return Retry(f"busy (HTTP {status})", busy=True)
    if status >= 500:
        return Retry(f"HTTP {status}")
    if status == 408:
        return UpstreamError(TIMEOUT, f"the upstream timed out: {message}")
    if status in (401, 403, 404):
        # wai's configuration (key, model name), not the client's request
        return UpstreamError(
            MODEL_UNAVAILABLE,
            f"{where} refused wai (HTTP {status}): {message}",
            retry_after=1,
        )
    return UpstreamError(BAD_INPUT, bad_input_message(message))


async def error_body(response: httpx.Response) -> str:
    """The message of an upstream's error answer (its first MAX_ERROR_BYTES)."""
    raw = b""
    async for chunk in response.aiter_bytes():
        raw += chunk
        if len(raw) >= MAX_ERROR_BYTES:
            break
    return error_message(raw[:MAX_ERROR_BYTES], response.status_code)


class BrokenStream(Exception):
    """The upstream's stream ended without its last chunk, or sent an error in it."""


class Relay:
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
        events = sse_data(response)
        async for data in events:
            if data == b"[DONE]":
                done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise BrokenStream(f"not JSON: {data[:200]!r}") from None
            if not isinstance(chunk, dict):
                continue
            if "error" in chunk:
                raise BrokenStream(error_text(chunk["error"]))
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
                    merge_calls(calls, delta["tool_calls"])
        if not done and reason is None:
            raise BrokenStream("the stream ended before its last chunk")
        parsed, leftover = parse_calls(calls)
        if leftover:
            self.queue.put_nowait(Delta(leftover, -1))
        if parsed:
            self.queue.put_nowait(ToolCalls(parsed))
        finish: FinishReason = "length" if reason == "length" else "stop"
        counted = usage_of(usage, self.deltas)
        self.completion_tokens = counted.completion_tokens
        self.queue.put_nowait(Finished(finish, counted))
        if done:
            await read_to_end(events)


async def read_to_end(events: AsyncIterator[bytes]) -> None:
    """Read what follows `[DONE]` (the end of the chunked body), so that the connection goes
    back to the pool: one left unread is closed, and the next request pays a new connection.
    An upstream that keeps the stream open past a second is closed after all."""
    with contextlib.suppress(TimeoutError, httpx.HTTPError, BrokenStream):
        async with asyncio.timeout(1.0):
            async for _ in events:
                pass


async def sse_data(response: httpx.Response) -> AsyncIterator[bytes]:
    """The `data:` payloads of an event stream, straight from the socket's bytes (httpx's line
    iterator decodes and re-splits every chunk: most of the relay's time). The request asks for
    no content encoding, so the raw bytes are the text. A line longer than MAX_LINE_BYTES (an
    upstream that never ends one) is a broken stream, not memory without end."""
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
        if len(buf) > MAX_LINE_BYTES:
            raise BrokenStream(f"a line of more than {MAX_LINE_BYTES} bytes from the upstream")
    if buf.startswith(b"data:"):
        yield buf[5:].strip()


def request_body(request: GenerationRequest) -> tuple[str, dict[str, Any]]:
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
    body["messages"] = [openai_message(m) for m in request.messages or ()]
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


def openai_message(m: Message) -> dict[str, Any]:
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


def merge_calls(calls: dict[int, dict[str, str]], fragments: Any) -> None:
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


def parse_calls(calls: dict[int, dict[str, str]]) -> tuple[list[ToolCall], str]:
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


def usage_of(usage: dict[str, Any] | None, deltas: int) -> Usage:
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


def error_text(err: Any) -> str:
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err)


def error_message(raw: bytes, status: int) -> str:
    """The message in an upstream's error body (OpenAI's, vLLM's, TGI's shapes), or its text."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:500] or f"HTTP {status}"
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if key in body:
                return error_text(body[key])[:2000]
    return text[:500]
