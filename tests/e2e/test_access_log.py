"""Request ids and the access log, on the running server: every response carries
cf-ai-req-id, error messages end with it, and each request is one JSON log line with every
field and no prompt or output text."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

from tests.conftest import LLAMA2, TOKEN, Server, start_server, stop_server

SECRET = "purple-elephant-7731"  # a prompt the log must never show


def _lines(server: Server, request_id: str) -> list[dict[str, Any]]:
    found = []
    for raw in server.log.read_text().splitlines():
        if raw.startswith("{") and request_id in raw:
            found.append(json.loads(raw))
    return found


def _line(server: Server, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # written when the response has gone out
        lines = _lines(server, request_id)
        if lines:
            assert len(lines) == 1
            return lines[0]
        time.sleep(0.05)
    raise AssertionError(f"no access-log line for {request_id}")


def test_every_response_carries_a_request_id(server: Server) -> None:
    ids = set()
    for method, url, body in [
        ("GET", f"{server.url}/healthz", None),
        ("GET", f"{server.url}/v1/models", None),
        ("GET", f"{server.url}/no/such/route", None),
        ("POST", f"{server.url}/v1/chat/completions", {"model": LLAMA2, "messages": []}),
    ]:
        r = requests.request(method, url, headers=server.auth, json=body, timeout=10)
        ids.add(r.headers["cf-ai-req-id"])
    assert len(ids) == 4
    r = requests.post(server.run_url(), headers=server.auth, json={"prompt": 7}, timeout=10)
    rid = r.headers["cf-ai-req-id"]
    assert r.json()["errors"][0]["message"].endswith(f"({rid})")


def test_one_json_line_per_request_without_content(server: Server) -> None:
    body = {"prompt": SECRET, "max_tokens": 6, "temperature": 0}
    r = requests.post(server.run_url(account="acme"), headers=server.auth, json=body, timeout=60)
    assert r.status_code == 200
    line = _line(server, r.headers["cf-ai-req-id"])
    usage = r.json()["result"]["usage"]
    assert line["route"] == "/client/v4/accounts/{account_id}/ai/run/{model:path}"
    assert line["method"] == "POST" and line["status"] == 200 and line["account"] == "acme"
    assert line["model"] == r.headers["x-wai-model"]
    assert line["prompt_tokens"] == usage["prompt_tokens"]
    assert line["completion_tokens"] == 6 and line["cached_tokens"] >= 0
    assert line["finish_reason"] == "length"
    assert 0 < line["ttft_ms"] <= line["duration_ms"]
    assert line["token"].startswith("sha256:") and len(line["token"]) == 19
    text = server.log.read_text()
    assert SECRET not in text and r.json()["result"]["response"] not in text
    token = server.auth["Authorization"].split()[1]
    assert token not in text
    # a stream is logged when it ends, with its tokens
    with requests.post(
        server.run_url(), headers=server.auth, json={**body, "stream": True}, timeout=60
    ) as s:
        assert s.status_code == 200
        rid = s.headers["cf-ai-req-id"]
        s.content  # noqa: B018 (read it all)
    assert _line(server, rid)["completion_tokens"] == 6


def test_log_content_adds_prompt_and_output(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--token", TOKEN, env={"WAI_LOG_CONTENT": "true"})
    try:
        body = {"prompt": SECRET, "max_tokens": 6, "temperature": 0}
        r = requests.post(server.run_url(), headers=server.auth, json=body, timeout=60)
        line = _line(server, r.headers["cf-ai-req-id"])
        assert line["prompt"] == SECRET and line["output"] == r.json()["result"]["response"]
    finally:
        stop_server(server)
