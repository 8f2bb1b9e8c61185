"""Every error case answers in the Cloudflare envelope with the right status and code."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import TOKEN, Server


def _error(r: requests.Response, status: int, code: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["errors", "success", "result", "messages"]
    assert body["success"] is False and body["messages"] == []
    assert body["errors"][0]["code"] == code
    err: dict[str, Any] = body["errors"][0]
    err["result"] = body["result"]
    return err


def test_missing_authorization(server: Server) -> None:
    r = requests.post(server.run_url(), json={"prompt": "hi"}, timeout=10)
    err = _error(r, 400, 9106)
    assert err["result"] is None


def test_invalid_token(server: Server) -> None:
    r = requests.post(
        server.run_url(),
        headers={"Authorization": "Bearer wrong-token"},
        json={"prompt": "hi"},
        timeout=10,
    )
    assert _error(r, 401, 10000)["message"] == "Authentication error"


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic abc", f"Bearer Bearer {TOKEN}"])
def test_malformed_authorization(server: Server, header: str) -> None:
    r = requests.post(
        server.run_url(), headers={"Authorization": header}, json={"prompt": "hi"}, timeout=10
    )
    err = _error(r, 400, 6003)
    assert err["error_chain"][0]["code"] == 6111


def test_stats_route_needs_a_token_too(server: Server) -> None:
    _error(requests.get(f"{server.url}/wai/v1/stats", timeout=10), 400, 9106)


def test_unknown_model(server: Server) -> None:
    r = requests.post(
        server.run_url("@cf/acme/does-not-exist"),
        headers=server.auth,
        json={"prompt": "hi"},
        timeout=10,
    )
    err = _error(r, 400, 5007)
    assert "@cf/acme/does-not-exist" in err["message"]
    assert err["result"] == {}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "oneOf"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "oneOf"),
        ({"prompt": ""}, "/prompt"),
        ({"prompt": 5}, "/prompt"),
        ({"messages": [{"role": "user"}]}, "/messages/0/content"),
        ({"messages": "hello"}, "/messages"),
        ({"prompt": "a", "max_tokens": 0}, "/max_tokens"),
        ({"prompt": "a", "max_tokens": "12"}, "/max_tokens"),
        ({"prompt": "a", "max_tokens": 100000}, "/max_tokens"),
        ({"prompt": "a", "temperature": 5.5}, "/temperature"),
        ({"prompt": "a", "temperature": -1}, "/temperature"),
        ({"prompt": "a", "top_p": 0}, "/top_p"),
        ({"prompt": "a", "top_k": 51}, "/top_k"),
        ({"prompt": "a", "seed": 0}, "/seed"),
        ({"prompt": "a", "seed": 10_000_000_000}, "/seed"),
        ({"prompt": "a", "repetition_penalty": 3}, "/repetition_penalty"),
        ({"prompt": "a", "frequency_penalty": -3}, "/frequency_penalty"),
        ({"prompt": "a", "presence_penalty": 2.5}, "/presence_penalty"),
        ({"prompt": "a", "stream": "yes"}, "/stream"),
        ({"prompt": "a", "raw": 1}, "/raw"),
        ({"prompt": "a", "lora": "my-adapter"}, "/lora"),
        ({"prompt": "a", "response_format": {"type": "xml"}}, "/response_format"),
        (
            {"messages": [{"role": "user", "content": "a"}], "tools": [{"name": "f", "x": 1}]},
            "/tools",
        ),
        ({"messages": [{"role": "user"}]}, "/messages/0/content"),
        (
            {"messages": [{"role": "user", "content": None, "tool_calls": []}]},
            "/messages/0/content",
        ),
        ([1, 2], "object"),
        ("just a string", "object"),
        (None, "object"),
    ],
)
def test_schema_violations(server: Server, body: Any, needle: str) -> None:
    r = requests.post(server.run_url(), headers=server.auth, json=body, timeout=10)
    err = _error(r, 400, 5006)
    assert needle in err["message"]
    assert err["message"].startswith("AiError: Bad input")


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"prompt": "a"'])
def test_malformed_json(server: Server, raw: bytes) -> None:
    r = requests.post(server.run_url(), headers=server.auth, data=raw, timeout=10)
    _error(r, 400, 5006)


def test_unknown_keys_are_ignored(server: Server) -> None:
    r = requests.post(
        server.run_url(),
        headers=server.auth,
        timeout=30,
        json={"prompt": "hi", "max_tokens": 2, "some_future_flag": True},
    )
    assert r.status_code == 200


def test_prompt_longer_than_context_is_refused_not_truncated(server: Server) -> None:
    r = requests.post(
        server.run_url(),
        headers=server.auth,
        timeout=30,
        json={"prompt": "word " * 5000, "raw": True},
    )
    err = _error(r, 400, 5006)
    assert "context window" in err["message"]


def test_empty_conversation_is_refused(server: Server) -> None:
    r = requests.post(server.run_url(), headers=server.auth, timeout=30, json={"messages": []})
    assert "/messages" in _error(r, 400, 5006)["message"]


def test_body_over_the_limit(server: Server) -> None:
    r = requests.post(
        server.run_url(),
        headers=server.auth,
        timeout=30,
        data=b'{"prompt": "' + b"a" * (1 << 20) + b'"}',
    )
    _error(r, 413, 3006)


def test_unknown_route(server: Server) -> None:
    r = requests.get(f"{server.url}/client/v4/nothing/here", headers=server.auth, timeout=10)
    assert _error(r, 404, 7000)["result"] is None


def test_wrong_method(server: Server) -> None:
    r = requests.get(server.run_url(), headers=server.auth, timeout=10)
    _error(r, 405, 7001)
