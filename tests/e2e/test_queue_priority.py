"""A backlog never makes interactive requests wait for a slot, on a real one-slot server:
queued items wait while interactive requests hold the slot (the batch stays `queued`), and a
queued item running when an interactive request arrives gives its slot up at once, runs again
later, and still gives the tokens it gives alone (greedy)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import LLAMA2, TOKEN, Server, start_server, stop_server
from tests.e2e.queueing import poll, submit, wait_done


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("queue-priority")
    env = {"WAI_USAGE_DB": str(tmp / "usage.db"), "WAI_SLOTS": "1"}
    srv = start_server(tmp, "--token", TOKEN, env=env)
    yield srv
    stop_server(srv)


def _stream_for(server: Server, seconds: float) -> threading.Thread:
    """An interactive streaming request that holds the slot for about `seconds`."""

    def hold() -> None:
        body = {
            "prompt": "Tell me a long story",
            "max_tokens": 2000,
            "ignore_eos": True,
            "stream": True,
        }
        with requests.post(
            server.run_url(), json=body, headers=server.auth, stream=True, timeout=60
        ) as r:
            end = time.monotonic() + seconds
            for _ in r.iter_lines():
                if time.monotonic() > end:
                    break  # the client goes away: its generation is cancelled

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


def test_a_batch_waits_while_interactive_requests_hold_the_slots(one_slot: Server) -> None:
    holder = _stream_for(one_slot, 3.0)
    time.sleep(0.5)
    item = {"prompt": "Say yes.", "max_tokens": 4, "temperature": 0}
    rid = submit(one_slot, LLAMA2, [item, item, item])
    for _ in range(10):
        assert poll(one_slot, LLAMA2, rid).json()["result"]["status"] == "queued"
        time.sleep(0.2)
    holder.join()
    result, seen = wait_done(one_slot, LLAMA2, rid)
    assert seen[0] == "queued" and seen[-1] == "done"
    assert seen in (["queued", "running", "done"], ["queued", "done"])
    assert all(r["success"] for r in result["responses"])


def test_an_interactive_request_preempts_a_running_item_which_runs_again(one_slot: Server) -> None:
    long: dict[str, Any] = {
        "prompt": "Count slowly",
        "max_tokens": 600,
        "ignore_eos": True,
        "temperature": 0,
    }
    rid = submit(one_slot, LLAMA2, [long])
    deadline = time.monotonic() + 60
    while poll(one_slot, LLAMA2, rid).json()["result"].get("status") != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # well into its 600 tokens
    t0 = time.monotonic()
    quick = {"prompt": "Say hi", "max_tokens": 4, "temperature": 0}
    r = requests.post(one_slot.run_url(), json=quick, headers=one_slot.auth, timeout=60)
    waited = time.monotonic() - t0
    assert r.status_code == 200
    # the item alone takes seconds more; the interactive request did not wait for it
    assert waited < 1.5, f"the interactive request took {waited:.2f}s"
    result, _ = wait_done(one_slot, LLAMA2, rid)
    (item,) = result["responses"]
    alone = requests.post(one_slot.run_url(), json=long, headers=one_slot.auth, timeout=120).json()
    assert item["success"] and item["result"]["response"] == alone["result"]["response"]
    metrics = requests.get(f"{one_slot.url}/metrics", headers=one_slot.auth, timeout=10).text
    assert f'wai_batch_item_runs_total{{model="{LLAMA2}",outcome="preempted"}}' in metrics
