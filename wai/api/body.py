"""Reading request bodies: bounded in size, parsed as JSON whatever the Content-Type says (the
official curl example sends JSON form-encoded)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from wai.api.errors import REQUEST_TOO_LARGE, CFError, bad_input
from wai.schemas.speech import RawAudio


def too_large(limit: int) -> CFError:
    return CFError.inference(
        413, REQUEST_TOO_LARGE, f"Request too large: the body exceeds {limit} bytes"
    )


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    return parse_json(await read_body(request, limit))


# what a client sends the audio itself as (a curl --data-binary without -H sends it as a form)
_AUDIO_TYPES = ("audio/", "video/", "application/octet-stream")


async def read_audio_or_json(request: Request, limit: int) -> Any:
    """A speech id's body: the audio itself (`RawAudio`), or its JSON inputs. JSON when the
    Content-Type says so, audio when it names an audio or binary type; otherwise (a form, or
    none) JSON only if the body is a JSON object."""
    raw = await read_body(request, limit)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        return parse_json(raw)
    if not kind.startswith(_AUDIO_TYPES) and raw.lstrip()[:1] == b"{":
        try:
            return json.loads(raw)
        except ValueError:
            pass  # an audio file that happens to start with "{"
    return RawAudio(raw)


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise bad_input("the request body is empty; expected a JSON object")
    try:
        return json.loads(raw)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        raise bad_input(f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise bad_input("the body is nested too deeply") from None
