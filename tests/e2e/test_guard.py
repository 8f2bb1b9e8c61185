"""Edge checks: Host allow-list on loopback, header size, per-token rate limits."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import LLAMA2, TOKEN, Server, start_server, stop_server


def _raw(server: Server, request: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(request)
        return s.recv(4096)


def test_dns_rebinding_host_is_refused_on_loopback(server: Server) -> None:
    r = requests.get(f"{server.url}/healthz", headers={"Host": "attacker.example"}, timeout=5)
    assert r.status_code == 400
    assert r.json()["errors"][0]["error_chain"][0]["message"] == "Host header not allowed"
    port = server.url.rsplit(":", 1)[1]
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", "[::1]:8787"):
        r = requests.get(f"{server.url}/healthz", headers={"Host": host}, timeout=5)
        assert r.status_code == 200, host


def test_oversized_headers_are_refused(server: Server) -> None:
    reply = _raw(
        server, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 431")
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_no_cors_grant_for_other_origins(server: Server) -> None:
    r = requests.options(
        server.run_url(LLAMA2),
        timeout=5,
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers
    r = requests.get(f"{server.url}/healthz", headers={"Origin": "https://evil.example"}, timeout=5)
    assert "access-control-allow-origin" not in r.headers


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("limited"),
        "--token",
        TOKEN,
        "--token",
        "second-token",
        env={"WAI_RATE_LIMIT_RPM": "3"},
    )
    yield srv
    stop_server(srv)


def test_rate_limit_per_token(limited: Server) -> None:
    body = {"prompt": "Hi", "max_tokens": 1}
    codes = [
        requests.post(
            limited.run_url(LLAMA2), headers=limited.auth, json=body, timeout=30
        ).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 200]
    # the scheme in another case is the same token, in the same bucket
    bearer = {"Authorization": f"bEARER {limited.auth['Authorization'].split()[1]}"}
    r = requests.post(limited.run_url(LLAMA2), headers=bearer, json=body, timeout=30)
    assert r.status_code == 429
    assert r.json()["errors"][0]["code"] == 3021
    assert int(r.headers["retry-after"]) >= 1
    other = {"Authorization": "Bearer second-token"}
    assert (
        requests.post(limited.run_url(LLAMA2), headers=other, json=body, timeout=30).status_code
        == 200
    )
    # non-inference routes are not counted
    assert (
        requests.get(f"{limited.url}/wai/v1/stats", headers=limited.auth, timeout=5).status_code
        == 200
    )


@pytest.fixture(scope="module")
def per_task(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("per-task")
    config = tmp / "wai.toml"
    config.write_text('[rate_limits]\n"text-embeddings" = 2\n')
    srv = start_server(tmp, "--token", TOKEN, "--config", str(config))
    yield srv
    stop_server(srv)


def test_a_task_has_its_own_rate_limit_on_every_route(per_task: Server) -> None:
    bge = "@cf/baai/bge-small-en-v1.5"
    auth = per_task.auth
    first = requests.post(per_task.run_url(bge), headers=auth, json={"text": "a"}, timeout=30)
    second = requests.post(
        f"{per_task.url}/v1/embeddings", headers=auth, json={"model": bge, "input": "b"}, timeout=30
    )
    assert (first.status_code, second.status_code) == (200, 200)
    third = requests.post(
        f"{per_task.url}/run?version=3",
        headers={**auth, "cf-consn-model-id": f"workers-ai:{bge}"},
        json={"inputs": {"text": "c"}},
        timeout=30,
    )
    assert third.status_code == 429 and "retry-after" in third.headers
    # text generation and reranking are not limited here
    for _ in range(3):
        r = requests.post(
            per_task.run_url(LLAMA2), headers=auth, json={"prompt": "Hi", "max_tokens": 1},
            timeout=30,
        )  # fmt: skip
        assert r.status_code == 200
    rerank = {"query": "q", "contexts": [{"text": "a"}]}
    r = requests.post(
        per_task.run_url("@cf/baai/bge-reranker-base"), headers=auth, json=rerank, timeout=30
    )
    assert r.status_code == 200
