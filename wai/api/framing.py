"""What every route family shares: usage objects, the Cloudflare error for a lower-layer failure,
and Workers AI's event stream (the REST route streams it, the Worker binding passes it through).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from wai.api import sse
from wai.api.errors import CFError, bad_input
from wai.engine.base import Delta, Failed, Finished, Generation, ToolCall, ToolCalls, Usage
from wai.errors import INTERNAL, MODEL_UNAVAILABLE, TIMEOUT
from wai.runtime import classify
from wai.schemas.text_generation import TextGenerationInput


def usage_dict(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return out


def to_cf_error(e: Exception) -> CFError:
    """The Cloudflare error for what the lower layers raised about a request."""
    if isinstance(e, CFError):
        return e
    f = classify(e)
    headers = {"retry-after": str(f.retry_after)} if f.retry_after else None
    return CFError.inference(f.status, f.code, f.message, headers=headers)


def refuse_json_stream(inp: TextGenerationInput) -> None:
    """Workers AI does not stream in JSON mode (spec §2.4): say so rather than stream text."""
    if inp.stream and inp.json_schema is not None:
        raise bad_input("JSON mode does not stream: send it without 'stream'")


def json_response(text: str, final: Finished) -> Any:
    """JSON mode's `response`: the object itself, as Workers AI returns it. Cut off by
    max_tokens before it closed, it is Workers AI's error."""
    try:
        if final.reason != "length":
            return json.loads(text)
    except ValueError:
        pass
    raise bad_input("JSON Mode couldn't be met")


def failed_code(f: Failed) -> int:
    """The Workers AI code of a generation that failed after it was queued: 3043 (worth a
    retry) when the engine process or upstream serving it died under it, the backend's own code
    (3007: an upstream timed out), else 5000."""
    return MODEL_UNAVAILABLE if f.crashed else f.code or INTERNAL


_FAILED_STATUS = {MODEL_UNAVAILABLE: 503, TIMEOUT: 408}


def failed_error(f: Failed) -> CFError:
    """The Cloudflare error for a generation that failed after it was queued (see
    failed_code): 503 with Retry-After, 408, or 500."""
    code = failed_code(f)
    headers = {"retry-after": "1"} if code == MODEL_UNAVAILABLE else None
    return CFError.inference(_FAILED_STATUS.get(code, 500), code, f.message, headers=headers)


def cf_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Workers AI's form of tool calls: {name, arguments (an object)}."""
    return [{"name": c.name, "arguments": c.arguments} for c in calls]


def cf_result(text: str, calls: list[ToolCall], inp: TextGenerationInput) -> dict[str, Any]:
    """`response` (and, when the request offered tools, `tool_calls`) of a whole answer."""
    if not inp.tools:
        return {"response": text}
    return {"response": text, "tool_calls": cf_tool_calls(calls)}


async def cf_sse(generation: Generation) -> AsyncIterator[bytes]:
    """Workers AI's stream: a padded event per token, a usage event, [DONE]; a failure is an
    error event (the status line has gone out already). With tools, the calls come in one
    event before the usage."""
    async for ev in generation:
        if isinstance(ev, Delta):
            yield sse.event({"response": ev.text, "p": sse.padding(ev.text)})
        elif isinstance(ev, ToolCalls):
            yield sse.event({"response": "", "tool_calls": cf_tool_calls(ev.calls)})
        elif isinstance(ev, Finished):
            yield sse.event({"response": "", "usage": usage_dict(ev.usage)})
        else:
            code = failed_code(ev)
            yield sse.event({"response": "", "error": {"code": code, "message": ev.message}})
    yield sse.DONE
