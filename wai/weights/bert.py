"""A BERT sentence-embedding model, as sentence-transformers lays one out (`config.json`,
`vocab.txt`, `tokenizer.json`, `model.safetensors`, `1_Pooling/config.json`), or a BERT
cross-encoder (a reranker: `BertForSequenceClassification`, its pooler and classifier as the
classification head), written as a GGUF that llama.cpp's BERT graph loads; and the same model's
forward pass in numpy, the reference the written file is checked against.

llama.cpp's own converter (`convert_hf_to_gguf.py`) needs torch and transformers; this needs
numpy, safetensors and the gguf package. The file keeps the weights as they are (f32) and says
how the model pools (`bert.pooling_type`) and whether it normalizes (wai's own key,
`wai.embedding.normalize`, from the model's sentence-transformers modules).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np
from safetensors.numpy import load_file

Pooling = Literal["mean", "cls", "rank"]
NORMALIZE_KEY = "wai.embedding.normalize"
# The check a written file carries: token ids of a probe sentence and its embeddings as the
# numpy reference computed them from the safetensors, for each pooling. Whoever loads the file
# in llama.cpp can compare (see `check_vectors`).
CHECK_TOKENS_KEY = "wai.embedding.check.tokens"
CHECK_KEY = "wai.embedding.check.{pooling}"
# whole words of the uncased WordPiece vocabulary: their ids need no tokenizer
PROBE = "the quick brown fox jumps over the lazy dog"
_POOLING = {
    "mean": gguf.PoolingType.MEAN,
    "cls": gguf.PoolingType.CLS,
    "rank": gguf.PoolingType.RANK,
}
# HF tensor names (without a "bert." prefix) -> llama.cpp's BERT tensor names
_GLOBAL = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}
# a cross-encoder's classification head: llama.cpp's rank pooling runs it on the [CLS] token
_HEAD = {
    "pooler.dense.weight": "cls.weight",
    "pooler.dense.bias": "cls.bias",
    "classifier.weight": "cls.output.weight",
    "classifier.bias": "cls.output.bias",
}
_LAYER = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}


@dataclass(frozen=True, slots=True)
class BertConfig:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    type_vocab: int
    eps: float
    pooling: Pooling
    normalize: bool
    labels: tuple[str, ...] = ()  # a cross-encoder's output labels (an embedding model: none)

    @classmethod
    def read(cls, src: Path) -> BertConfig:
        cfg = json.loads((src / "config.json").read_text())
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{src}: not a BERT model with GELU ({cfg.get('model_type')})")
        labels: tuple[str, ...] = ()
        pooling: Pooling = "rank"
        if any(a.endswith("ForSequenceClassification") for a in cfg.get("architectures", [])):
            id2label = cfg.get("id2label") or {"0": "LABEL_0"}
            labels = tuple(id2label[k] for k in sorted(id2label, key=int))
        else:
            pooling_cfg = json.loads((src / "1_Pooling" / "config.json").read_text())
            pooling = "cls" if pooling_cfg.get("pooling_mode_cls_token") else "mean"
        modules = src / "modules.json"
        normalize = modules.exists() and any(
            m.get("type", "").endswith(".Normalize") for m in json.loads(modules.read_text())
        )
        return cls(
            hidden=int(cfg["hidden_size"]),
            layers=int(cfg["num_hidden_layers"]),
            heads=int(cfg["num_attention_heads"]),
            intermediate=int(cfg["intermediate_size"]),
            max_positions=int(cfg["max_position_embeddings"]),
            type_vocab=int(cfg.get("type_vocab_size", 2)),
            eps=float(cfg.get("layer_norm_eps", 1e-12)),
            pooling=pooling,
            normalize=normalize,
            labels=labels,
        )


def _weights(src: Path) -> dict[str, np.ndarray]:
    """The model's tensors by their HF names, without a "bert." prefix."""
    tensors = load_file(str(src / "model.safetensors"))
    return {k.removeprefix("bert."): v.astype(np.float32) for k, v in tensors.items()}


