"""The `wai` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import ROOT, TOKEN, Server, start_server, stop_server
from wai.catalog import EMBEDDED_NAME, embedded_model_path


def wai(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wai.cli", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def test_help_lists_the_commands() -> None:
    out = wai("--help").stdout
    for cmd in ("serve", "run", "models"):
        assert cmd in out
    serve = wai("serve", "--help").stdout
    for flag in ("--host", "--port", "--token", "--config"):
        assert flag in serve


def test_refuses_a_public_address_without_tokens() -> None:
    r = wai("serve", "--host", "0.0.0.0", "--port", "1", timeout=30)
    assert r.returncode == 2
    assert "refusing" in r.stderr


def test_models_lists_the_catalog_and_the_local_model() -> None:
    out = wai("models").stdout
    assert "@cf/meta/llama-2-7b-chat-int8" in out
    assert "@cf/mistral/mistral-7b-instruct-v0.1" in out
    assert "SmolLM2-135M-Instruct-Q4_1" in out


def test_run_prints_a_generation() -> None:
    args = (
        "run",
        "@cf/meta/llama-2-7b-chat-int8",
        "What is 2+2?",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--seed",
        "1",
    )
    r = wai(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    streamed = wai(*args, "--stream")
    assert streamed.stdout == r.stdout


def test_run_reports_an_unknown_model() -> None:
    r = wai("run", "@cf/acme/nothing", "hi")
    assert r.returncode == 1
    assert "No such model" in r.stderr


def test_models_loaded_asks_a_running_server(server: Server) -> None:
    r = wai("models", "--loaded", "--url", server.url, "--token", TOKEN)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("memory: ") and "no budget" in lines[0]
    row = next(line for line in lines if line.startswith(EMBEDDED_NAME))
    assert row.split()[1:3] == ["loaded", "eager"]
    bad = wai("models", "--loaded", "--url", server.url, "--token", "wrong-token-123456")
    assert bad.returncode == 1 and "401" in bad.stderr


def test_serve_model_flag_serves_a_file_for_its_ids(tmp_path: Path) -> None:
    srv = start_server(
        tmp_path,
        "--token",
        TOKEN,
        "--model",
        str(embedded_model_path()),
        "--serves",
        "@cf/wai/mine",
        "--slots",
        "2",
    )
    try:
        r = requests.post(
            srv.run_url("@cf/wai/mine"),
            headers=srv.auth,
            json={"prompt": "Hi", "max_tokens": 3},
            timeout=60,
        )
        assert r.status_code == 200
        name = r.headers["x-wai-model"]
        stats = requests.get(f"{srv.url}/wai/v1/stats", headers=srv.auth, timeout=5).json()
        assert stats["models"][name]["slots_total"] == 2
        assert stats["registry"]["models"][name]["load"] == "eager"
    finally:
        stop_server(srv)
