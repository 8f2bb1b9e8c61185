"""Usage accounting against running servers: exact counts under 16 concurrent clients, kept
across a restart and a SIGKILL, the same through /wai/v1/usage and `wai usage`, and the daily
neuron allocation answering 429/3036."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from tests.conftest import LLAMA2, ROOT, TOKEN, Server, start_server, stop_server
from wai.usage import neurons

BODY = {"prompt": "Say hi", "max_tokens": 4, "ignore_eos": True, "temperature": 0}


def _serve(tmp: Path, db: Path, **env: str) -> Server:
    return start_server(
        tmp, "--token", TOKEN, env={"WAI_USAGE_DB": str(db), "WAI_SLOTS": "4", **env}
    )


def _usage(server: Server, **params: str) -> list[dict[str, Any]]:
    r = requests.get(f"{server.url}/wai/v1/usage", headers=server.auth, params=params, timeout=10)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["usage"]
    return rows


def _run(server: Server, account: str) -> dict[str, Any]:
    r = requests.post(server.run_url(account=account), headers=server.auth, json=BODY, timeout=120)
    assert r.status_code == 200, r.text
    usage: dict[str, Any] = r.json()["result"]["usage"]
    return usage


def test_usage_counts_exactly_and_survives_restarts(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    server = _serve(tmp_path, db)
    try:
        with ThreadPoolExecutor(16) as pool:
            usages = list(pool.map(lambda _: _run(server, "acme"), range(32)))
        _run(server, "other")
        (row,) = _usage(server, account="acme")
        prompt = sum(u["prompt_tokens"] for u in usages)
        assert row["model"] == LLAMA2 and row["requests"] == 32
        assert row["completion_tokens"] == 32 * 4 and row["prompt_tokens"] == prompt
        assert abs(row["neurons"] - neurons(LLAMA2, prompt, 128)) < 0.01
        assert {r["account"] for r in _usage(server)} == {"acme", "other"}
        assert _usage(server, by="day")[0]["requests"] == 32  # acme's day, first by account
    finally:
        stop_server(server)

    # a SIGKILL loses nothing that had finished
    server = _serve(tmp_path, db)
    try:
        for _ in range(3):
            _run(server, "acme")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=30)
    finally:
        stop_server(server)
    server = _serve(tmp_path, db)
    try:
        assert _usage(server, account="acme")[0]["requests"] == 35
    finally:
        stop_server(server)

    # the command line reads the same database, with no server
    out = subprocess.run(
        [sys.executable, "-m", "wai.cli", "usage", "--db", str(db), "--by", "account", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert {r["account"]: r["requests"] for r in json.loads(out)} == {"acme": 35, "other": 1}
    table = subprocess.run(
        [sys.executable, "-m", "wai.cli", "usage", "--db", str(db), "--account", "acme"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert table[0].split()[:3] == ["account", "model", "requests"]
    assert table[1].split()[:3] == ["acme", LLAMA2, "35"]


def test_the_daily_allocation_answers_3036(tmp_path: Path) -> None:
    # one request (4 tokens out at llama-2's rate) costs a few neurons: the second exceeds 3
    server = _serve(tmp_path, tmp_path / "usage.db", WAI_DAILY_NEURONS="3")
    try:
        _run(server, "small")
        r = requests.post(
            server.run_url(account="small"), headers=server.auth, json=BODY, timeout=60
        )
        assert r.status_code == 429, r.text
        err = r.json()["errors"][0]
        assert err["code"] == 3036 and "daily allocation of 3 neurons" in err["message"]
        assert err["message"].endswith(f"({r.headers['cf-ai-req-id']})")
        # the token's own allocation, whatever account the URL names (scoped tokens have
        # their accounts': test_scopes.py)
        big = requests.post(server.run_url(account="big"), headers=server.auth, json=BODY)
        assert big.status_code == 429
        # the OpenAI route under the account is held to it too
        chat = {"model": LLAMA2, "messages": [{"role": "user", "content": "hi"}]}
        o = requests.post(
            f"{server.url}/client/v4/accounts/small/ai/v1/chat/completions",
            headers=server.auth,
            json=chat,
            timeout=60,
        )
        assert o.status_code == 429 and o.json()["error"]["code"] == "3036"
        # and nothing else is
        assert requests.get(f"{server.url}/v1/models", headers=server.auth, timeout=10).ok
    finally:
        stop_server(server)


def test_usage_query_is_validated(server: Server) -> None:
    for params in ({"since": "0"}, {"since": "2026-13-45"}, {"by": "token"}):
        r = requests.get(
            f"{server.url}/wai/v1/usage", headers=server.auth, params=params, timeout=10
        )
        assert r.status_code == 400, (params, r.text)
    assert requests.get(f"{server.url}/wai/v1/usage", timeout=10).status_code == 400  # no token
