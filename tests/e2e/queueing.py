"""Helpers for the batch queue's tests: queue a batch, poll it to its end."""

from __future__ import annotations

import time
from typing import Any

import requests

from tests.conftest import Server


def queue_url(server: Server, model: str, account: str = "acc") -> str:
    return server.run_url(model, account) + "?queueRequest=true"


def submit(
    server: Server,
    model: str,
    items: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    account: str = "acc",
) -> str:
    r = requests.post(
        queue_url(server, model, account),
        json={"requests": items},
        headers=headers if headers is not None else server.auth,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["status"] == "queued" and result["model"] == model
    request_id: str = result["request_id"]
    return request_id


def poll(
    server: Server,
    model: str,
    request_id: str,
    headers: dict[str, str] | None = None,
    account: str = "acc",
) -> requests.Response:
    return requests.post(
        queue_url(server, model, account),
        json={"request_id": request_id},
        headers=headers if headers is not None else server.auth,
        timeout=60,
    )


def wait_done(
    server: Server,
    model: str,
    request_id: str,
    headers: dict[str, str] | None = None,
    timeout: float = 300,
    account: str = "acc",
) -> tuple[dict[str, Any], list[str]]:
    """The finished batch's result, and the statuses seen on the way (each change once)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = poll(server, model, request_id, headers, account)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()["result"]
        status = result.get("status", "done")
        if not seen or seen[-1] != status:
            seen.append(status)
        if "responses" in result:
            return result, seen
        time.sleep(0.05)
    raise AssertionError(f"batch {request_id} not done after {timeout}s (seen {seen})")
