"""Worker code in Miniflare 4 (Node 20), offline, its AI binding answered by a running wai through
integrations/wrangler/wai-ai-plugin.mjs: the seed's Worker unchanged, and a modern Worker."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, TOKEN, Server
from tests.e2e.sse import parse_events
from tests.speech_audio import SENTENCES, recovered, speak

NODE_DIR = ROOT / "tests" / "node"


@pytest.fixture(scope="module")
def results(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    assert (NODE_DIR / "node_modules" / "miniflare").is_dir(), "run `make test` (npm ci)"
    address = server.url.removeprefix("http://")
    speech = tmp_path_factory.mktemp("worker") / "speech.wav"
    speak(SENTENCES[1], speech)
    out = subprocess.run(
        ["node", "run-workers.mjs", address, TOKEN, str(speech)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def test_seed_worker_unchanged(results: dict[str, Any]) -> None:
    seed = results["seed"]
    assert seed["status"] == 200
    out = json.loads(seed["body"])
    assert isinstance(out["response"], str) and out["response"]


def test_modern_worker_json(results: dict[str, Any]) -> None:
    r = results["/json"]
    assert r["status"] == 200
    body = json.loads(r["body"])
    assert body["out"]["response"] and body["out"]["usage"]["completion_tokens"] <= 12
    assert body["requestId"]  # env.AI.lastRequestId, from cf-ai-req-id


def test_modern_worker_stream(results: dict[str, Any]) -> None:
    r = results["/stream"]
    assert r["status"] == 200 and r["contentType"] == "text/event-stream"
    events = parse_events(r["body"])
    assert events[-1] == "[DONE]" and "usage" in events[-2]
    assert "".join(e["response"] for e in events[:-1])


def test_modern_worker_sees_an_inference_upstream_error(results: dict[str, Any]) -> None:
    body = json.loads(results["/error"]["body"])
    assert body["message"].startswith("5007: ")
    assert "@cf/acme/no-such-model" in body["message"]


def test_a_rag_worker_embeds_ranks_and_answers(results: dict[str, Any]) -> None:
    r = results["/rag"]
    assert r["status"] == 200, r["body"]
    body = json.loads(r["body"])
    assert body["shape"] == [4, 384] and body["pooling"] == "mean"
    assert abs(body["norm"] - 1.0) < 1e-4
    ranked = body["ranked"]["response"]
    assert len(ranked) == 2 and ranked[0]["id"] == 0
    assert isinstance(body["answer"]["response"], str)


def test_a_worker_queues_a_batch_and_polls_it(results: dict[str, Any]) -> None:
    """env.AI.run(model, {requests}, {queueRequest: true}), then polling with the request id:
    the binding's batch API, in Worker code, with results equal to a direct call's."""
    r = results["/queue"]
    assert r["status"] == 200, r["body"]
    out = json.loads(r["body"])
    queued = out["queued"]
    assert queued["status"] == "queued"
    assert queued["model"] == "@cf/baai/bge-base-en-v1.5" and len(queued["request_id"]) == 36
    responses = out["polled"]["responses"]
    assert [x["id"] for x in responses] == [0, 1, 2]
    assert [x["external_reference"] for x in responses] == ["doc-0", "doc-1", "doc-2"]
    assert all(x["success"] for x in responses)
    direct = out["direct"]["data"]
    for x, vector in zip(responses, direct, strict=True):
        assert x["result"]["shape"] == [1, len(vector)]
        assert max(abs(a - b) for a, b in zip(x["result"]["data"][0], vector, strict=True)) < 1e-4
    assert out["polled"]["usage"]["prompt_tokens"] > 0


def test_a_worker_classifies_summarizes_and_is_told_what_translation_needs(
    results: dict[str, Any],
) -> None:
    r = results["/text"]
    assert r["status"] == 200, r["body"]
    out = json.loads(r["body"])
    assert out["sentiment"][0]["label"] == "POSITIVE"
    assert abs(sum(x["score"] for x in out["sentiment"]) - 1) < 1e-6
    assert "library" in out["summary"]["summary"] and "bakery" not in out["summary"]["summary"]
    translate, invalid = out["errors"]["translate"], out["errors"]["invalid"]
    assert (
        "5007" in translate["message"] and "wai pull @cf/meta/m2m100-1.2b" in translate["message"]
    )
    assert "5006" in invalid["message"] and "'/input_text': must not be empty" in invalid["message"]


def test_a_worker_transcribes_the_bytes_it_was_sent(results: dict[str, Any]) -> None:
    r = results["/transcribe"]
    assert r["status"] == 200, r["body"]
    out = json.loads(r["body"])
    assert set(out) == {"text", "word_count", "words", "vtt"}
    assert recovered(SENTENCES[1], out["text"]) >= 0.75, out["text"]
    assert out["vtt"].startswith("WEBVTT") and out["words"][0]["start"] >= 0


def test_a_worker_streams_audio_to_nova_3(results: dict[str, Any]) -> None:
    """A ReadableStream input: workerd sends it as the body, the other inputs in the query."""
    r = results["/nova"]
    assert r["status"] == 200, r["body"]
    (channel,) = json.loads(r["body"])["results"]["channels"]
    assert channel["detected_language"] == "en"
    alt = channel["alternatives"][0]
    assert recovered(SENTENCES[1], alt["transcript"]) >= 0.75, alt["transcript"]
    assert alt["words"][0]["punctuated_word"] and alt["words"][0]["start"] >= 0


def test_a_worker_speaks_with_a_deepgram_voice(results: dict[str, Any], server: Server) -> None:
    r = results["/speak"]
    assert r["status"] == 200 and r["contentType"] == "audio/mpeg"
    mp3 = base64.b64decode(r["body"])
    heard = requests.post(
        server.run_url("@cf/openai/whisper"), headers=server.auth, data=mp3, timeout=120
    )
    assert heard.status_code == 200, heard.text
    assert recovered(SENTENCES[1], heard.json()["result"]["text"]) >= 0.75
