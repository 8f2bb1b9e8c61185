"""Reranking and the tasks wai does not run, on real servers: the stand-in (the embedded
all-MiniLM-L6-v2 ranking by cosine similarity), a reranker GGUF the tests write (a tiny BERT
cross-encoder with random weights) through llama.cpp's rank pooling, checked against the numpy
reference of the same weights; bge-m3's query mode; `/v1/rerank`; ids of other tasks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.conftest import TOKEN, Server, own_server, start_server, stop_server
from tests.cross_encoder import pair_ids, write_cross_encoder
from wai.catalog import EMBEDDED_EMBEDDING_NAME
from wai.weights.bert import reference_embedding, write_gguf

RERANKER = "@cf/baai/bge-reranker-base"
CASES = [
    (
        "What is the capital of France?",
        ["Bananas are rich in potassium.", "Paris is the capital of France.", "I like jazz."],
        1,
    ),
    (
        "How do I bake bread?",
        [
            "Mix flour, water and yeast, then bake the dough.",
            "The stock market fell.",
            "Cats sleep a lot.",
        ],
        0,
    ),
    (
        "Which planet is the largest?",
        [
            "Football is popular in Brazil.",
            "Python is a programming language.",
            "Jupiter is the largest planet in the solar system.",
        ],
        2,
    ),
]
# whole words of the vocabulary, so that the test knows their token ids
QUERY = "what is the capital of france"
DOCS = ["paris is the capital of france", "the quick brown fox", "a dog in the house"]


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from own_server(tmp_path_factory, "rerank-standin")


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cross_encoder(tmp_path_factory.mktemp("cross-encoder") / "tiny")


@pytest.fixture(scope="module")
def reranking(tmp_path_factory: pytest.TempPathFactory, cross_encoder: Path) -> Iterator[Server]:
    """A server with the test's reranker GGUF configured (its task read from the file)."""
    tmp = tmp_path_factory.mktemp("rerank")
    gguf = tmp / "tiny-reranker.gguf"
    write_gguf(cross_encoder, gguf, "tiny-reranker")
    config = tmp / "wai.toml"
    config.write_text(f'[models.tiny-reranker]\npath = "{gguf}"\n')
    srv = start_server(
        tmp, "--token", TOKEN, "--config", str(config),
        env={"WAI_USAGE_DB": str(tmp / "usage.db")},
    )  # fmt: skip
    yield srv
    stop_server(srv)


def _run(server: Server, model: str, body: Any) -> requests.Response:
    return requests.post(server.run_url(model), headers=server.auth, json=body, timeout=60)


def _rank(server: Server, query: str, texts: list[str], **extra: Any) -> requests.Response:
    body = {"query": query, "contexts": [{"text": t} for t in texts], **extra}
    return _run(server, RERANKER, body)


def test_the_binding_reranks_with_the_bare_output(standin: Server) -> None:
    query, texts, best = CASES[0]
    r = requests.post(
        f"{standin.url}/run?version=3",
        headers={**standin.auth, "cf-consn-model-id": f"workers-ai:{RERANKER}"},
        json={"inputs": {"query": query, "contexts": [{"text": t} for t in texts]}},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.json()["response"][0]["id"] == best and "result" not in r.json()


@pytest.mark.parametrize(("query", "texts", "best"), CASES)
def test_the_stand_in_puts_the_relevant_context_first(
    standin: Server, query: str, texts: list[str], best: int
) -> None:
    r = _rank(standin, query, texts)
    assert r.status_code == 200, r.text
    assert r.headers["x-wai-model"] == f"{EMBEDDED_EMBEDDING_NAME} (cosine similarity)"
    response = r.json()["result"]["response"]
    assert response[0]["id"] == best
    assert sorted(item["id"] for item in response) == list(range(len(texts)))
    scores = [item["score"] for item in response]
    assert scores == sorted(scores, reverse=True)


def test_the_stand_in_scores_are_the_cosines_of_the_embeddings(standin: Server) -> None:
    query, texts, _ = CASES[0]
    ranked = _rank(standin, query, texts).json()["result"]["response"]
    embedded = _run(standin, "@cf/baai/bge-small-en-v1.5", {"text": [query, *texts]})
    vectors = np.asarray(embedded.json()["result"]["data"])
    for item in ranked:
        cosine = float(vectors[0] @ vectors[1 + item["id"]])
        assert item["score"] == pytest.approx(cosine, abs=1e-5)


def test_top_k_keeps_the_best(standin: Server) -> None:
    query, texts, best = CASES[2]
    response = _rank(standin, query, texts, top_k=1).json()["result"]["response"]
    assert [item["id"] for item in response] == [best]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"contexts": [{"text": "a"}]}, "/query"),
        ({"query": "q"}, "/contexts"),
        ({"query": "", "contexts": [{"text": "a"}]}, "/query"),
        ({"query": "q", "contexts": []}, "/contexts"),
        ({"query": "q", "contexts": [{"text": ""}]}, "/contexts/0/text"),
        ({"query": "q", "contexts": [{"text": "a"}], "top_k": 0}, "/top_k"),
        ({"query": "q", "contexts": [{"text": "a"}], "extra": 1}, "/extra"),
    ],
)
def test_invalid_input_is_refused_naming_the_field(
    standin: Server, body: dict[str, Any], where: str
) -> None:
    r = _run(standin, RERANKER, body)
    assert r.status_code == 400, r.text
    error = r.json()["errors"][0]
    assert error["code"] == 5006 and f"'{where}" in error["message"]


