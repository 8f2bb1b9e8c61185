"""Slots, backpressure and cancellation, proved through the server's own counters."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.conftest import LLAMA2, TOKEN, Server

LONG = {
    "prompt": "Tell me a very long story about the sea.",
    "max_tokens": 1500,
    "temperature": 0.8,
    "stream": True,
    "ignore_eos": True,
}


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@contextlib.contextmanager
def streams(server: Server, n: int) -> Iterator[list[requests.Response]]:
    """n open streaming generations; closed (so cancelled) on exit."""
    sessions = [requests.Session() for _ in range(n)]
    responses = []
    try:
        for s in sessions:
            r = s.post(server.run_url(), headers=server.auth, json=LONG, stream=True, timeout=30)
            assert r.status_code == 200, r.text
            responses.append(r)
        yield responses
    finally:
        for r in responses:
            r.close()
        for s in sessions:
            s.close()


def idle(server: Server) -> bool:
    s = server.stats()
    return s["slots_busy"] == 0 and s["waiting"] == 0


def test_stream_disconnect_frees_the_slot(server: Server) -> None:
    wait_for(lambda: idle(server))
    before = server.stats()["requests_cancelled"]
    with streams(server, 1) as (r,):
        lines = r.iter_lines()  # kept: a dropped iterator closes the connection
        first = next(lines)  # generation has started
        assert server.stats()["slots_busy"] == 1, (first, server.stats(), server.log.read_text())
    wait_for(lambda: idle(server))
    assert server.stats()["requests_cancelled"] == before + 1


def _raw_post(
    server: Server,
    body: object,
    path: str = f"/client/v4/accounts/a/ai/run/{LLAMA2}",
    extra: str = "",
) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


ROUTES = {
    "openai": (
        "/v1/chat/completions",
        lambda b: {
            "model": LLAMA2,
            "messages": [{"role": "user", "content": b["prompt"]}],
            "max_tokens": b["max_tokens"],
            "stream": b["stream"],
            "ignore_eos": True,
        },
        "",
    ),
    "binding": (
        "/run?version=3",
        lambda b: {"inputs": b, "options": {}},
        f"cf-consn-model-id: {LLAMA2}\r\n",
    ),
}


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_disconnect_frees_the_slot_on_other_routes(
    server: Server, route: str, stream: bool
) -> None:
    wait_for(lambda: idle(server))
    before = server.stats()["requests_cancelled"]
    path, wrap, extra = ROUTES[route]
    sock = _raw_post(server, wrap({**LONG, "stream": stream}), path, extra)
    try:
        wait_for(lambda: server.stats()["slots_busy"] == 1)
    finally:
        sock.close()
    wait_for(lambda: idle(server))
    assert server.stats()["requests_cancelled"] == before + 1


def test_non_streaming_disconnect_frees_the_slot(server: Server) -> None:
    wait_for(lambda: idle(server))
    before = server.stats()["requests_cancelled"]
    sock = _raw_post(server, {**LONG, "stream": False})
    try:
        wait_for(lambda: server.stats()["slots_busy"] == 1)
    finally:
        sock.close()
    wait_for(lambda: idle(server))
    assert server.stats()["requests_cancelled"] == before + 1


@pytest.mark.parametrize("stream", [True, False])
def test_disconnect_during_prefill_frees_the_slot(server: Server, stream: bool) -> None:
    wait_for(lambda: idle(server))
    before = server.stats()
    # ~1600 prompt tokens: a dozen 128-token prefill steps
    sock = _raw_post(
        server,
        {"prompt": "lorem ipsum dolor " * 230, "raw": True, "stream": stream, "max_tokens": 64},
    )
    try:
        wait_for(lambda: server.stats()["slots_busy"] == 1)
    finally:
        sock.close()
    wait_for(lambda: idle(server))
    after = server.stats()
    assert after["requests_cancelled"] == before["requests_cancelled"] + 1
    assert after["tokens_generated"] == before["tokens_generated"]  # never left prefill


def test_reject_if_busy_fails_fast_with_3040(server: Server) -> None:
    wait_for(lambda: idle(server))
    slots = server.stats()["slots_total"]
    with streams(server, slots):
        wait_for(lambda: server.stats()["slots_busy"] == slots)
        r = requests.post(
            server.run_url(),
            headers=server.auth,
            timeout=10,
            json={"prompt": "hi", "options": {"rejectIfBusy": True}},
        )
        assert r.status_code == 429
        assert r.headers["retry-after"]
        err = r.json()["errors"][0]
        assert err["code"] == 3040
        assert "Capacity temporarily exceeded" in err["message"]
    wait_for(lambda: idle(server))


def test_full_queue_answers_429(server: Server) -> None:
    wait_for(lambda: idle(server))
    capacity = server.stats()["slots_total"] + 16  # WAI_MAX_WAITING=16 in conftest
    with streams(server, capacity):
        r = requests.post(server.run_url(), headers=server.auth, timeout=10, json={"prompt": "hi"})
        assert r.status_code == 429
        assert r.json()["errors"][0]["code"] == 3040
        wait_for(lambda: server.stats()["waiting"] == 16)
        # readiness: a full queue sends a load balancer elsewhere (no token needed)
        ready = requests.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
        assert any("queue full (16 waiting)" in r for r in ready.json()["reasons"]), ready.text
    wait_for(lambda: idle(server))
    ready = requests.get(f"{server.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    # and the server still answers
    r = requests.post(
        server.run_url(), headers=server.auth, timeout=30, json={"prompt": "hi", "max_tokens": 2}
    )
    assert r.status_code == 200
