"""Tiny random models of the real architectures, written as Hugging Face lays them out (what
`wai pull` downloads): M2M100 (translation), BART (summarization), DistilBERT with its SST-2
head (classification); and their forward passes in numpy, as transformers computes them, the
reference the converter's output is checked against.

The tokenizers are trained here on a few sentences (SentencePiece BPE for M2M100, byte-level
BPE for BART, WordPiece for DistilBERT), so every file is the real format."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from wai.weights.seq2seq import M2M100_LANGUAGES, sinusoidal

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Machine translation turns a sentence in one language into another.",
    "Le renard brun saute par-dessus le chien paresseux.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "A summary keeps the subject of the article and drops the details.",
    "I loved this film, it was wonderful. I hated the ending, it was awful.",
    "El zorro marrón salta sobre el perro perezoso.",
] * 4

D, HEADS, FFN, LAYERS = 16, 2, 32, 2


@dataclass(frozen=True)
class Shape:
    """A model's size: the tests' tiny one, or one of a real model's for the benchmark (its
    cost is the real one's, whatever its random weights say)."""

    d: int = D
    heads: int = HEADS
    ffn: int = FFN
    layers: int = LAYERS
    vocab: int = 0  # at least the tokenizer's; more: filler tokens up to it
    positions: int = 64


TINY = Shape()


def _rand(rng: np.random.Generator, *shape: int, scale: float = 0.2) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _attn(
    rng: np.random.Generator,
    prefix: str,
    w: dict[str, np.ndarray],
    names: str,
    scale: float = 0.2,
    d: int = D,
) -> None:
    for n in names.split():
        w[f"{prefix}.{n}.weight"] = _rand(rng, d, d, scale=scale)
        w[f"{prefix}.{n}.bias"] = _rand(rng, d)


def _norm(rng: np.random.Generator, name: str, w: dict[str, np.ndarray], dim: int = D) -> None:
    w[f"{name}.weight"] = 1.0 + _rand(rng, dim, scale=0.05)
    w[f"{name}.bias"] = _rand(rng, dim, scale=0.05)


def _seq2seq_weights(
    rng: np.random.Generator, vocab: int, bart: bool, shape: Shape = TINY
) -> dict[str, np.ndarray]:
    """Random weights; large enough (0.6) that greedy and beam outputs vary with the input
    instead of settling on one token."""
    k = 0.6 * math.sqrt(D / shape.d)
    d, ffn = shape.d, shape.ffn
    w: dict[str, np.ndarray] = {"model.shared.weight": _rand(rng, vocab, d, scale=k)}
    for side in ("encoder", "decoder"):
        p = f"model.{side}"
        if bart:
            w[f"{p}.embed_positions.weight"] = _rand(rng, shape.positions + 2, d, scale=k)
            _norm(rng, f"{p}.layernorm_embedding", w, d)
        else:
            _norm(rng, f"{p}.layer_norm", w, d)
        for i in range(shape.layers):
            q = f"{p}.layers.{i}"
            _attn(rng, f"{q}.self_attn", w, "q_proj k_proj v_proj out_proj", k, d)
            _norm(rng, f"{q}.self_attn_layer_norm", w, d)
            if side == "decoder":
                _attn(rng, f"{q}.encoder_attn", w, "q_proj k_proj v_proj out_proj", k, d)
                _norm(rng, f"{q}.encoder_attn_layer_norm", w, d)
            w[f"{q}.fc1.weight"], w[f"{q}.fc1.bias"] = _rand(rng, ffn, d, scale=k), _rand(rng, ffn)
            w[f"{q}.fc2.weight"], w[f"{q}.fc2.bias"] = _rand(rng, d, ffn, scale=k), _rand(rng, d)
            _norm(rng, f"{q}.final_layer_norm", w, d)
    if bart:
        w["final_logits_bias"] = _rand(rng, 1, vocab)
    return w


