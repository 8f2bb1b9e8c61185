"""What every route family shares: the HTTP status of a Workers AI code, the Cloudflare error
for a lower-layer failure, and Workers AI's event stream (the REST route streams it, the Worker
binding passes it through). The shapes of an answer are wai/answers.py's."""

from __future__ import annotations

from collections.abc import AsyncIterator

from wai.answers import cf_tool_calls, classify, failed_code, usage_dict
from wai.api import sse
from wai.api.errors import CFError, bad_input
from wai.backends.base import Delta, Event, Failed, Finished, Generation, ToolCalls
from wai.errors import (
    ACCOUNT_LIMITED,
    BAD_INPUT,
    INTERNAL,
    MODEL_UNAVAILABLE,
    NO_SUCH_MODEL,
    NOT_FOUND,
    OUT_OF_CAPACITY,
    REQUEST_TOO_LARGE,
    TIMEOUT,
)
from wai.schemas.text_generation import TextGenerationInput

# The one place a Workers AI code gets its HTTP status (spec §1.4).
_STATUS = {
    BAD_INPUT: 400,
    NO_SUCH_MODEL: 400,
    TIMEOUT: 408,
    REQUEST_TOO_LARGE: 413,
    OUT_OF_CAPACITY: 429,
    ACCOUNT_LIMITED: 429,
    NOT_FOUND: 404,
    INTERNAL: 500,
    MODEL_UNAVAILABLE: 503,
}


def status_for(code: int) -> int:
    return _STATUS.get(code, 500)


def to_cf_error(e: Exception) -> CFError:
    """The Cloudflare error for what the lower layers raised about a request."""
    if isinstance(e, CFError):
        return e
    f = classify(e)
    headers = {"retry-after": str(f.retry_after)} if f.retry_after else None
    return CFError.inference(status_for(f.code), f.code, f.message, headers=headers)


def refuse_json_stream(inp: TextGenerationInput) -> None:
    """Workers AI does not stream in JSON mode (spec §2.4): say so rather than stream text."""
    if inp.stream and inp.json_schema is not None:
        raise bad_input("JSON mode does not stream: send it without 'stream'")


def failed_error(f: Failed) -> CFError:
    """The Cloudflare error for a generation that failed after it was queued (see
    answers.failed_code): 503 with Retry-After, 408, or 500."""
    code = failed_code(f)
    headers = {"retry-after": "1"} if code == MODEL_UNAVAILABLE else None
    return CFError.inference(status_for(code), code, f.message, headers=headers)


async def cf_sse(generation: Generation[Event]) -> AsyncIterator[bytes]:
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
        elif isinstance(ev, Failed):
            code = failed_code(ev)
            yield sse.event({"response": "", "error": {"code": code, "message": ev.message}})
    yield sse.DONE
