"""api/errors.py: the Cloudflare envelope and its OpenAI shape."""

from __future__ import annotations

import json

import pytest

from wai.api.errors import CFError, bad_input, error_response, is_openai_path, openai_from_cf
from wai.errors import NO_SUCH_MODEL, OUT_OF_CAPACITY


def test_inference_errors_carry_result_object_and_request_id() -> None:
    err = CFError.inference(400, NO_SUCH_MODEL, "No such model: x")
    body = err.body("req-1")
    assert list(body) == ["errors", "success", "result", "messages"]
    assert body["result"] == {} and body["success"] is False
    assert body["errors"] == [{"code": 5007, "message": "AiError: No such model: x (req-1)"}]


def test_gateway_errors_carry_null_result_and_no_request_id() -> None:
    err = CFError(
        401, 10000, "Authentication error", gateway=True, chain=[{"code": 1, "message": "m"}]
    )
    body = err.body("req-1")
    assert body["result"] is None
    assert body["errors"][0] == {
        "code": 10000,
        "message": "Authentication error",
        "error_chain": [{"code": 1, "message": "m"}],
    }


def test_response_sets_headers_and_exact_content_type() -> None:
    resp = CFError.inference(429, OUT_OF_CAPACITY, "busy", headers={"retry-after": "1"}).response(
        "r"
    )
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "1" and resp.headers["cf-ai-req-id"] == "r"
    assert resp.headers["content-type"] == "application/json"


def test_openai_shape_maps_unknown_model_to_404() -> None:
    resp = openai_from_cf(CFError.inference(400, NO_SUCH_MODEL, "No such model: x"))
    assert resp.status_code == 404
    body = json.loads(bytes(resp.body))
    assert body["error"] == {
        "message": "No such model: x",
        "type": "not_found_error",
        "param": None,
        "code": "model_not_found",
    }


def test_the_route_decides_the_shape() -> None:
    assert is_openai_path("/v1/chat/completions")
    assert is_openai_path("/client/v4/accounts/a/ai/v1/models")
    assert not is_openai_path("/client/v4/accounts/a/ai/run/@cf/x")
    err = bad_input("x")
    assert "error" in json.loads(bytes(error_response("/v1/models", err).body))
    assert "errors" in json.loads(bytes(error_response("/client/v4/x", err).body))


def test_messages_for_clients_name_files_not_paths() -> None:
    from wai.errors import without_paths

    assert without_paths("cannot read model file /srv/m/x.gguf: gone") == (
        "cannot read model file x.gguf: gone"
    )
    assert without_paths("'/a/b.gguf' is outside (/models)") == "'b.gguf' is outside (models)"
    assert without_paths(r"C:\models\y.gguf is broken") == "y.gguf is broken"
    # URLs and fractions are not paths
    assert without_paths("no answer from http://h:8000/v1") == "no answer from http://h:8000/v1"
    assert without_paths("1/2 of the replicas") == "1/2 of the replicas"


def test_the_client_sends_a_cloudflare_token_only_to_cloudflare(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wai.client import _headers

    monkeypatch.delenv("WAI_TOKEN", raising=False)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-secret")
    local = _headers(None, "http://127.0.0.1:8787/client/v4")
    assert local == {"Authorization": "Bearer local"}
    cloud = _headers(None, "https://api.cloudflare.com/client/v4")
    assert cloud == {"Authorization": "Bearer cf-secret"}
    monkeypatch.setenv("WAI_TOKEN", "wai-secret")
    assert _headers(None, "http://10.0.0.5:8787/client/v4")["Authorization"] == "Bearer wai-secret"
    assert _headers("given", "http://x/client/v4")["Authorization"] == "Bearer given"
