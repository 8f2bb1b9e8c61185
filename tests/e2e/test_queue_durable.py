"""The batch queue across a SIGKILL of the server, past its retention, and under a daily
allocation: a real server killed mid-batch and started again on the same database finishes
every item exactly once (results and usage counted once); results are deleted after their
retention; the allocation is checked when a batch is queued and when each item runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import LLAMA2, ROOT, TOKEN, Server, start_server, stop_server
from tests.e2e.queueing import poll, queue_url, submit, wait_done
from wai.catalog import EMBEDDED_NAME
from wai.usage import UsageStore

RETENTION = 6.0


def _item(i: int) -> dict[str, Any]:
    return {
        "prompt": f"Write a short line about the number {i}.",
        "max_tokens": 24,
        "temperature": 0,
    }


def _items_of(db: Path, rid: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "wai.cli", "queue", rid, "--db", str(db), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    items: list[dict[str, Any]] = json.loads(out.stdout)
    return items


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("queue-durable")


def _start(tmp: Path) -> Server:
    env = {
        "WAI_USAGE_DB": str(tmp / "usage.db"),
        "WAI_SLOTS": "1",
        "WAI_QUEUE_RETENTION_SECONDS": str(RETENTION),
    }
    return start_server(tmp, "--token", TOKEN, env=env)


@pytest.fixture(scope="module")
def killed_and_restarted(tmp: Path) -> Iterator[tuple[Server, str, list[dict[str, Any]]]]:
    """A 20-item batch, the server SIGKILLed once some items are done, then started again."""
    first = _start(tmp)
    rid = submit(first, LLAMA2, [_item(i) for i in range(20)])
    deadline = time.monotonic() + 120
    while sum(x["state"] == "ok" for x in _items_of(tmp / "usage.db", rid)) < 5:
        assert time.monotonic() < deadline, "the batch did not start"
        time.sleep(0.1)
    first.proc.kill()  # SIGKILL: no shutdown, an item mid-generation
    first.proc.wait(timeout=30)
    before = _items_of(tmp / "usage.db", rid)
    second = _start(tmp)
    yield second, rid, before
    stop_server(second)


def test_a_sigkilled_batch_finishes_every_item_exactly_once_after_a_restart(
    killed_and_restarted: tuple[Server, str, list[dict[str, Any]]], tmp: Path
) -> None:
    server, rid, before = killed_and_restarted
    done_before = [x["id"] for x in before if x["state"] == "ok"]
    assert 5 <= len(done_before) < 20
    result, _ = wait_done(server, LLAMA2, rid)
    # read at once: the results are kept RETENTION seconds only (20 direct requests can take
    # longer than that on a busy 2-core machine)
    assert [x["attempts"] for x in _items_of(tmp / "usage.db", rid)] == [0] * 20
    responses = result["responses"]
    assert [r["id"] for r in responses] == list(range(20)) and all(r["success"] for r in responses)
    alone = []
    for i in range(20):
        r = requests.post(server.run_url(), json=_item(i), headers=server.auth, timeout=60)
        alone.append(r.json()["result"])
    assert [r["result"]["response"] for r in responses] == [a["response"] for a in alone]
    # usage: one row per item, whichever server ran it (the direct requests came after)
    rows = UsageStore(tmp / "usage.db").report(by="model")
    (row,) = [r for r in rows if r["model"] == LLAMA2]
    assert row["requests"] == 40
    queued_tokens = sum(r["result"]["usage"]["total_tokens"] for r in responses)
    direct_tokens = sum(a["usage"]["total_tokens"] for a in alone)
    assert row["prompt_tokens"] + row["completion_tokens"] == queued_tokens + direct_tokens


def test_results_are_deleted_after_their_retention(
    killed_and_restarted: tuple[Server, str, list[dict[str, Any]]], tmp: Path
) -> None:
    server, rid, _ = killed_and_restarted
    deadline = time.monotonic() + 300
    while (r := poll(server, LLAMA2, rid)).status_code == 200:  # done, or already expired
        if r.json()["result"].get("responses") is not None:
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)
    time.sleep(RETENTION + 2)  # the sweep runs every retention / 4
    r = poll(server, LLAMA2, rid)
    assert r.status_code == 404
    (error,) = r.json()["errors"]
    assert error["code"] == 7003 and "expired" in error["message"]
    out = subprocess.run(
        [sys.executable, "-m", "wai.cli", "queue", rid, "--db", str(tmp / "usage.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "no batch" in out.stderr  # deleted, not only hidden


@pytest.fixture(scope="module")
def allocated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One slot, and an allocation that one generation spends."""
    tmp = tmp_path_factory.mktemp("queue-allocation")
    env = {"WAI_USAGE_DB": str(tmp / "usage.db"), "WAI_SLOTS": "1", "WAI_DAILY_NEURONS": "5"}
    srv = start_server(tmp, "--token", TOKEN, env=env)
    yield srv
    stop_server(srv)


def test_the_allocation_applies_when_items_run_and_when_batches_are_queued(
    allocated: Server,
) -> None:
    item = {"prompt": "Say something long.", "max_tokens": 16, "temperature": 0}
    first = submit(allocated, LLAMA2, [item])  # ~10 neurons: spends the 5
    second = submit(allocated, LLAMA2, [item])  # queued before the first ran
    (done,) = wait_done(allocated, LLAMA2, first)[0]["responses"]
    assert done["success"]
    (refused,) = wait_done(allocated, LLAMA2, second)[0]["responses"]
    assert refused["success"] is False and refused["errors"][0]["code"] == 3036
    r = requests.post(
        queue_url(allocated, LLAMA2), json={"requests": [item]}, headers=allocated.auth, timeout=30
    )
    assert r.status_code == 429 and r.json()["errors"][0]["code"] == 3036
    assert poll(allocated, LLAMA2, first).status_code == 200  # results stay readable


def test_items_whose_engine_is_killed_run_again(
    killed_and_restarted: tuple[Server, str, list[dict[str, Any]]], tmp: Path
) -> None:
    server = killed_and_restarted[0]
    long = {"prompt": "Count on", "max_tokens": 400, "ignore_eos": True, "temperature": 0}
    rid = submit(server, LLAMA2, [long, _item(1)])
    deadline = time.monotonic() + 60
    while _items_of(tmp / "usage.db", rid)[0]["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    health = requests.get(f"{server.url}/healthz", timeout=5).json()
    pid = health["runs"][EMBEDDED_NAME]["pid"]
    os.kill(pid, signal.SIGKILL)  # the engine process, under the running item
    result, _ = wait_done(server, LLAMA2, rid)
    assert all(r["success"] for r in result["responses"])
    assert result["responses"][0]["result"]["usage"]["completion_tokens"] == 400
    assert _items_of(tmp / "usage.db", rid)[0]["attempts"] == 1
