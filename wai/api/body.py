"""Reading request bodies: bounded in size, parsed as JSON whatever the Content-Type says (the
official curl example sends JSON form-encoded)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from wai.api.errors import REQUEST_TOO_LARGE, CFError, bad_input


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


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise bad_input("the request body is empty; expected a JSON object")
    try:
        return json.loads(raw)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        raise bad_input(f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise bad_input("the body is nested too deeply") from None
