"""Embedding and reranking models served by upstreams: real llama.cpp servers (`llama-server
--embedding` on the embedded all-MiniLM-L6-v2, `--reranking` on the tests' tiny cross-encoder)
behind wai, which answers Workers AI's and OpenAI's shapes with what they compute."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import requests
from openai import OpenAI

from tests.conftest import TOKEN, Server, start_server, stop_server
from tests.cross_encoder import write_cross_encoder
from tests.e2e.upstreams import (
    LlamaServer,
    llama_server_bin,
    start_llama_server,
    stop_llama_server,
)
from wai.catalog import embedded_embedding_source
from wai.weights.bert import converted, write_gguf

BGE = "@cf/baai/bge-large-en-v1.5"
RERANKER = "@cf/baai/bge-reranker-base"
TEXTS = ["The cat sits on the mat.", "Stocks fell sharply.", "A cat is on a mat."]


@dataclass
class Setup:
    wai: Server
    embedder: LlamaServer
    reranker: LlamaServer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("upstream-embed")
    binary = llama_server_bin()
    minilm = converted(embedded_embedding_source(), tmp, "minilm")
    embedder = start_llama_server(
        binary, tmp, model=minilm, ctx=2048, extra=("--embedding", "--pooling", "mean")
    )
    tiny = tmp / "tiny-reranker.gguf"
    write_gguf(write_cross_encoder(tmp / "ce"), tiny, "tiny-reranker")
    reranker = start_llama_server(binary, tmp, model=tiny, ctx=2048, extra=("--reranking",))
    config = tmp / "wai.toml"
    config.write_text(
        f"""
[models.up-embed]
task = "text-embeddings"
serves = ["{BGE}"]
upstreams = [{{url = "{embedder.url}/v1", model = "smollm2"}}]
[models.up-rerank]
task = "reranking"
serves = ["{RERANKER}"]
upstreams = [{{url = "{reranker.url}/v1", model = "smollm2"}}]
"""
    )
    wai = start_server(
        tmp, "--config", str(config), "--token", TOKEN,
        env={"WAI_USAGE_DB": str(tmp / "usage.db")},
    )  # fmt: skip
    yield Setup(wai, embedder, reranker)
    stop_server(wai)
    stop_llama_server(embedder)
    stop_llama_server(reranker)


def _direct(server: LlamaServer, path: str, body: dict[str, Any]) -> Any:
    r = requests.post(f"{server.url}/v1/{path}", json=body, timeout=60)
    r.raise_for_status()
    return r.json()


def test_rest_embeds_through_the_upstream(setup: Setup) -> None:
    r = requests.post(
        setup.wai.run_url(BGE), headers=setup.wai.auth, json={"text": TEXTS}, timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-wai-model"] == "up-embed"
    result = r.json()["result"]
    direct = _direct(setup.embedder, "embeddings", {"input": TEXTS})
    expected = np.asarray(
        [d["embedding"] for d in sorted(direct["data"], key=lambda d: d["index"])]
    )
    assert result["shape"] == list(expected.shape)
    assert np.allclose(result["data"], expected, atol=1e-6)


def test_the_openai_sdk_embeds_through_the_upstream(setup: Setup) -> None:
    with OpenAI(base_url=f"{setup.wai.url}/v1", api_key=TOKEN) as client:
        out = client.embeddings.create(model=BGE, input=TEXTS[:2])  # base64, decoded by the SDK
        assert [d.index for d in out.data] == [0, 1]
        assert out.usage.prompt_tokens > 0
        single = client.embeddings.create(model=BGE, input=TEXTS[0], encoding_format="float")
        assert np.allclose(out.data[0].embedding, single.data[0].embedding, atol=1e-6)


def test_a_pooling_the_upstream_cannot_honour_is_refused(setup: Setup) -> None:
    r = requests.post(
        setup.wai.run_url(BGE),
        headers=setup.wai.auth,
        json={"text": "x", "pooling": "cls"},
        timeout=60,
    )
    assert r.status_code == 400 and "'/pooling'" in r.json()["errors"][0]["message"]


def test_rest_reranks_through_the_upstream_with_its_scores(setup: Setup) -> None:
    body = {"query": "cat on a mat", "contexts": [{"text": t} for t in TEXTS], "top_k": 2}
    r = requests.post(setup.wai.run_url(RERANKER), headers=setup.wai.auth, json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["x-wai-model"] == "up-rerank"
    response = r.json()["result"]["response"]
    direct = _direct(setup.reranker, "rerank", {"query": "cat on a mat", "documents": TEXTS})
    scores = {d["index"]: d["relevance_score"] for d in direct["results"]}
    best = sorted(scores, key=lambda i: -scores[i])[:2]
    assert [item["id"] for item in response] == best
    for item in response:
        assert item["score"] == pytest.approx(scores[item["id"]], abs=1e-5)
    v1 = requests.post(
        f"{setup.wai.url}/v1/rerank",
        headers=setup.wai.auth,
        json={"query": "cat on a mat", "documents": TEXTS},
        timeout=60,
    ).json()
    assert [x["index"] for x in v1["results"]][:2] == best


def test_upstream_embedding_tokens_are_counted(setup: Setup) -> None:
    requests.post(
        setup.wai.run_url(BGE), headers=setup.wai.auth, json={"text": "count me"}, timeout=60
    )
    metrics = requests.get(f"{setup.wai.url}/metrics", headers=setup.wai.auth, timeout=10).text
    assert any(
        line.startswith("wai_prompt_tokens_total") and 'model="up-embed"' in line
        for line in metrics.splitlines()
    ), [line for line in metrics.splitlines() if "prompt_tokens" in line][:5]
