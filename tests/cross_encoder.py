"""A tiny BERT cross-encoder (a reranker: BertForSequenceClassification) with random weights,
written by the tests in Hugging Face's layout, since no reranker ships on PyPI. It shares the
embedded all-MiniLM-L6-v2's vocabulary, so that whole words have known token ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from wai.catalog import embedded_embedding_source

HIDDEN, LAYERS, HEADS, FFN, POSITIONS = 32, 2, 2, 64, 512


def _tensors(n_vocab: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    t = {
        "bert.embeddings.word_embeddings.weight": w(n_vocab, HIDDEN),
        "bert.embeddings.position_embeddings.weight": w(POSITIONS, HIDDEN),
        "bert.embeddings.token_type_embeddings.weight": w(2, HIDDEN),
        "bert.embeddings.LayerNorm.weight": np.ones(HIDDEN, np.float32),
        "bert.embeddings.LayerNorm.bias": np.zeros(HIDDEN, np.float32),
        "bert.pooler.dense.weight": w(HIDDEN, HIDDEN),
        "bert.pooler.dense.bias": w(HIDDEN),
        "classifier.weight": w(1, HIDDEN),
        "classifier.bias": w(1),
    }
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}."
        for name, (o, n) in {
            "attention.self.query": (HIDDEN, HIDDEN),
            "attention.self.key": (HIDDEN, HIDDEN),
            "attention.self.value": (HIDDEN, HIDDEN),
            "attention.output.dense": (HIDDEN, HIDDEN),
            "intermediate.dense": (FFN, HIDDEN),
            "output.dense": (HIDDEN, FFN),
        }.items():
            t[p + name + ".weight"], t[p + name + ".bias"] = w(o, n), w(o)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + norm + ".weight"] = np.ones(HIDDEN, np.float32)
            t[p + norm + ".bias"] = np.zeros(HIDDEN, np.float32)
    return t


def write_cross_encoder(dest: Path, seed: int = 0) -> Path:
    """The model's directory (config.json, vocab, tokenizer.json, model.safetensors)."""
    src = embedded_embedding_source()
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json"):
        shutil.copy(src / name, dest / name)
    n_vocab = len((src / "vocab.txt").read_text(encoding="utf-8").splitlines())
    config = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": FFN,
        "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "vocab_size": n_vocab,
        "id2label": {"0": "LABEL_0"},
    }
    (dest / "config.json").write_text(json.dumps(config))
    save_file(_tensors(n_vocab, np.random.default_rng(seed)), str(dest / "model.safetensors"))
    return dest


def pair_ids(vocab_dir: Path, query: str, text: str) -> list[int]:
    """[CLS] query [SEP] text [SEP], every word a whole token of the vocabulary."""
    words = (vocab_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    ids = {w: i for i, w in enumerate(words)}
    return [ids["[CLS]"], *(ids[w] for w in query.split()), ids["[SEP]"],
            *(ids[w] for w in text.split()), ids["[SEP]"]]  # fmt: skip
