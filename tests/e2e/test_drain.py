"""Graceful drain: SIGTERM during 8 streaming requests; every one completes, then exit 0."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import LLAMA2, TOKEN, start_server
from tests.e2e.sse import parse_events
from tests.e2e.test_capacity import wait_for


def test_sigterm_finishes_in_flight_streams_then_exits_0(tmp_path: Path) -> None:
    server = start_server(
        tmp_path, "--token", TOKEN, env={"WAI_SLOTS": "4", "WAI_DRAIN_SECONDS": "60"}
    )
    url = server.run_url(LLAMA2)
    body = {
        "prompt": "Tell me a long story",
        "max_tokens": 48,
        "stream": True,
        "ignore_eos": True,
        "temperature": 0,
    }
    started = ThreadPoolExecutor(8)

    def stream(_: int) -> list[object]:
        with requests.post(url, headers=server.auth, json=body, stream=True, timeout=120) as r:
            assert r.status_code == 200
            return parse_events(r.content.decode())

    try:
        futures = [started.submit(stream, i) for i in range(8)]
        wait_for(lambda: server.stats()["slots_busy"] == 4)  # generation is under way
        server.proc.send_signal(signal.SIGTERM)
        results = [f.result(timeout=120) for f in futures]
        assert server.proc.wait(timeout=90) == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        started.shutdown()
    for events in results:
        assert events[-1] == "[DONE]"
        assert events[-2]["usage"]["completion_tokens"] == 48  # type: ignore[index]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/healthz", timeout=2)
