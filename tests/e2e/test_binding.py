"""The Worker binding's wire protocol, spoken directly (what workerd's ai-api module sends)."""

from __future__ import annotations

import requests

from tests.conftest import LLAMA2, Server
from tests.e2e.sse import read_events


def _run(
    server: Server, body: object, model: str = LLAMA2, path: str = "/run?version=3", **headers: str
) -> requests.Response:
    return requests.post(
        f"{server.url}{path}",
        json=body,
        timeout=60,
        headers={
            **server.auth,
            "cf-consn-model-id": model,
            "cf-consn-sdk-version": "2.0.0",
            **headers,
        },
    )


def test_bare_output_with_exact_content_type_and_request_id(server: Server) -> None:
    r = _run(server, {"inputs": {"prompt": "Hi", "max_tokens": 4}, "options": {}})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cf-ai-req-id"]
    out = r.json()
    assert set(out) == {"response", "usage"} and out["response"]


def test_prefixed_model_id_and_gateway_route(server: Server) -> None:
    r = _run(
        server,
        {"inputs": {"prompt": "Hi", "max_tokens": 2}, "options": {}},
        model=f"my-prefix:{LLAMA2}",
        path="/ai-gateway/run?version=3",
    )
    assert r.status_code == 200 and "response" in r.json()


def test_stream_is_the_workers_ai_sse(server: Server) -> None:
    r = _run(server, {"inputs": {"prompt": "Hi", "max_tokens": 4, "stream": True}, "options": {}})
    assert r.headers["content-type"] == "text/event-stream"
    events = read_events(r)
    assert events[-1] == "[DONE]" and "usage" in events[-2]


def test_errors_carry_internal_code_name_and_description(server: Server) -> None:
    r = _run(server, {"inputs": {"prompt": "Hi"}, "options": {}}, model="@cf/acme/none")
    assert r.status_code == 400
    body = r.json()
    assert body["internalCode"] == 5007 and body["name"] == "NoSuchModel"
    assert "@cf/acme/none" in body["description"]
    r = _run(server, {"inputs": {"prompt": ""}, "options": {}})
    assert r.json()["internalCode"] == 5006
    r = _run(server, {"prompt": "not wrapped"})
    assert r.json()["internalCode"] == 5006


def test_old_protocol_versions_are_refused_clearly(server: Server) -> None:
    r = _run(server, {"inputs": {"prompt": "Hi"}}, path="/run?version=2")
    assert r.status_code == 405 and r.json()["internalCode"] == 5019


def test_wrangler_proxy_route_forwards_the_binding_protocol(server: Server) -> None:
    r = _run(
        server,
        {"inputs": {"prompt": "Hi", "max_tokens": 2}, "options": {}},
        path="/client/v4/accounts/acc/ai/run/proxy",
        **{"X-Forwarded": "https://workers-binding.ai/run?version=3"},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert "response" in r.json()


def test_options_must_be_an_object(server: Server) -> None:
    r = _run(server, {"inputs": {"prompt": "Hi", "max_tokens": 1}, "options": 5})
    assert r.status_code == 400 and r.json()["internalCode"] == 5006
