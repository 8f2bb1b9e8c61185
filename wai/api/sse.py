"""Server-sent events as Workers AI frames them: `data: <json>` lines, a blank line between
events, no `event:`/`id:` lines, and a final `data: [DONE]` (spec §3.1)."""

from __future__ import annotations

import json
import secrets
from typing import Any

MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"
# Set explicitly: Starlette would otherwise append "; charset=utf-8", and strict clients compare
# the whole header.
HEADERS = {"content-type": MEDIA_TYPE, "cache-control": "no-cache"}


def event(payload: dict[str, Any]) -> bytes:
    return (
        b"data: "
        + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n\n"
    )


def padding(text: str) -> str:
    """Random-length padding for the `p` field, so that a delta's size on the wire does not
    give away its token's length (the side channel Cloudflare closed in March 2024)."""
    n = max(1, 16 + secrets.randbelow(32) - min(len(text), 16))
    return secrets.token_urlsafe(n)[:n]
