"""Crash containment: a model's engine process killed (SIGKILL) under live traffic costs that
model's in-flight requests, and nothing else; the engine restarts and the model answers again.
And an engine never outlives its server."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import LLAMA2, TOKEN, Server, start_server, stop_server
from tests.e2e.sse import parse_events
from tests.e2e.test_capacity import wait_for
from wai.catalog import EMBEDDED_NAME, embedded_model_path

OTHER_ID = "@cf/wai/other-model"


@pytest.fixture
def two_models(tmp_path: Path) -> Iterator[Server]:
    config = tmp_path / "wai.toml"
    config.write_text(f"""
[engine]
slots = 4
ctx_per_slot = 512
batch_tokens = 256
[models.other]
path = "{embedded_model_path()}"
serves = ["{OTHER_ID}"]
load = "eager"
""")
    server = start_server(tmp_path, "--config", str(config), "--token", TOKEN)
    yield server
    stop_server(server)


def _health(server: Server) -> dict[str, Any]:
    r = requests.get(f"{server.url}/healthz", timeout=5)
    assert r.status_code == 200, r.text
    health: dict[str, Any] = r.json()
    return health


def _not_ready(server: Server, reason: str) -> bool:
    r = requests.get(f"{server.url}/readyz", timeout=5)
    return r.status_code == 503 and reason in r.json()["reasons"]


def _stats(server: Server, name: str) -> dict[str, Any]:
    r = requests.get(f"{server.url}/wai/v1/stats", headers=server.auth, timeout=5)
    assert r.status_code == 200, r.text
    stats: dict[str, Any] = r.json()["models"][name]
    return stats


class Hammer:
    """Requests to every other route, in a loop, on a thread; any failure is kept."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.failures: list[str] = []
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        s = self.server
        checks: list[tuple[str, str, dict[str, Any] | None, int]] = [
            ("GET", f"{s.url}/healthz", None, 200),
            ("GET", f"{s.url}/wai/v1/stats", None, 200),
            ("GET", f"{s.url}/v1/models", None, 200),
            ("POST", s.run_url(OTHER_ID), {"prompt": "Hi", "max_tokens": 2}, 200),
            ("POST", s.run_url(LLAMA2), {"prompt": 7}, 400),  # validation answers too
        ]
        while not self._stop.is_set():
            for method, url, body, want in checks:
                try:
                    r = requests.request(method, url, headers=s.auth, json=body, timeout=30)
                    if r.status_code != want:
                        self.failures.append(f"{method} {url}: {r.status_code} {r.text[:200]}")
                except requests.RequestException as e:
                    self.failures.append(f"{method} {url}: {e}")
                self.done += 1

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def test_a_killed_engine_fails_its_requests_only_and_comes_back(two_models: Server) -> None:
    server = two_models
    pid = _health(server)["runs"][EMBEDDED_NAME]["pid"]
    other_pid = _health(server)["runs"]["other"]["pid"]
    assert pid != other_pid and pid != server.proc.pid
    url = server.run_url(LLAMA2)
    body = {"prompt": "Tell me a long story", "max_tokens": 400, "ignore_eos": True}

    flowing = [threading.Event() for _ in range(3)]

    def stream(i: int) -> list[Any]:
        raw = b""
        with requests.post(
            url, headers=server.auth, json={**body, "stream": True}, stream=True, timeout=120
        ) as r:
            assert r.status_code == 200
            for chunk in r.iter_content(chunk_size=None):
                raw += chunk
                if raw.count(b"data: ") >= 3:
                    flowing[i].set()
        return parse_events(raw.decode())

    def whole(_: int) -> requests.Response:
        return requests.post(url, headers=server.auth, json=body, timeout=120)

    pool = ThreadPoolExecutor(4)
    with Hammer(server) as hammer:
        streams = [pool.submit(stream, i) for i in range(3)]
        plain = pool.submit(whole, 0)
        for f in flowing:
            assert f.wait(timeout=30)  # tokens are flowing
        wait_for(lambda: _stats(server, EMBEDDED_NAME)["slots_busy"] == 4, timeout=30)
        assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200
        os.kill(pid, signal.SIGKILL)
        # not ready while the engine restarts (the restart waits 0.5 s, then loads)
        wait_for(lambda: _not_ready(server, f"{EMBEDDED_NAME}: engine restarting"), timeout=10)

        for f in streams:
            events = f.result(timeout=60)
            assert events[-1] == "[DONE]"
            error = events[-2]["error"]
            assert error["code"] == 3043 and "SIGKILL" in error["message"], error
            assert any(ev.get("response") for ev in events[:-2])  # it was mid-stream
        r = plain.result(timeout=60)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        err = r.json()["errors"][0]
        assert err["code"] == 3043 and EMBEDDED_NAME in err["message"]

        # the same model answers again within 30 s (a request may wait for the restart)
        t0 = time.monotonic()
        while True:
            r = requests.post(
                url, headers=server.auth, json={"prompt": "Hi", "max_tokens": 4}, timeout=60
            )
            if r.status_code == 200 or time.monotonic() - t0 > 30:
                break
            time.sleep(0.5)
        assert r.status_code == 200, r.text
        assert r.json()["result"]["usage"]["completion_tokens"] == 4
        assert time.monotonic() - t0 < 30
        time.sleep(0.5)
    pool.shutdown()

    assert hammer.failures == [] and hammer.done > 5
    stats = _stats(server, EMBEDDED_NAME)
    assert stats["restarts"] == 1
    assert stats["requests_failed"] >= 4
    assert _stats(server, "other")["restarts"] == 0
    health = _health(server)
    assert health["runs"][EMBEDDED_NAME]["pid"] not in (None, pid)
    assert requests.get(f"{server.url}/readyz", timeout=5).json()["status"] == "ready"
    assert health["runs"]["other"]["pid"] == other_pid


def test_the_engine_process_exits_with_its_server(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--token", TOKEN)
    pid = _health(server)["runs"][EMBEDDED_NAME]["pid"]
    # its own process group (Ctrl-C in a terminal is the server's), the server's session (a
    # session of its own would be a scheduler autogroup of its own, starved under load)
    assert os.getpgid(pid) == pid != os.getpgid(server.proc.pid)
    assert os.getsid(pid) == os.getsid(server.proc.pid)
    # a SIGTERM for the whole group (a service manager stopping it) is the server's to act on
    os.kill(pid, signal.SIGTERM)
    r = requests.post(
        server.run_url(LLAMA2),
        headers=server.auth,
        json={"prompt": "Hi", "max_tokens": 2},
        timeout=60,
    )
    assert r.status_code == 200 and _health(server)["runs"][EMBEDDED_NAME]["pid"] == pid
    server.proc.kill()  # no drain, no goodbye: the engine must notice on its own
    server.proc.wait(timeout=10)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie (its parent died, init has not reaped it yet) counts as gone
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        except OSError:
            return True

    wait_for(gone, timeout=20)
