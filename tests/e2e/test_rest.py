"""The seed page's calls and the official cloudflare SDK against a real wai."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import cloudflare
import pytest
import requests

from tests.conftest import LLAMA2, TOKEN, Server

SEED_MESSAGES = [
    {"role": "system", "content": "You are a friendly assistant"},
    {"role": "user", "content": "What is the origin of the phrase Hello, World"},
]


def test_seed_curl_form_encoded(server: Server) -> None:
    # The seed's curl sends JSON with no Content-Type, so it goes out form-encoded.
    body = json.dumps({"messages": SEED_MESSAGES, "max_tokens": 16})
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-i",
            server.run_url(),
            "-X",
            "POST",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "-d",
            body,
        ],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout.decode()
    head, _, payload = out.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200")
    assert "content-type: application/json\r\n" in head.lower() + "\r\n"
    data = json.loads(payload)
    assert data["success"] is True and data["errors"] == [] and data["messages"] == []
    assert isinstance(data["result"]["response"], str) and data["result"]["response"]


def test_seed_python_requests(server: Server) -> None:
    api_base_url = f"{server.url}/client/v4/accounts/acc/ai/run/"
    r = requests.post(
        f"{api_base_url}{LLAMA2}",
        headers=server.auth,
        json={"messages": SEED_MESSAGES, "max_tokens": 16},
        timeout=60,
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-wai-model"] == "SmolLM2-135M-Instruct-Q4_1"
    result = r.json()["result"]
    usage = result["usage"]
    assert usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] > 10


def test_seed_python_as_written_sends_a_bare_string(server: Server) -> None:
    # The seed's Python posts json=prompt (a bare string): a clear 5006, not a crash.
    r = requests.post(server.run_url(), headers=server.auth, json="Tell me a story", timeout=30)
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert err["code"] == 5006 and "object" in err["message"]


@pytest.fixture
def cf(server: Server) -> Iterator[cloudflare.Cloudflare]:
    with cloudflare.Cloudflare(
        api_token=TOKEN, base_url=f"{server.url}/client/v4", max_retries=0
    ) as client:
        yield client


def test_cloudflare_sdk_messages(cf: cloudflare.Cloudflare) -> None:
    out = cf.ai.run(LLAMA2, account_id="acc", messages=SEED_MESSAGES, max_tokens=12, temperature=0)
    assert isinstance(out, dict)
    assert isinstance(out["response"], str) and out["response"]
    assert out["usage"]["completion_tokens"] <= 12


def test_cloudflare_sdk_prompt(cf: cloudflare.Cloudflare) -> None:
    out = cf.ai.run(LLAMA2, account_id="acc", prompt="Tell me a story", max_tokens=12, seed=7)
    assert isinstance(out, dict) and out["response"]


def test_cloudflare_sdk_error_is_raised_with_code(cf: cloudflare.Cloudflare) -> None:
    with pytest.raises(cloudflare.BadRequestError) as info:
        cf.ai.run("@cf/nope/not-a-model", account_id="acc", prompt="hi")
    assert info.value.status_code == 400
    assert "5007" in str(info.value)


@pytest.mark.parametrize("path_model", [LLAMA2, LLAMA2.replace("/", "%2F")])
def test_model_path_literal_or_encoded(server: Server, path_model: str) -> None:
    r = requests.post(
        server.run_url(path_model),
        headers=server.auth,
        json={"prompt": "Hi", "max_tokens": 4},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def test_every_catalog_text_generation_id_resolves(server: Server) -> None:
    for model in [
        "@cf/mistral/mistral-7b-instruct-v0.1",
        "@cf/meta/llama-3.1-8b-instruct",
        "@hf/thebloke/zephyr-7b-beta-awq",
        "@cf/qwen/qwen1.5-0.5b-chat",
    ]:
        r = requests.post(
            server.run_url(model),
            headers=server.auth,
            json={"prompt": "Hi", "max_tokens": 2},
            timeout=30,
        )
        assert r.status_code == 200, (model, r.text)
        assert r.headers["x-wai-model"] == "SmolLM2-135M-Instruct-Q4_1"


def test_greedy_is_deterministic_and_raw_differs_from_templated(server: Server) -> None:
    def run(**kw: object) -> str:
        r = requests.post(
            server.run_url(),
            headers=server.auth,
            timeout=60,
            json={"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0, **kw},
        )
        assert r.status_code == 200, r.text
        text: str = r.json()["result"]["response"]
        return text

    assert run() == run()
    raw = run(raw=True)
    assert raw == run(raw=True)
    assert raw != run()


def test_seeded_sampling_is_reproducible(server: Server) -> None:
    def run(seed: int) -> str:
        r = requests.post(
            server.run_url(),
            headers=server.auth,
            timeout=60,
            json={
                "prompt": "Write a poem",
                "max_tokens": 16,
                "temperature": 1.0,
                "top_k": 40,
                "top_p": 0.95,
                "seed": seed,
            },
        )
        text: str = r.json()["result"]["response"]
        return text

    assert run(1234) == run(1234)


def test_penalties_are_accepted(server: Server) -> None:
    r = requests.post(
        server.run_url(),
        headers=server.auth,
        timeout=60,
        json={
            "prompt": "List fruits",
            "max_tokens": 8,
            "temperature": 0,
            "repetition_penalty": 1.3,
            "frequency_penalty": 0.5,
            "presence_penalty": -0.5,
        },
    )
    assert r.status_code == 200, r.text


def test_max_tokens_is_respected(server: Server) -> None:
    r = requests.post(
        server.run_url(),
        headers=server.auth,
        timeout=60,
        json={
            "prompt": "Count from one to one hundred in words.",
            "max_tokens": 5,
            "temperature": 0,
        },
    )
    assert r.json()["result"]["usage"]["completion_tokens"] == 5


def test_healthz_needs_no_token(server: Server) -> None:
    r = requests.get(f"{server.url}/healthz", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok"
