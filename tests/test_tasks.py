"""Unit tests of the task seams: which kind an id or a file is, how rerank scores and
upstream answers are read, the task error, per-task rate-limit buckets, the catalog snapshot
and its refresh rules."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cross_encoder import pair_ids, write_cross_encoder
from wai.answers import cf_ranking, rank_scores, ranked
from wai.api.guard import RateLimit
from wai.backends.base import EmbeddingRequest, RerankRequest, Vectors
from wai.backends.factory import task_of
from wai.backends.upstream.openai_format import BrokenStream
from wai.backends.upstream.vectors_format import VectorsRelay, _embeddings, _scores, vectors_body
from wai.catalog import BART_CNN, INDICTRANS2, M2M100, Catalog, snapshot
from wai.engines.llamacpp.gguf import load_tokenizer
from wai.errors import InvalidInput, UnservedTask
from wai.settings import ModelConfig
from wai.weights.bert import check_vectors, reference_embedding, write_gguf

ROOT = Path(__file__).resolve().parent.parent


def _vectors(rows: list[list[float]], pooling: str) -> Vectors:
    a = np.asarray(rows, dtype=np.float32)
    return Vectors(a.tobytes(), (a.shape[0], a.shape[1]), pooling)  # type: ignore[arg-type]


def test_a_rerankers_scores_go_through_a_sigmoid() -> None:
    scores = rank_scores(_vectors([[0.0], [2.0], [-2.0]], "rank"))
    assert scores == pytest.approx([0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))])


def test_an_upstreams_scores_are_kept_as_given() -> None:
    assert rank_scores(_vectors([[0.25], [3.5]], "score")) == pytest.approx([0.25, 3.5])


def test_an_embedding_models_vectors_rank_by_cosine_to_the_query() -> None:
    query, same, orthogonal, opposite = [1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]
    scores = rank_scores(_vectors([query, same, orthogonal, opposite], "mean"))
    assert scores == pytest.approx([1.0, 0.0, -1.0])


def test_ranking_is_best_first_ties_in_order_and_top_k_cuts() -> None:
    assert ranked([0.1, 0.9, 0.9, 0.5], None) == [(1, 0.9), (2, 0.9), (3, 0.5), (0, 0.1)]
    assert ranked([0.1, 0.9, 0.5], 2) == [(1, 0.9), (2, 0.5)]
    out = cf_ranking(_vectors([[1.0], [3.0]], "score"), 1)
    assert out == {"response": [{"id": 1, "score": 3.0}]}


def test_an_unserved_task_error_names_the_task_with_its_article() -> None:
    e = UnservedTask("@cf/openai/whisper", "Automatic Speech Recognition", "Text Generation")
    assert e.message.startswith("@cf/openai/whisper is an Automatic Speech Recognition model")
    assert "a Text-to-Image model" in UnservedTask("x", "Text-to-Image", "y").message


def test_the_catalog_knows_every_snapshot_id_with_a_kind_only_where_wai_runs_it() -> None:
    catalog = Catalog()
    names = {m["name"] for m in snapshot()["models"]}
    assert names <= {s.id for s in catalog.specs}
    kinds = {s.task.name: s.kind for s in catalog.specs if s.facts is None or s.kind is None}
    flux = catalog.get("@cf/deepgram/flux")  # a WebSocket stream: refused
    assert flux is not None and flux.kind is None
    nova = catalog.get("@cf/deepgram/nova-3")  # pre-recorded: answered by the stand-in
    assert nova is not None and nova.kind == "automatic-speech-recognition"
    voice = catalog.get("@cf/deepgram/aura-2-en")
    assert voice is not None and voice.kind == "text-to-speech"
    whisper = catalog.get("@cf/openai/whisper-large-v3-turbo")
    assert whisper is not None and whisper.kind == "automatic-speech-recognition"
    assert kinds["Text-to-Image"] is None
    reranker = catalog.get("@cf/baai/bge-reranker-base")
    assert reranker is not None and reranker.kind == "reranking"
    assert reranker.task.name == "Text Classification"
    sentiment = catalog.get("@cf/huggingface/distilbert-sst-2-int8")
    assert sentiment is not None and sentiment.kind == "text-classification"  # not a reranker
    for mid, kind in ((M2M100, "translation"), (INDICTRANS2, "translation"),
                      (BART_CNN, "summarization")):  # fmt: skip
        spec = catalog.get(mid)
        assert spec is not None and spec.kind == kind and spec.schema is not None
    m3 = catalog.get("@cf/baai/bge-m3")
    assert m3 is not None and m3.query_mode and m3.kind == "text-embeddings"


def test_the_refresh_scripts_task_rules() -> None:
    spec = importlib.util.spec_from_file_location("refresh", ROOT / "scripts/refresh_catalog.py")
    assert spec is not None and spec.loader is not None
    refresh = importlib.util.module_from_spec(spec)
    sys.modules["refresh"] = refresh
    spec.loader.exec_module(refresh)
    rules = {
        ("@cf/baai/bge-reranker-base", "Base_Ai_Cf_Baai_Bge_Reranker_Base"): "Text Classification",
        ("@cf/baai/bge-m3", "Base_Ai_Cf_Baai_Bge_M3"): "Text Embeddings",
        ("@cf/deepgram/flux", "Base_Ai_Cf_Deepgram_Flux"): "Automatic Speech Recognition",
        ("@cf/black-forest-labs/flux-2-dev", "X"): "Text-to-Image",
        ("@cf/deepgram/aura-1", "X"): "Text-to-Speech",
        ("@cf/zai-org/glm-5.3", "X"): "Text Generation",
        ("@cf/any/thing", "BaseAiTranslation"): "Translation",
    }
    for (model_id, type_name), task in rules.items():
        assert refresh.task_for(model_id, type_name) == task, model_id
    assert refresh.merge([{"name": "a", "task": "T"}], [{"name": "a", "id": "u", "task": "S"}]) == [
        {"name": "a", "id": "u", "task": "T"}
    ]


def test_per_task_rate_limits_keep_a_bucket_per_task() -> None:
    limit = RateLimit(lambda *_: None, rpm=0, per_task={"text-embeddings": 2})  # type: ignore[arg-type]
    assert limit.buckets("text-generation") is None  # 0: no limit
    embeddings = limit.buckets("text-embeddings")
    assert embeddings is not None and embeddings is limit.buckets("text-embeddings")
    assert embeddings.take("k") == 0 and embeddings.take("k") == 0 and embeddings.take("k") > 0
    both = RateLimit(lambda *_: None, rpm=5, per_task={"reranking": 0})  # type: ignore[arg-type]
    assert both.buckets("reranking") is None and both.buckets("text-generation") is not None


def test_upstream_bodies_and_a_pooling_an_upstream_cannot_honour() -> None:
    path, body = vectors_body(RerankRequest("q", ("a", "b")))
    assert path == "/rerank" and body == {"query": "q", "documents": ["a", "b"], "top_n": 2}
    path, body = vectors_body(EmbeddingRequest(("a",)))
    assert path == "/embeddings" and body == {"input": ["a"], "encoding_format": "float"}
    with pytest.raises(InvalidInput, match="'/pooling'"):
        vectors_body(EmbeddingRequest(("a",), "cls"))


def test_upstream_answers_are_read_in_the_texts_order_or_refused() -> None:
    data = {"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]}
    assert _embeddings(data, 2).rows() == [[1.0, 0.0], [0.0, 1.0]]
    jina = {"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]}
    assert _scores(jina, 2).rows() == [[pytest.approx(0.1)], [pytest.approx(0.9)]]
    tei = [{"index": 0, "score": 2.0}]
    assert _scores(tei, 1).pooling == "score"
    for broken in (
        lambda: _embeddings({"data": []}, 1),
        lambda: _embeddings({"data": [{"index": 5, "embedding": [1.0]}]}, 1),
        lambda: _embeddings({"data": [{"embedding": [1.0]}, {"embedding": [1.0, 2.0]}]}, 2),
        lambda: _scores({"results": [{"index": 0}]}, 1),
        lambda: _scores({"results": [{"index": 0, "score": 1}, {"index": 0, "score": 2}]}, 2),
    ):
        with pytest.raises(BrokenStream):
            broken()


def test_a_non_json_upstream_answer_is_a_broken_stream() -> None:
    import httpx

    queue: asyncio.Queue[object] = asyncio.Queue()
    relay = VectorsRelay(queue, EmbeddingRequest(("a",)))  # type: ignore[arg-type]
    with pytest.raises(BrokenStream, match="not JSON"):
        asyncio.run(relay.run(httpx.Response(200, content=b"<html>")))
    assert not relay.started


def test_a_cross_encoder_is_written_with_rank_pooling_and_read_as_a_reranker(
    tmp_path: Path,
) -> None:
    src = write_cross_encoder(tmp_path / "ce")
    gguf = tmp_path / "ce.gguf"
    write_gguf(src, gguf, "ce")
    assert task_of(ModelConfig(path=gguf)) == "reranking"
    probe, checks = check_vectors(gguf)
    assert set(checks) == {"rank"}
    assert checks["rank"] == pytest.approx(reference_embedding(src, probe), abs=1e-5)
    tok = load_tokenizer(gguf)
    query, doc = "what is the capital of france", "paris is the capital of france"
    # BERT's pair: [CLS] query [SEP] doc [SEP], as Hugging Face's tokenizer joins one
    assert tok.pair(query, doc) == pair_ids(src, query, doc)


def test_an_upstream_line_without_end_is_a_broken_stream_not_unbounded_memory() -> None:
    import httpx

    from wai.backends.upstream.openai_format import MAX_LINE_BYTES, sse_data

    sent = 0

    async def endless() -> Any:
        nonlocal sent
        while True:
            sent += 1 << 20
            yield b"x" * (1 << 20)  # never a newline

    async def read() -> None:
        async for _ in sse_data(httpx.Response(200, content=endless())):
            pass

    with pytest.raises(BrokenStream, match="a line of more than"):
        asyncio.run(read())
    assert sent <= MAX_LINE_BYTES + (2 << 20)


def test_the_settings_know_every_kind_the_catalog_knows() -> None:
    from typing import get_args

    from wai.catalog import KINDS
    from wai.settings import Kind

    assert get_args(Kind) == KINDS
