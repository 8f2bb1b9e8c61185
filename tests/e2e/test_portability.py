"""A native crash never reaches a user's first request: the warm-up probe, driven through the
documented fault injection (WAI_PROBE_FAULT), on a real server with the real model."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.conftest import LLAMA2, TOKEN, start_server, stop_server
from tests.e2e.test_cli import wai


def test_a_crashing_setting_is_replaced_before_the_server_is_healthy(tmp_path: Path) -> None:
    env = {"WAI_CACHE_DIR": str(tmp_path / "cache"), "WAI_PROBE_FAULT": "extra_buffers"}
    server = start_server(tmp_path, "--token", TOKEN, env=env)
    try:
        health = requests.get(f"{server.url}/healthz", timeout=5).json()
        (runs,) = health["runs"].values()
        assert runs["extra_buffers"] is False and runs["device"].startswith("CPU")
        assert "was killed by SIGABRT" in runs["probe"]
        r = requests.post(
            server.run_url(LLAMA2),
            headers=server.auth,
            timeout=60,
            json={"prompt": "Hi", "max_tokens": 4, "temperature": 0},
        )
        assert r.status_code == 200 and r.json()["result"]["response"]
    finally:
        stop_server(server)
    log = server.log.read_text()
    # one line says what died; the model's line says what it runs with, and why
    assert (
        "warm-up with extra buffers on, Q8_0 conversion, 0 GPU layers was killed by SIGABRT" in log
    )
    assert "on CPU" in log and "chose extra buffers off, Q8_0 conversion" in log

    # the verdict is remembered: the next start goes straight to the setting that worked
    again = start_server(tmp_path, "--token", TOKEN, env=env)
    try:
        (runs,) = requests.get(f"{again.url}/healthz", timeout=5).json()["runs"].values()
        assert runs["extra_buffers"] is False and "(remembered)" in runs["probe"]
    finally:
        stop_server(again)
    assert "trying a safer setting" not in again.log.read_text()  # no child ran


def test_when_every_setting_crashes_only_that_model_fails(tmp_path: Path) -> None:
    env = {"WAI_CACHE_DIR": str(tmp_path / "cache"), "WAI_PROBE_FAULT": "any"}
    config = tmp_path / "wai.toml"
    # a second model (the same file under another name) to show the server still serves
    config.write_text(
        '[models.other]\npath = "/nonexistent/model.gguf"\nserves = ["@cf/acme/other"]\n'
    )
    server = start_server(
        tmp_path, "--token", TOKEN, "--config", str(config), env=env, healthy=False
    )
    try:
        health = requests.get(f"{server.url}/healthz", timeout=5)
        assert health.status_code == 503
        failed = health.json()["failed"]
        assert "crashed on this machine with every setting" in " ".join(failed.values())
        r = requests.post(
            server.run_url(LLAMA2), headers=server.auth, timeout=60, json={"prompt": "Hi"}
        )
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == 3043
        assert "every setting tried" in r.json()["errors"][0]["message"]
    finally:
        stop_server(server)


def test_models_names_the_device() -> None:
    out = wai("models").stdout
    assert "DEVICE / FILE" in out and "CPU (" in out