def _vocab(src: Path) -> tuple[list[str], list[gguf.TokenType]]:
    """The WordPiece vocabulary in llama.cpp's form (a "▁" before a word's first piece, "##"
    dropped from the others; special tokens as they are) and each token's type."""
    words = (src / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if words and words[-1] == "":
        words.pop()
    special = {
        t["id"]
        for t in json.loads((src / "tokenizer.json").read_text())["added_tokens"]
        if t.get("special")
    }
    tokens, types = [], []
    for i, word in enumerate(words):
        if i in special:
            tokens.append(word)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(word[2:] if word.startswith("##") else "\u2581" + word)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _probe_ids(tokens: list[str]) -> list[int]:
    """[CLS] PROBE [SEP] as token ids, each word a whole token of the vocabulary."""
    ids = {t: i for i, t in enumerate(tokens)}
    return [ids["[CLS]"], *(ids["\u2581" + word] for word in PROBE.split()), ids["[SEP]"]]


def check_vectors(path: Path) -> tuple[list[int], dict[str, Any]]:
    """The probe's token ids and its reference embeddings by pooling, as written in a file."""
    reader = gguf.GGUFReader(str(path))

    def values(key: str) -> list[Any]:
        field = reader.get_field(key)
        if field is None:
            raise ValueError(f"{path} carries no {key}")
        return [field.parts[i][0] for i in field.data]

    tokens = [int(v) for v in values(CHECK_TOKENS_KEY)]
    keys = {p: CHECK_KEY.format(pooling=p) for p in _POOLING}
    vectors = {p: np.asarray(values(k)) for p, k in keys.items() if reader.get_field(k)}
    return tokens, vectors


def _tensor_name(name: str, ranks: bool) -> str | None:
    """llama.cpp's name of an HF tensor (None: not used; the pooler only by a reranker)."""
    if name in _GLOBAL:
        return _GLOBAL[name]
    if name in _HEAD:
        return _HEAD[name] if ranks else None
    parts = name.split(".")
    if parts[:2] != ["encoder", "layer"]:
        return None  # the pooler, position ids
    block, rest = parts[2], ".".join(parts[3:-1])
    if rest not in _LAYER:
        return None
    return f"blk.{block}.{_LAYER[rest]}.{parts[-1]}"


WRITER_VERSION = 1  # a new version writes new files


def converted(src: Path, cache_dir: Path, name: str) -> Path:
    """The model in `src` as a GGUF in `cache_dir`, written on first use and reused after: the
    file name says which weights file (size and modification time) it came from."""
    st = (src / "model.safetensors").stat()
    dest = cache_dir / f"{name}.{st.st_size}-{st.st_mtime_ns}.v{WRITER_VERSION}.gguf"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_gguf(src, dest, name)
    return dest


def write_gguf(src: Path, dest: Path, name: str) -> None:
    """Write the model in `src` as a GGUF at `dest` (atomically: a temporary file renamed)."""
    cfg = BertConfig.read(src)
    tokens, types = _vocab(src)
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), "bert")
    writer.add_name(name)
    writer.add_context_length(cfg.max_positions)
    writer.add_embedding_length(cfg.hidden)
    writer.add_feed_forward_length(cfg.intermediate)
    writer.add_block_count(cfg.layers)
    writer.add_head_count(cfg.heads)
    writer.add_layer_norm_eps(cfg.eps)
    writer.add_causal_attention(False)
    writer.add_pooling_type(_POOLING[cfg.pooling])
    writer.add_bool(NORMALIZE_KEY, cfg.normalize)
    if cfg.labels:
        writer.add_classifier_output_labels(list(cfg.labels))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(cfg.type_vocab)
    ids = {t: i for i, t in enumerate(tokens)}
    # llama.cpp's WordPiece tokenizer starts a text with BOS ([CLS]) and ends it with [SEP]
    for kind, text in (("unk", "[UNK]"), ("sep", "[SEP]"), ("pad", "[PAD]"), ("bos", "[CLS]"),
                       ("mask", "[MASK]")):  # fmt: skip
        if text in ids:
            getattr(writer, f"add_{kind}_token_id")(ids[text])
    probe = _probe_ids(tokens)
    writer.add_array(CHECK_TOKENS_KEY, probe)
    for pooling in ("rank",) if cfg.labels else ("mean", "cls"):
        vector = reference_embedding(src, probe, pooling)  # type: ignore[arg-type]
        writer.add_array(CHECK_KEY.format(pooling=pooling), [float(v) for v in vector])
    for hf_name, tensor in _weights(src).items():
        gguf_name = _tensor_name(hf_name, bool(cfg.labels))
        if gguf_name is not None:
            writer.add_tensor(gguf_name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(dest)


# --- the reference: the same model in numpy --------------------------------------------------


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: np.ndarray = (x - mean) / np.sqrt(var + eps) * w + b
    return out


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x·Φ(x) (llama.cpp computes an approximation of it)."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    out: np.ndarray = 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    return out


def _block(x: np.ndarray, w: dict[str, np.ndarray], i: int, cfg: BertConfig) -> np.ndarray:
    """One encoder layer over one sequence x: [tokens, hidden], full attention."""

    def lin(part: str, h: np.ndarray) -> np.ndarray:
        out: np.ndarray = h @ w[f"encoder.layer.{i}.{part}.weight"].T
        out += w[f"encoder.layer.{i}.{part}.bias"]
        return out

    n, d = x.shape[0], cfg.hidden // cfg.heads
    q, k, v = (lin(f"attention.self.{p}", x).reshape(n, cfg.heads, d).transpose(1, 0, 2)
               for p in ("query", "key", "value"))  # fmt: skip
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)  # [heads, n, n]
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    att = scores / scores.sum(-1, keepdims=True)
    ctx = (att @ v).transpose(1, 0, 2).reshape(n, cfg.hidden)
    norm = f"encoder.layer.{i}.attention.output.LayerNorm"
    x = _layer_norm(x + lin("attention.output.dense", ctx), w[f"{norm}.weight"],
                    w[f"{norm}.bias"], cfg.eps)  # fmt: skip
    up = _gelu(lin("intermediate.dense", x))
    norm = f"encoder.layer.{i}.output.LayerNorm"
    return _layer_norm(x + lin("output.dense", up), w[f"{norm}.weight"], w[f"{norm}.bias"], cfg.eps)


def reference_embedding(src: Path, token_ids: list[int], pooling: Pooling | None = None) -> Any:
    """The sentence embedding of `token_ids` (special tokens included) as sentence-transformers
    computes it, in float64 numpy: pooled (the model's own pooling unless given) and, when the
    model normalizes, of norm 1. A cross-encoder's: its classification head's raw scores
    (`token_ids`: the pair, [CLS] query [SEP] text [SEP])."""
    cfg = BertConfig.read(src)
    w = {k: v.astype(np.float64) for k, v in _weights(src).items()}
    ids = np.asarray(token_ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][: len(ids)]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], cfg.eps)
    for i in range(cfg.layers):
        x = _block(x, w, i, cfg)
    how = pooling or cfg.pooling
    if how == "rank":
        head = np.tanh(w["pooler.dense.weight"] @ x[0] + w["pooler.dense.bias"])
        return w["classifier.weight"] @ head + w["classifier.bias"]
    pooled = x[0] if how == "cls" else x.mean(0)
    return pooled / np.linalg.norm(pooled) if cfg.normalize else pooled
