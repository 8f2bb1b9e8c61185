"""A strict reader of Workers AI's SSE framing, for tests."""

from __future__ import annotations

import json
from typing import Any

import requests


def read_events(resp: requests.Response) -> list[Any]:
    """Every `data:` payload in order; JSON decoded, except the final "[DONE]"."""
    return parse_events(resp.content.decode("utf-8"))


def parse_events(raw: str) -> list[Any]:
    assert raw.endswith("\n\n"), raw[-50:]
    events: list[Any] = []
    for block in raw.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        assert "\n" not in block, block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events
