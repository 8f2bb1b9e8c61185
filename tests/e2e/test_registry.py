"""Several local models on one server: loaded on first use, unloaded when the memory budget
needs room (least recently used, never under a request), reloaded on demand."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import TOKEN, Server, start_server, stop_server
from tests.e2e.test_capacity import wait_for
from wai.catalog import embedded_model_path

A_ID = "@cf/wai/model-a"
B_ID = "@cf/wai/model-b"


def _registry(server: Server) -> dict[str, Any]:
    r = requests.get(f"{server.url}/wai/v1/stats", headers=server.auth, timeout=5)
    assert r.status_code == 200
    reg: dict[str, Any] = r.json()["registry"]
    return reg


def _ask(server: Server, model: str, n: int = 4) -> requests.Response:
    body = {"prompt": "Once upon a time", "max_tokens": n, "ignore_eos": True, "temperature": 0}
    return requests.post(server.run_url(model), headers=server.auth, json=body, timeout=120)


def _config(tmp: Path, extra: str = "") -> Path:
    # two local models (copies of the embedded file under other names) besides the default
    for name in ("a", "b"):
        shutil.copy(embedded_model_path(), tmp / f"{name}.gguf")
    config = tmp / "wai.toml"
    config.write_text(f"""
{extra}
[engine]
slots = 2
ctx_per_slot = 256
batch_tokens = 256
weights = "as-is"
[models.a]
path = "{tmp / "a.gguf"}"
serves = ["{A_ID}"]
[models.b]
path = "{tmp / "b.gguf"}"
serves = ["{B_ID}"]
""")
    return config


@pytest.fixture
def lazy(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path, "--config", str(_config(tmp_path)), "--token", TOKEN)
    yield server
    stop_server(server)


def test_models_load_on_first_use_and_once_for_concurrent_requests(lazy: Server) -> None:
    reg = _registry(lazy)["models"]
    assert reg["a"]["state"] == reg["b"]["state"] == "unloaded"
    assert reg["a"]["load"] == "lazy"
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _ask(lazy, A_ID), range(6)))
    assert [r.status_code for r in answers] == [200] * 6
    assert {r.headers["x-wai-model"] for r in answers} == {"a"}
    reg = _registry(lazy)["models"]
    assert reg["a"]["state"] == "loaded" and reg["a"]["loads"] == 1  # one load for all six
    assert reg["a"]["leases"] == 0 and reg["a"]["bytes"] > 0
    assert reg["b"]["state"] == "unloaded"


def _budgeted(tmp: Path, budget: int, extra: str = "") -> Server:
    config = _config(tmp, f"memory_budget = {budget}\nload_wait_seconds = 60\n{extra}")
    return start_server(tmp, "--config", str(config), "--token", TOKEN)


def _one_model_bytes(tmp: Path) -> int:
    server = start_server(tmp, "--config", str(_config(tmp)), "--token", TOKEN)
    try:
        assert _ask(server, A_ID).status_code == 200
        n: int = _registry(server)["models"]["a"]["bytes"]
        return n
    finally:
        stop_server(server)


def test_a_budget_for_one_model_evicts_and_reloads_under_concurrent_requests(
    tmp_path: Path,
) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    one = _one_model_bytes(probe)
    # room for one model at a time (the eager default one included): every switch evicts
    server = _budgeted(tmp_path, one + one // 2)
    try:
        with ThreadPoolExecutor(8) as pool:
            ids = [A_ID, B_ID] * 6
            answers = list(pool.map(lambda m: _ask(server, m, 8), ids))
        assert [r.status_code for r in answers] == [200] * len(ids), [
            r.text for r in answers if r.status_code != 200
        ]
        for model, r in zip(ids, answers, strict=True):
            assert r.headers["x-wai-model"] == model[-1]
            assert r.json()["result"]["usage"]["completion_tokens"] == 8
        before = _registry(server)["models"]["a"]["loads"]
        for model in (A_ID, B_ID, A_ID):  # one after another: each one evicts the other
            assert _ask(server, model).status_code == 200
        reg = _registry(server)
        assert reg["memory_used_bytes"] <= reg["memory_budget_bytes"], json.dumps(reg)
        models = reg["models"]
        assert models["a"]["loads"] >= before + 1 and models["b"]["unloads"] >= 1
        # a, b and the default model, and the embedding stand-in (never loaded here)
        assert all(m["leases"] == 0 for m in models.values()), models
        assert [m["state"] for m in models.values()].count("loaded") == 1
    finally:
        stop_server(server)


def test_an_idle_model_is_unloaded_and_reloads_on_the_next_request(tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        "--config",
        str(_config(tmp_path, "idle_unload_seconds = 1")),
        "--token",
        TOKEN,
    )
    try:
        assert _ask(server, A_ID).status_code == 200
        wait_for(lambda: _registry(server)["models"]["a"]["state"] == "unloaded", timeout=15)
        t0 = time.monotonic()
        r = _ask(server, A_ID)
        assert r.status_code == 200
        reloaded = time.monotonic() - t0
        models = _registry(server)["models"]
        assert models["a"]["loads"] == 2 and models["a"]["unloads"] == 1
        assert reloaded < 30
        # the default model is eager: never unloaded for idleness
        assert next(m for n, m in models.items() if n not in ("a", "b"))["unloads"] == 0
    finally:
        stop_server(server)


def test_a_model_that_cannot_fit_while_others_are_busy_gets_429(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    one = _one_model_bytes(probe)
    config = _config(tmp_path, f"memory_budget = {one + one // 2}\nload_wait_seconds = 0.2")
    server = start_server(tmp_path, "--config", str(config), "--token", TOKEN)
    try:
        body = {
            "prompt": "Once",
            "raw": True,
            "max_tokens": 230,
            "ignore_eos": True,
            "stream": True,
        }
        with requests.post(
            server.run_url(A_ID), headers=server.auth, json=body, stream=True, timeout=120
        ) as held:  # a stream holds a lease on a
            assert held.status_code == 200
            # keep the iterator: a discarded one closes the connection (a cancel)
            chunks = held.iter_content(chunk_size=None)
            next(chunks)
            r = _ask(server, B_ID)
            assert r.status_code == 429, r.text
            assert r.headers["retry-after"] == "1"
            assert r.json()["errors"][0]["code"] == 3040
            assert _registry(server)["models"]["a"]["state"] == "loaded"  # not under its stream
            assert b"[DONE]" in b"".join(chunks)  # the stream ran to its end
        assert _ask(server, B_ID).status_code == 200  # once a is idle, b gets its room
    finally:
        stop_server(server)
