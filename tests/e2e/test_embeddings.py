"""Text Embeddings on a real server with the embedded all-MiniLM-L6-v2 standing in for every
embedding id: the REST call, the Worker binding's protocol, the `cloudflare` and `openai` SDKs,
limits, pooling checked against the numpy reference, concurrency, usage and metrics."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from cloudflare import Cloudflare
from openai import BadRequestError, OpenAI

from tests.conftest import TOKEN, Server, own_server
from wai import Ai
from wai.catalog import EMBEDDED_EMBEDDING_NAME, embedded_embedding_source
from wai.engines.llamacpp.gguf import load_tokenizer
from wai.weights.bert import converted, reference_embedding

BGE = "@cf/baai/bge-base-en-v1.5"
DIMS = 384  # the stand-in's, whatever the id's own


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: its model table gains the embedding model."""
    yield from own_server(tmp_path_factory, "embed")


def _embed(server: Server, body: dict[str, Any], model: str = BGE) -> requests.Response:
    return requests.post(server.run_url(model), headers=server.auth, json=body, timeout=60)


def _vectors(server: Server, body: dict[str, Any]) -> np.ndarray:
    r = _embed(server, body)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    return np.asarray(result["data"])


def test_the_seed_style_call_answers_vectors_of_the_stand_in(server: Server) -> None:
    r = _embed(server, {"text": ["Hello, world", "Another sentence"]})
    assert r.status_code == 200, r.text
    assert r.headers["x-wai-model"] == EMBEDDED_EMBEDDING_NAME
    body = r.json()
    assert body["success"] is True and body["errors"] == []
    result = body["result"]
    assert result["shape"] == [2, DIMS] and result["pooling"] == "mean"
    data = np.asarray(result["data"])
    assert data.shape == (2, DIMS)
    assert np.allclose(np.linalg.norm(data, axis=1), 1.0, atol=1e-5)
    single = _embed(server, {"text": "Hello, world"}).json()["result"]
    assert single["shape"] == [1, DIMS]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_each_pooling_equals_the_numpy_reference_of_the_same_model(
    server: Server, pooling: str, tmp_path: Path
) -> None:
    text = "Retrieval augmented generation finds the passages first."
    got = _vectors(server, {"text": [text], "pooling": pooling})[0]
    src = embedded_embedding_source()
    tokens = load_tokenizer(converted(src, tmp_path, "m")).tokenize(
        text, add_special=True, parse_special=False
    )
    assert float(got @ reference_embedding(src, tokens, pooling)) > 0.9999  # type: ignore[arg-type]


def test_cls_and_mean_differ_and_a_paraphrase_is_closer_than_an_unrelated_text(
    server: Server,
) -> None:
    texts = ["The cat sits on the mat.", "A cat is sitting on a mat.", "Stocks fell sharply."]
    mean = _vectors(server, {"text": texts})
    cls = _vectors(server, {"text": texts, "pooling": "cls"})
    assert float(mean[0] @ cls[0]) < 0.99
    assert float(mean[0] @ mean[1]) > float(mean[0] @ mean[2]) + 0.3


def test_a_hundred_texts_are_taken_a_hundred_and_one_refused(server: Server) -> None:
    assert _vectors(server, {"text": [f"text {i}" for i in range(100)]}).shape == (100, DIMS)
    r = _embed(server, {"text": [f"text {i}" for i in range(101)]})
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert err["code"] == 5006 and "'/text'" in err["message"] and "101" in err["message"]
    for bad, where in (({"text": ["ok", ""]}, "'/text/1'"), ({"text": []}, "'/text'")):
        r = _embed(server, bad)
        assert r.status_code == 400 and where in r.json()["errors"][0]["message"], bad


def test_a_text_longer_than_the_model_takes_is_refused_by_index_or_truncated(
    server: Server,
) -> None:
    long = "word " * 700
    r = _embed(server, {"text": ["short", long]})
    assert r.status_code == 400
    message = r.json()["errors"][0]["message"]
    assert "'/text/1'" in message and "512" in message
    cut = _vectors(server, {"text": ["short", long], "truncate_inputs": True})
    assert cut.shape == (2, DIMS)


