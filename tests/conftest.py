"""Shared fixtures: a real `wai serve` on 127.0.0.1 with the real embedded model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from wai.catalog import (
    EMBEDDED_ASR_NAME,
    EMBEDDED_EMBEDDING_NAME,
    EMBEDDED_TTS_NAME,
    EMBEDDED_TURN_NAME,
)

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-0123456789"
LLAMA2 = "@cf/meta/llama-2-7b-chat-int8"


def answer_only(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer (or a usage object) less how many of its prompt tokens were cached and how
    many of its tokens were drafted and accepted: those depend on what the server ran before
    and beside it, not on the answer."""
    out = {k: v for k, v in answer.items() if not k.endswith("_tokens_details")}
    if isinstance(out.get("usage"), dict):
        out["usage"] = answer_only(out["usage"])
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def run_url(self, model: str = LLAMA2, account: str = "acc") -> str:
        return f"{self.url}/client/v4/accounts/{account}/ai/run/{model}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def stats(self) -> dict[str, int]:
        r = requests.get(f"{self.url}/wai/v1/stats", headers=self.auth, timeout=5)
        r.raise_for_status()
        models = r.json()["models"]
        # loaded when a test embedded something, or spoke, transcribed, detected a turn
        for other in (EMBEDDED_EMBEDDING_NAME, EMBEDDED_ASR_NAME, EMBEDDED_TTS_NAME,
                      EMBEDDED_TURN_NAME):  # fmt: skip
            models.pop(other, None)
        assert len(models) == 1
        stats: dict[str, int] = next(iter(models.values()))
        return stats


def start_server(
    tmp: Path, *args: str, env: dict[str, str] | None = None, healthy: bool = True
) -> Server:
    """A real `wai serve` on a free port, once /healthz answers (200, or with healthy=False
    any answer: a server whose models all failed still serves)."""
    port = free_port()
    log = tmp / f"wai-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wai.cli", "serve", "--port", str(port), *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"wai exited with {proc.returncode}:\n{log.read_text()}")
        try:
            health = requests.get(f"{url}/healthz", timeout=1)
            if health.status_code == 200 or (
                not healthy and health.json().get("status") != "loading"
            ):
                return Server(url, proc, log)
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"wai did not become healthy:\n{log.read_text()}")


def own_server(factory: pytest.TempPathFactory, name: str, *args: str) -> Iterator[Server]:
    """A server of a module's own, with a token and its own usage database."""
    tmp = factory.mktemp(name)
    srv = start_server(tmp, "--token", TOKEN, *args, env={"WAI_USAGE_DB": str(tmp / "usage.db")})
    yield srv
    stop_server(srv)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server: one token configured, 4 slots."""
    srv = start_server(
        tmp_path_factory.mktemp("wai"),
        "--token",
        TOKEN,
        env={"WAI_SLOTS": "4", "WAI_MAX_WAITING": "16"},
    )
    yield srv
    stop_server(srv)