def write_m2m100(folder: Path, seed: int = 0, shape: Shape = TINY) -> Path:
    """An M2M100 (2+2 layers unless `shape` says) with a SentencePiece vocabulary trained on
    CORPUS."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_prefix=str(folder / "sentencepiece.bpe"),
        vocab_size=120, model_type="bpe", character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    sp = spm.SentencePieceProcessor(model_file=str(folder / "sentencepiece.bpe.model"))
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    tokens = specials + [p for p in pieces if p not in specials and p not in ("<unk>",)]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    vocab = max(len(tokens) + len(M2M100_LANGUAGES) + 4, shape.vocab)
    config = {
        "architectures": ["M2M100ForConditionalGeneration"], "model_type": "m2m_100",
        "d_model": shape.d, "encoder_layers": shape.layers, "decoder_layers": shape.layers,
        "encoder_attention_heads": shape.heads, "decoder_attention_heads": shape.heads,
        "encoder_ffn_dim": shape.ffn, "decoder_ffn_dim": shape.ffn,
        "activation_function": "relu", "vocab_size": vocab,
        "max_position_embeddings": shape.positions, "scale_embedding": True,
        "decoder_start_token_id": 2, "eos_token_id": 2, "pad_token_id": 1, "bos_token_id": 0,
        "num_beams": 5, "max_length": 40, "no_repeat_ngram_size": 2,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    w = _seq2seq_weights(np.random.default_rng(seed), vocab, False, shape)
    w["model.shared.weight"][len(tokens) :] *= 0.05  # language tokens: rarely an output
    save_file(w, folder / "model.safetensors")
    return folder


def write_bart(folder: Path, seed: int = 1) -> Path:
    """A 2+2-layer BART (post-norm, learned positions, GELU) with a byte-level BPE."""
    from tokenizers import ByteLevelBPETokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(CORPUS, vocab_size=300, special_tokens=specials, show_progress=False)
    tok.save(str(folder / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    config = {
        "architectures": ["BartForConditionalGeneration"], "model_type": "bart",
        "d_model": D, "encoder_layers": LAYERS, "decoder_layers": LAYERS,
        "encoder_attention_heads": HEADS, "decoder_attention_heads": HEADS,
        "encoder_ffn_dim": FFN, "decoder_ffn_dim": FFN, "activation_function": "gelu",
        "vocab_size": vocab, "max_position_embeddings": 64, "scale_embedding": False,
        "normalize_before": False, "decoder_start_token_id": 2, "eos_token_id": 2,
        "bos_token_id": 0, "forced_bos_token_id": 0, "pad_token_id": 1,
        "num_beams": 4, "length_penalty": 2.0, "min_length": 3, "max_length": 30,
        "no_repeat_ngram_size": 3,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    save_file(
        _seq2seq_weights(np.random.default_rng(seed), vocab, True), folder / "model.safetensors"
    )
    return folder


def write_distilbert(folder: Path, seed: int = 2) -> Path:
    """A 2-layer DistilBERT with an SST-2-shaped head (NEGATIVE, POSITIVE)."""
    from tokenizers import BertWordPieceTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(CORPUS, vocab_size=200, show_progress=False)
    tok.save_model(str(folder))
    vocab = tok.get_vocab_size()
    rng = np.random.default_rng(seed)
    p = "distilbert"
    w = {
        f"{p}.embeddings.word_embeddings.weight": _rand(rng, vocab, D, scale=0.5),
        f"{p}.embeddings.position_embeddings.weight": _rand(rng, 64, D),
    }
    _norm(rng, f"{p}.embeddings.LayerNorm", w)
    for i in range(LAYERS):
        q = f"{p}.transformer.layer.{i}"
        _attn(rng, f"{q}.attention", w, "q_lin k_lin v_lin out_lin")
        _norm(rng, f"{q}.sa_layer_norm", w)
        w[f"{q}.ffn.lin1.weight"], w[f"{q}.ffn.lin1.bias"] = _rand(rng, FFN, D), _rand(rng, FFN)
        w[f"{q}.ffn.lin2.weight"], w[f"{q}.ffn.lin2.bias"] = _rand(rng, D, FFN), _rand(rng, D)
        _norm(rng, f"{q}.output_layer_norm", w)
    w["pre_classifier.weight"], w["pre_classifier.bias"] = _rand(rng, D, D), _rand(rng, D)
    w["classifier.weight"], w["classifier.bias"] = _rand(rng, 2, D, scale=1.0), _rand(rng, 2)
    config = {
        "architectures": ["DistilBertForSequenceClassification"], "model_type": "distilbert",
        "dim": D, "n_layers": LAYERS, "n_heads": HEADS, "hidden_dim": FFN,
        "activation": "gelu", "vocab_size": vocab, "max_position_embeddings": 64,
        "id2label": {"0": "NEGATIVE", "1": "POSITIVE"},
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    save_file(w, folder / "model.safetensors")
    return folder


# --- the reference forward passes (transformers' semantics, in numpy) -----------------------


def _layer_norm(
    x: np.ndarray, w: dict[str, np.ndarray], name: str, eps: float = 1e-5
) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]


def _lin(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ w[name + ".weight"].T + w[name + ".bias"]


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


_erf = np.vectorize(math.erf)


_QKVO = ("q_proj", "k_proj", "v_proj", "out_proj")


def _mha(
    q_in: np.ndarray,
    kv_in: np.ndarray,
    w: dict[str, np.ndarray],
    p: str,
    causal: bool,
    names: tuple[str, ...] = _QKVO,
) -> np.ndarray:
    q = _lin(q_in, w, f"{p}.{names[0]}")
    k = _lin(kv_in, w, f"{p}.{names[1]}")
    v = _lin(kv_in, w, f"{p}.{names[2]}")
    hd = D // HEADS
    out = np.zeros_like(q)
    for h in range(HEADS):
        s = slice(h * hd, (h + 1) * hd)
        scores = (q[:, s] / math.sqrt(hd)) @ k[:, s].T
        if causal:
            scores = scores + np.triu(np.full(scores.shape, -np.inf, np.float32), 1)
        e = np.exp(scores - scores.max(-1, keepdims=True))
        out[:, s] = (e / e.sum(-1, keepdims=True)) @ v[:, s]
    return _lin(out, w, f"{p}.{names[3]}")


class Seq2SeqReference:
    """M2M100 (pre-norm, sinusoidal positions, ReLU) or BART (post-norm, learned positions,
    GELU), greedy decoding."""

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file

        self.w = {
            k: v.astype(np.float64) for k, v in load_file(folder / "model.safetensors").items()
        }
        self.config = json.loads((folder / "config.json").read_text())
        self.bart = self.config["model_type"] == "bart"
        c = self.config
        self.scale = math.sqrt(c["d_model"]) if c.get("scale_embedding") else 1.0
        self.sin = sinusoidal(c["max_position_embeddings"], c["d_model"]).astype(np.float64)

    def _embed(self, ids: list[int], side: str) -> np.ndarray:
        x = self.w["model.shared.weight"][ids] * self.scale
        if self.bart:
            x = x + self.w[f"model.{side}.embed_positions.weight"][np.arange(len(ids)) + 2]
            return _layer_norm(x, self.w, f"model.{side}.layernorm_embedding")
        return x + self.sin[: len(ids)]

    def _ffn(self, x: np.ndarray, p: str) -> np.ndarray:
        h = _lin(x, self.w, f"{p}.fc1")
        h = _gelu(h) if self.bart else np.maximum(h, 0.0)
        return _lin(h, self.w, f"{p}.fc2")

    def encode(self, ids: list[int]) -> np.ndarray:
        x, w = self._embed(ids, "encoder"), self.w
        for i in range(self.config["encoder_layers"]):
            p = f"model.encoder.layers.{i}"
            if self.bart:
                x = _layer_norm(
                    x + _mha(x, x, w, f"{p}.self_attn", False), w, f"{p}.self_attn_layer_norm"
                )
                x = _layer_norm(x + self._ffn(x, p), w, f"{p}.final_layer_norm")
            else:
                h = _layer_norm(x, w, f"{p}.self_attn_layer_norm")
                x = x + _mha(h, h, w, f"{p}.self_attn", False)
                x = x + self._ffn(_layer_norm(x, w, f"{p}.final_layer_norm"), p)
        return x if self.bart else _layer_norm(x, w, "model.encoder.layer_norm")

    def logits(self, memory: np.ndarray, ids: list[int]) -> np.ndarray:
        x, w = self._embed(ids, "decoder"), self.w
        for i in range(self.config["decoder_layers"]):
            p = f"model.decoder.layers.{i}"
            if self.bart:
                x = _layer_norm(
                    x + _mha(x, x, w, f"{p}.self_attn", True), w, f"{p}.self_attn_layer_norm"
                )
                x = _layer_norm(
                    x + _mha(x, memory, w, f"{p}.encoder_attn", False),
                    w,
                    f"{p}.encoder_attn_layer_norm",
                )
                x = _layer_norm(x + self._ffn(x, p), w, f"{p}.final_layer_norm")
            else:
                h = _layer_norm(x, w, f"{p}.self_attn_layer_norm")
                x = x + _mha(h, h, w, f"{p}.self_attn", True)
                h = _layer_norm(x, w, f"{p}.encoder_attn_layer_norm")
                x = x + _mha(h, memory, w, f"{p}.encoder_attn", False)
                x = x + self._ffn(_layer_norm(x, w, f"{p}.final_layer_norm"), p)
        if not self.bart:
            x = _layer_norm(x, w, "model.decoder.layer_norm")
        out = x[-1] @ w["model.shared.weight"].T
        return out + w["final_logits_bias"][0] if "final_logits_bias" in w else out

    def greedy(self, source: list[int], prefix: list[int], max_new: int) -> list[int]:
        """Tokens after the decoder's start token: the prefix, then argmax until </s>."""
        memory = self.encode(source)
        ids = [self.config["decoder_start_token_id"], *prefix]
        for _ in range(max_new):
            nxt = int(np.argmax(self.logits(memory, ids)))
            if nxt == self.config["eos_token_id"]:
                break
            ids.append(nxt)
        return ids[1:]