def test_a_context_longer_than_the_model_takes_is_refused_by_index(standin: Server) -> None:
    r = _rank(standin, "q", ["short", "word " * 600])
    assert r.status_code == 400
    assert "'/contexts/1/text'" in r.json()["errors"][0]["message"]
    ok = _rank(standin, "q", ["short", "word " * 600], truncate_inputs=True)
    assert ok.status_code == 200, ok.text


def test_bge_m3_query_mode_scores_or_embeds_the_contexts(standin: Server) -> None:
    query, texts, best = CASES[0]
    contexts = [{"text": t} for t in texts]
    scored = _run(standin, "@cf/baai/bge-m3", {"query": query, "contexts": contexts})
    assert scored.status_code == 200, scored.text
    assert scored.json()["result"]["response"][0]["id"] == best
    embedded = _run(standin, "@cf/baai/bge-m3", {"contexts": contexts})
    result = embedded.json()["result"]
    assert result["shape"] == [3, 384] and result["pooling"] == "mean"
    assert np.asarray(result["response"]).shape == (3, 384)
    plain = _run(standin, "@cf/baai/bge-m3", {"text": texts}).json()["result"]
    assert np.allclose(plain["data"], result["response"], atol=1e-6)


def test_v1_rerank_answers_as_llama_server_and_vllm_do(standin: Server) -> None:
    query, texts, best = CASES[1]
    body = {"query": query, "documents": [texts[0], {"text": texts[1]}, texts[2]],
            "top_n": 2, "return_documents": True}  # fmt: skip
    r = requests.post(f"{standin.url}/v1/rerank", headers=standin.auth, json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == RERANKER and len(out["results"]) == 2
    first = out["results"][0]
    assert first["index"] == best and first["document"] == {"text": texts[best]}
    assert out["usage"]["prompt_tokens"] > 0
    bad = requests.post(
        f"{standin.url}/v1/rerank", headers=standin.auth, json={"query": "q"}, timeout=60
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "documents"
    text_model = requests.post(
        f"{standin.url}/v1/rerank",
        headers=standin.auth,
        json={"model": "@cf/meta/llama-2-7b-chat-int8", "query": "q", "documents": ["a"]},
        timeout=60,
    )
    assert text_model.status_code == 400 and text_model.json()["error"]["param"] == "model"


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_a_reranker_gguf_scores_through_rank_pooling_as_the_reference_does(
    reranking: Server, cross_encoder: Path
) -> None:
    r = _rank(reranking, QUERY, DOCS)
    assert r.status_code == 200, r.text
    assert r.headers["x-wai-model"] == "tiny-reranker"
    response = r.json()["result"]["response"]
    expected = {
        i: _sigmoid(float(reference_embedding(cross_encoder, pair_ids(cross_encoder, QUERY, d))[0]))
        for i, d in enumerate(DOCS)
    }
    for item in response:
        assert item["score"] == pytest.approx(expected[item["id"]], abs=2e-4)
    best_first = sorted(expected, key=lambda i: -expected[i])
    assert [item["id"] for item in response] == best_first
    cut = _rank(reranking, QUERY, DOCS, top_k=2).json()["result"]["response"]
    assert [item["id"] for item in cut] == best_first[:2]


def test_the_reranker_does_not_embed_and_embedding_ids_keep_the_embedding_model(
    reranking: Server,
) -> None:
    r = _run(reranking, "@cf/baai/bge-base-en-v1.5", {"text": "hello"})
    assert r.status_code == 200 and r.headers["x-wai-model"] == EMBEDDED_EMBEDDING_NAME
    body = {"query": QUERY, "documents": DOCS}
    v1 = requests.post(f"{reranking.url}/v1/rerank", headers=reranking.auth, json=body, timeout=60)
    assert v1.status_code == 200 and v1.headers["x-wai-model"] == "tiny-reranker"


@pytest.mark.parametrize(
    ("model", "task"),
    [
        ("@cf/deepgram/flux", "Automatic Speech Recognition"),
        ("@cf/black-forest-labs/flux-1-schnell", "Text-to-Image"),
        ("@cf/microsoft/resnet-50", "Image Classification"),
        ("@cf/llava-hf/llava-1.5-7b-hf", "Image-to-Text"),
    ],
)
def test_an_id_of_a_task_not_run_here_answers_an_error_naming_the_task(
    standin: Server, model: str, task: str
) -> None:
    r = _run(standin, model, {"prompt": "hello", "text": "hello"})
    assert r.status_code == 400
    error = r.json()["errors"][0]
    assert error["code"] == 5007
    assert task in error["message"] and "Text Generation" in error["message"]
    binding = requests.post(
        f"{standin.url}/run?version=3",
        headers={**standin.auth, "cf-consn-model-id": f"workers-ai:{model}"},
        json={"inputs": {"prompt": "hi"}, "options": {}},
        timeout=30,
    )
    assert binding.status_code == 400 and task in binding.text


def test_search_lists_every_task_and_filters_by_it(standin: Server) -> None:
    base = f"{standin.url}/client/v4/accounts/acc/ai/models"

    def search(**params: Any) -> list[dict[str, Any]]:
        r = requests.get(f"{base}/search", headers=standin.auth, params=params, timeout=30)
        assert r.status_code == 200, r.text
        result: list[dict[str, Any]] = r.json()["result"]
        return result

    everything = search(per_page=1000)
    tasks = {m["task"]["name"] for m in everything}
    assert {"Text Generation", "Text Embeddings", "Text Classification", "Text-to-Image",
            "Automatic Speech Recognition", "Translation"} <= tasks  # fmt: skip
    images = search(task="Text-to-Image", per_page=1000)
    assert images and all(m["task"]["name"] == "Text-to-Image" for m in images)
    assert {"property_id": "wai_served", "value": "false"} in images[0]["properties"]
    rerankers = search(task="Text Classification")
    assert RERANKER in {m["name"] for m in rerankers}
    schema = requests.get(
        f"{base}/schema", headers=standin.auth, params={"model": RERANKER}, timeout=30
    ).json()["result"]
    assert schema["input"]["required"] == ["query", "contexts"]
    assert "response" in schema["output"]["properties"]
    flux = requests.get(
        f"{base}/schema", headers=standin.auth, params={"model": "@cf/deepgram/flux"}, timeout=30
    )
    assert flux.status_code == 400 and "Automatic Speech Recognition" in flux.text
    nova = requests.get(
        f"{base}/schema", headers=standin.auth, params={"model": "@cf/deepgram/nova-3"}, timeout=30
    )
    assert nova.status_code == 200 and "results" in nova.json()["result"]["output"]["properties"]
    # a speech id wai serves answers in its own official shape: the schema is Workers AI's
    whisper = requests.get(
        f"{base}/schema", headers=standin.auth, params={"model": "@cf/openai/whisper"}, timeout=30
    )
    assert whisper.status_code == 200, whisper.text
    assert whisper.json()["result"]["output"]["required"] == ["text"]
    # where the snapshot has Workers AI's own schema of a model of another task, it is answered
    tiny = requests.get(
        f"{base}/schema", headers=standin.auth, params={"model": "@cf/openai/whisper-tiny-en"},
        timeout=30,
    )  # fmt: skip
    assert tiny.status_code == 200
    assert tiny.json()["result"]["output"]["required"] == ["text"]
