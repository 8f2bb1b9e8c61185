"""The batch queue on a real server with the real models: `?queueRequest=true` batches of
generations and embeddings give what the same requests give one by one, external references
come back, an invalid item refuses the whole batch by its index, batches are private to the
account and token that queued them, limits answer Cloudflare's errors, and the Python client,
the binding's wire form, `wai queue` and /metrics all see the same batches."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.conftest import LLAMA2, ROOT, Server, answer_only, start_server, stop_server
from tests.e2e.queueing import poll, queue_url, submit, wait_done
from wai.client import Ai, AiError

BGE = "@cf/baai/bge-base-en-v1.5"
TEAM1, TEAM1_CI, TEAM2 = "team1-0123456789abcdef", "team1-ci-0123456789ab", "team2-0123456789abc"
NO_QUEUE = "inference-only-0123456789"
MAX_QUEUED = 1000


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def qserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("queue")
    config = tmp / "wai.toml"
    config.write_text(
        f"""
[access.team1]
token = "{TEAM1}"
accounts = ["acc1"]
[access.team1-ci]
token = "{TEAM1_CI}"
accounts = ["acc1"]
[access.team2]
token = "{TEAM2}"
accounts = ["acc2"]
[access.no-queue]
token = "{NO_QUEUE}"
accounts = ["acc1"]
permissions = ["inference"]
"""
    )
    env = {
        "WAI_USAGE_DB": str(tmp / "usage.db"),
        "WAI_SLOTS": "4",
        "WAI_QUEUE_MAX_QUEUED": str(MAX_QUEUED),
    }
    srv = start_server(tmp, "--config", str(config), env=env)
    srv.db = tmp / "usage.db"  # type: ignore[attr-defined]
    yield srv
    stop_server(srv)


T1 = _auth(TEAM1)


def _generation(i: int) -> dict[str, Any]:
    topics = ["rivers", "stars", "bread", "music", "winter"]
    return {
        "messages": [{"role": "user", "content": f"Name one fact about {topics[i % 5]} ({i})."}],
        "max_tokens": 12,
        "temperature": 0,
        "seed": 7,
    }


def _direct(server: Server, model: str, inputs: dict[str, Any]) -> dict[str, Any]:
    r = requests.post(server.run_url(model, "acc1"), json=inputs, headers=T1, timeout=120)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["result"]
    return result


def test_fifty_generations_equal_the_same_requests_one_by_one(qserver: Server) -> None:
    items = [{**_generation(i), "external_reference": f"gen-{i}"} for i in range(50)]
    rid = submit(qserver, LLAMA2, items, T1, "acc1")
    result, _ = wait_done(qserver, LLAMA2, rid, T1, account="acc1")
    responses = result["responses"]
    assert [r["id"] for r in responses] == list(range(50))
    assert [r["external_reference"] for r in responses] == [f"gen-{i}" for i in range(50)]
    assert all(r["success"] for r in responses)
    alone = [_direct(qserver, LLAMA2, _generation(i)) for i in range(50)]
    assert [r["result"]["response"] for r in responses] == [a["response"] for a in alone]
    assert [answer_only(r["result"]["usage"]) for r in responses] == [
        answer_only(a["usage"]) for a in alone
    ]
    total = sum(a["usage"]["total_tokens"] for a in alone)
    assert result["usage"]["total_tokens"] == total


def test_five_hundred_embedding_texts_equal_the_same_requests_one_by_one(qserver: Server) -> None:
    texts = [f"document {i} is about topic {i % 17} and place {i % 5}" for i in range(500)]
    rid = submit(qserver, BGE, [{"text": t} for t in texts], T1, "acc1")
    result, _ = wait_done(qserver, BGE, rid, T1, account="acc1")
    responses = result["responses"]
    assert len(responses) == 500 and all(r["success"] for r in responses)
    assert all(r["external_reference"] is None for r in responses)
    with ThreadPoolExecutor(4) as pool:
        alone = list(pool.map(lambda t: _direct(qserver, BGE, {"text": t}), texts))
    for queued, direct in zip(responses, alone, strict=True):
        assert queued["result"]["shape"] == direct["shape"] == [1, len(direct["data"][0])]
        assert queued["result"]["pooling"] == direct["pooling"] == "mean"
    # packed with other texts into llama.cpp's batches, a vector's numbers move a little (the
    # matmuls' blocking depends on the batch's shape), never toward another text's vector
    a = np.array([r["result"]["data"][0] for r in responses])
    b = np.array([d["data"][0] for d in alone])
    cosines = np.sum(a * b, axis=1)
    assert float(np.abs(a - b).max()) < 1e-3 and float(cosines.min()) > 0.9999
    assert np.all(np.argmax(a @ b.T, axis=1) == np.arange(500))


def test_a_batch_with_an_invalid_item_is_refused_whole_with_its_index(qserver: Server) -> None:
    before = _batches(qserver)
    items = [{"text": "fine"}, {"text": "also fine"}, {"text": 42}]
    r = requests.post(
        queue_url(qserver, BGE, "acc1"), json={"requests": items}, headers=T1, timeout=30
    )
    assert r.status_code == 400
    (error,) = r.json()["errors"]
    assert error["code"] == 5006 and "'/requests/2/text'" in error["message"]
    generation = [_generation(0), {**_generation(1), "max_tokens": 10**9}]
    r = requests.post(
        queue_url(qserver, LLAMA2, "acc1"), json={"requests": generation}, headers=T1, timeout=30
    )
    assert r.status_code == 400 and "/requests/1" in r.json()["errors"][0]["message"]
    assert _batches(qserver) == before  # nothing was queued


def test_a_batch_is_read_only_by_the_account_and_token_that_queued_it(qserver: Server) -> None:
    rid = submit(qserver, BGE, [{"text": "private"}], T1, "acc1")
    wait_done(qserver, BGE, rid, T1, account="acc1")
    for token, account in ((TEAM2, "acc2"), (TEAM1_CI, "acc1")):
        r = poll(qserver, BGE, rid, _auth(token), account)
        assert r.status_code == 404, r.text
        (error,) = r.json()["errors"]
        assert error["code"] == 7003 and rid in error["message"]
    r = poll(qserver, BGE, rid, _auth(TEAM2), "acc1")  # team2 on acc1's URL: out of its scope
    assert r.status_code == 403
    unknown = poll(qserver, BGE, "00000000-0000-4000-8000-000000000000", T1, "acc1")
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["code"] == 7003


def test_queueing_needs_the_queue_permission(qserver: Server) -> None:
    r = requests.post(
        queue_url(qserver, BGE, "acc1"),
        json={"requests": [{"text": "x"}]},
        headers=_auth(NO_QUEUE),
        timeout=30,
    )
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == 10000
    direct = requests.post(
        qserver.run_url(BGE, "acc1"), json={"text": "x"}, headers=_auth(NO_QUEUE), timeout=30
    )
    assert direct.status_code == 200  # its inference permission still works


def test_limits_answer_cloudflare_errors(qserver: Server) -> None:
    url = queue_url(qserver, BGE, "acc2")
    auth = _auth(TEAM2)
    r = requests.post(
        url, json={"requests": [{"text": "x"}] * (MAX_QUEUED + 1)}, headers=auth, timeout=60
    )
    assert r.status_code == 429, r.text
    assert r.json()["errors"][0]["code"] == 3040 and "retry-after" in r.headers
    big = {"requests": [{"text": "y" * 1_000_000}] * 11}  # 11 MB: over the 10 MB payload limit
    r = requests.post(url, json=big, headers=auth, timeout=60)
    assert r.status_code == 413 and r.json()["errors"][0]["code"] == 3006
    r = requests.post(url, json={"requests": []}, headers=auth, timeout=30)
    assert r.status_code == 400 and "'/requests'" in r.json()["errors"][0]["message"]
    r = requests.post(
        qserver.run_url(BGE, "acc2"), json={"requests": [{"text": "x"}]}, headers=auth, timeout=30
    )
    assert r.status_code == 400 and "queueRequest" in r.json()["errors"][0]["message"]


def test_a_failed_item_is_answered_with_its_error_and_the_rest_succeed(qserver: Server) -> None:
    # a prompt longer than the model's window passes the schema and fails when it runs
    long = {"prompt": "word " * 5000, "max_tokens": 4}
    rid = submit(qserver, LLAMA2, [_generation(0), long, _generation(2)], T1, "acc1")
    result, _ = wait_done(qserver, LLAMA2, rid, T1, account="acc1")
    ok, failed, ok2 = result["responses"]
    assert ok["success"] and ok2["success"]
    assert failed["success"] is False and failed["result"] is None
    assert (
        failed["errors"][0]["code"] == 5006 and "context window" in failed["errors"][0]["message"]
    )


def test_the_binding_wire_form_and_the_python_client(qserver: Server) -> None:
    headers = {**T1, "cf-consn-model-id": BGE, "content-type": "application/json"}
    body = {
        "inputs": {"requests": [{"text": "bound", "external_reference": "b"}]},
        "options": {"queueRequest": True},
    }
    r = requests.post(f"{qserver.url}/run?version=3", json=body, headers=headers, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    queued = r.json()  # bare, as the binding returns it
    assert queued["status"] == "queued" and queued["model"] == BGE
    with Ai(base_url=f"{qserver.url}/client/v4", token=TEAM1, account_id="acc1") as ai:
        polled = ai.run(BGE, {"request_id": queued["request_id"]}, queue_request=True)
        while "responses" not in polled:
            polled = ai.run(BGE, {"request_id": queued["request_id"]}, queue_request=True)
        assert polled["responses"][0]["external_reference"] == "b"
        with pytest.raises(AiError) as refused:
            ai.run(BGE, {"requests": [{"text": ""}]}, queue_request=True)
        assert refused.value.code == 5006


def test_wai_queue_and_metrics_show_the_batches(qserver: Server) -> None:
    rid = submit(qserver, BGE, [{"text": "listed"}, {"text": "too"}], T1, "acc1")
    wait_done(qserver, BGE, rid, T1, account="acc1")
    listed = _batches(qserver)
    assert rid in listed
    items = _wai_queue(qserver, rid)
    assert [line.split()[:2] for line in items.splitlines()[1:]] == [["0", "ok"], ["1", "ok"]]
    metrics = requests.get(f"{qserver.url}/metrics", headers=T1, timeout=10).text
    assert 'wai_batch_items{state="finished"}' in metrics
    assert f'wai_batch_item_runs_total{{model="{BGE}",outcome="ok"}}' in metrics
    assert "wai_batch_oldest_queued_seconds" in metrics


def _wai_queue(server: Server, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "wai.cli", "queue", "--db", str(server.db), *args],  # type: ignore[attr-defined]
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _batches(server: Server) -> list[str]:
    lines = _wai_queue(server, "--limit", "1000").splitlines()[1:]
    return [line.split()[0] for line in lines]


def test_the_access_log_has_a_line_per_item(qserver: Server) -> None:
    rid = submit(qserver, BGE, [{"text": "logged"}], T1, "acc1")
    wait_done(qserver, BGE, rid, T1, account="acc1")
    log = Path(qserver.log).read_text()
    assert f'"id": "{rid}/0", "route": "queue", "account": "acc1"' in log