def distilbert_scores(folder: Path, ids: list[int]) -> np.ndarray:
    """DistilBertForSequenceClassification's probabilities for one sequence."""
    from safetensors.numpy import load_file

    w = {k: v.astype(np.float64) for k, v in load_file(folder / "model.safetensors").items()}
    p = "distilbert"
    x = w[f"{p}.embeddings.word_embeddings.weight"][ids]
    x = x + w[f"{p}.embeddings.position_embeddings.weight"][: len(ids)]
    x = _layer_norm(x, w, f"{p}.embeddings.LayerNorm", 1e-12)
    names = ("q_lin", "k_lin", "v_lin", "out_lin")
    for i in range(LAYERS):
        q = f"{p}.transformer.layer.{i}"
        x = _layer_norm(
            x + _mha(x, x, w, f"{q}.attention", False, names), w, f"{q}.sa_layer_norm", 1e-12
        )
        h = _lin(_gelu(_lin(x, w, f"{q}.ffn.lin1")), w, f"{q}.ffn.lin2")
        x = _layer_norm(x + h, w, f"{q}.output_layer_norm", 1e-12)
    h = np.maximum(_lin(x[0], w, "pre_classifier"), 0.0)
    logits = _lin(h, w, "classifier")
    e = np.exp(logits - logits.max())
    return e / e.sum()
