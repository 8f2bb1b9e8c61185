"""The `wai` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


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
