"""Real llama.cpp servers (`llama-server`, built by scripts/llama_server.py) on loopback, each
serving the embedded model: the upstreams that wai is put in front of in the upstream tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.conftest import ROOT, free_port
from wai.catalog import embedded_model_path


def llama_server_bin() -> Path:
    """The llama-server binary for this CPU: built once per machine (`make test` builds it
    before pytest starts; run directly, this builds it on first use)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "llama_server.py")],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return Path(out.stdout.strip().splitlines()[-1]) / "llama-server"


@dataclass
class LlamaServer:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    args: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def slots(self) -> list[dict[str, Any]]:
        r = requests.get(f"{self.url}/slots", timeout=5)
        r.raise_for_status()
        slots: list[dict[str, Any]] = r.json()
        return slots

    def busy_slots(self) -> int:
        return sum(1 for s in self.slots() if s.get("is_processing"))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def start_llama_server(
    binary: Path,
    tmp: Path,
    *,
    parallel: int = 2,
    ctx: int = 4096,
    port: int | None = None,
    model: Path | None = None,
    extra: tuple[str, ...] = (),
) -> LlamaServer:
    """llama-server on the embedded model (or `model`), once /health answers 200. `ctx` is the
    whole KV (split between `parallel` slots); one thread, so several share two cores."""
    port = port or free_port()
    args = (
        "-m",
        str(model or embedded_model_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--parallel",
        str(parallel),
        "-c",
        str(ctx),
        "--threads",
        "1",
        "--no-webui",
        "--alias",
        "smollm2",
        *extra,
    )
    log = tmp / f"llama-server-{port}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(binary), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LLAMA_ARG_THREADS_HTTP": "4"},
        )
    server = LlamaServer(port, proc, log, args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"llama-server did not come up:\n{log.read_text()}")


def stop_llama_server(server: LlamaServer) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