def test_concurrent_callers_each_get_their_own_vectors(server: Server) -> None:
    texts = [[f"sentence number {i} about topic {j}" for j in range(1 + i % 4)] for i in range(12)]
    alone = [_vectors(server, {"text": t}) for t in texts]
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda t: _vectors(server, {"text": t}), texts))
    # packed with others, a text's numbers move in the last float bits (the matmuls' tiling
    # depends on the batch), never to another text's vector: up to 1.06e-4 on this session's
    # llama.cpp build (2-core EPYC, AVX-512), cosine 0.9999998
    for a, b in zip(alone, together, strict=True):
        assert a.shape == b.shape and np.allclose(a, b, atol=5e-4)
        assert np.all(np.sum(a * b, axis=1) > 0.99999)


def test_the_worker_binding_answers_the_bare_output(server: Server) -> None:
    r = requests.post(
        f"{server.url}/run?version=3",
        headers={**server.auth, "cf-consn-model-id": f"workers-ai:{BGE}"},
        json={"inputs": {"text": ["a binding call"]}, "options": {}},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["shape"] == [1, DIMS] and "result" not in r.json()


def test_the_cloudflare_sdk(server: Server) -> None:
    with Cloudflare(api_token=TOKEN, base_url=f"{server.url}/client/v4") as client:
        out = client.ai.run(BGE, account_id="acc", text=["from the SDK"])
        assert isinstance(out, dict) and out["shape"] == [1, DIMS]


@pytest.mark.parametrize("base", ["/v1", "/client/v4/accounts/acc/ai/v1"])
def test_the_openai_sdk_in_base64_and_float(server: Server, base: str) -> None:
    with OpenAI(api_key=TOKEN, base_url=f"{server.url}{base}") as client:
        texts = ["first text", "second text"]
        b64 = client.embeddings.create(model=BGE, input=texts)  # the SDK's default: base64
        floats = client.embeddings.create(model=BGE, input=texts, encoding_format="float")
        assert [d.index for d in b64.data] == [0, 1] and len(b64.data[0].embedding) == DIMS
        for a, b in zip(b64.data, floats.data, strict=True):
            assert np.allclose(a.embedding, b.embedding, atol=1e-6)
        assert b64.usage.prompt_tokens == b64.usage.total_tokens > 0
        rest = _vectors(server, {"text": texts})
        assert np.allclose(rest, [d.embedding for d in floats.data], atol=1e-6)
        with pytest.raises(BadRequestError, match="dimensions"):
            client.embeddings.create(model=BGE, input="x", dimensions=DIMS + 1)
        with pytest.raises(BadRequestError, match="not an embedding model"):
            client.embeddings.create(model="@cf/meta/llama-2-7b-chat-int8", input="x")


def test_embedding_tokens_are_counted_in_usage_and_metrics(server: Server) -> None:
    r = _embed(server, {"text": ["counted text"]}, model="@cf/baai/bge-small-en-v1.5")
    assert r.status_code == 200
    usage = requests.get(
        f"{server.url}/wai/v1/usage", headers=server.auth, params={"by": "model"}, timeout=10
    ).json()["usage"]
    (row,) = [u for u in usage if u["model"] == "@cf/baai/bge-small-en-v1.5"]
    assert row["requests"] == 1 and row["prompt_tokens"] > 0 and row["completion_tokens"] == 0
    # bge-small-en-v1.5: 1,841 neurons per million input tokens (the report rounds to 0.001)
    assert row["neurons"] == pytest.approx(row["prompt_tokens"] * 1841 / 1e6, abs=1e-3)
    metrics = requests.get(f"{server.url}/metrics", headers=server.auth, timeout=10).text
    line = next(
        ln
        for ln in metrics.splitlines()
        if ln.startswith("wai_prompt_tokens_total") and EMBEDDED_EMBEDDING_NAME in ln
    )
    assert float(line.split()[-1]) > 0


def test_ai_local_embeds_as_the_server_does(server: Server) -> None:
    with Ai.local() as ai:
        out = ai.run(BGE, {"text": ["a local text"]})
    assert out["shape"] == [1, DIMS] and out["pooling"] == "mean"
    assert np.allclose(out["data"], _vectors(server, {"text": ["a local text"]}), atol=1e-5)
