"""Hugging Face text-to-text models written for CTranslate2, with numpy and no torch: M2M100
(translation), BART (summarization) and DistilBERT with its sentiment head (classification).

A model arrives as `wai pull` (or a user) leaves it: a folder with `config.json`, the weights as
`model.safetensors` (or `pytorch_model.bin`, read without torch: torch_file.py) and the
tokenizer's files. `converted()` writes CTranslate2's directory
(`model.bin`, `config.json`, the vocabulary) through CTranslate2's own model specs, which import
without torch (its converter for these models needs torch and transformers), and beside it
`wai.json`: what the engine needs to run the model (its task, tokenizer, languages, labels,
generation defaults). DistilBERT's classification head is not in CTranslate2's encoder spec:
it is kept as `head.npz` and applied in numpy to the [CLS] vector.

The tensor names follow transformers' modeling files; the mapping is CTranslate2's own
(`ct2-transformers-converter`): q, k and v fused for self-attention, k and v for cross-attention,
M2M100's sinusoidal positions (not in the checkpoint) computed as fairseq does, BART's learned
ones without their 2-row offset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
from safetensors.numpy import load_file

from wai.weights import torch_file

Task = Literal["translation", "summarization", "text-classification"]
FORMAT = 1  # bump when the written layout changes: older directories are rewritten
META = "wai.json"

# M2M100's language tokens (`__en__` …), in the order transformers gives them ids after the
# vocabulary (M2M100Tokenizer's FAIRSEQ_LANGUAGE_CODES["m2m100"])
M2M100_LANGUAGES = [
    "af",
    "am",
    "ar",
    "ast",
    "az",
    "ba",
    "be",
    "bg",
    "bn",
    "br",
    "bs",
    "ca",
    "ceb",
    "cs",
    "cy",
    "da",
    "de",
    "el",
    "en",
    "es",
    "et",
    "fa",
    "ff",
    "fi",
    "fr",
    "fy",
    "ga",
    "gd",
    "gl",
    "gu",
    "ha",
    "he",
    "hi",
    "hr",
    "ht",
    "hu",
    "hy",
    "id",
    "ig",
    "ilo",
    "is",
    "it",
    "ja",
    "jv",
    "ka",
    "kk",
    "km",
    "kn",
    "ko",
    "lb",
    "lg",
    "ln",
    "lo",
    "lt",
    "lv",
    "mg",
    "mk",
    "ml",
    "mn",
    "mr",
    "ms",
    "my",
    "ne",
    "nl",
    "no",
    "ns",
    "oc",
    "or",
    "pa",
    "pl",
    "ps",
    "pt",
    "ro",
    "ru",
    "sd",
    "si",
    "sk",
    "sl",
    "so",
    "sq",
    "sr",
    "ss",
    "su",
    "sv",
    "sw",
    "ta",
    "th",
    "tl",
    "tn",
    "tr",
    "uk",
    "ur",
    "uz",
    "vi",
    "wo",
    "xh",
    "yi",
    "yo",
    "zh",
    "zu",
]
_ARCHITECTURES: dict[str, Task] = {
    "M2M100ForConditionalGeneration": "translation",
    "BartForConditionalGeneration": "summarization",
    "DistilBertForSequenceClassification": "text-classification",
}
# the files a folder needs, per task, besides config.json and the weights
_TOKENIZER_FILES: dict[Task, tuple[str, ...]] = {
    "translation": ("sentencepiece.bpe.model", "vocab.json"),
    "summarization": ("tokenizer.json",),
    "text-classification": ("vocab.txt",),
}


class ConversionError(ValueError):
    """A folder that is not a model this converter writes, or one missing a file."""


def read_config(folder: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ConversionError(f"{folder.name}: no readable config.json ({e})") from e
    return config


def task_of(folder: Path) -> Task | None:
    """The task of a Hugging Face folder this converter takes, by its architecture (None: not
    one of them)."""
    if not (folder / "config.json").is_file():
        return None
    try:
        archs = read_config(folder).get("architectures") or []
    except ConversionError:
        return None
    return next((_ARCHITECTURES[a] for a in archs if a in _ARCHITECTURES), None)


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and task_of(path) is not None


def converted(folder: Path, cache_dir: Path, name: str) -> Path:
    """The CTranslate2 directory for a Hugging Face folder, written under `cache_dir` once
    (rewritten when the source's files change): `<cache_dir>/<name>.ct2`."""
    out = cache_dir / f"{name}.ct2"
    stamp = _fingerprint(folder)
    try:
        meta = json.loads((out / META).read_text())
        if meta.get("source") == stamp and meta.get("format") == FORMAT:
            return out
    except (OSError, ValueError):
        pass
    tmp = cache_dir / f".{name}.ct2.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(folder, tmp, stamp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _fingerprint(folder: Path) -> str:
    """Which source a directory was written from: its files' names, sizes and times."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:32]


def write(folder: Path, out: Path, stamp: str = "") -> None:
    """Write the CTranslate2 directory of a Hugging Face folder to `out` (created)."""
    task = task_of(folder)
    if task is None:
        raise ConversionError(
            f"{folder.name}: not an M2M100, BART or DistilBERT sequence classifier folder"
        )
    for f in _TOKENIZER_FILES[task]:
        if not (folder / f).is_file():
            raise ConversionError(f"{folder.name}: {f} is missing")
    config = read_config(folder)
    weights = _weights(folder)
    out.mkdir(parents=True)
    meta: dict[str, Any] = {"format": FORMAT, "source": stamp, "task": task}
    if task == "text-classification":
        meta |= _write_classifier(config, weights, folder, out)
    else:
        meta |= _write_seq2seq(task, config, weights, folder, out)
    for f in _TOKENIZER_FILES[task]:
        shutil.copyfile(folder / f, out / f)
    (out / META).write_text(json.dumps(meta, indent=1))


def _weights(folder: Path) -> dict[str, np.ndarray]:
    """`model.safetensors`, else `pytorch_model.bin` read without torch (torch_file.py)."""
    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        try:
            return torch_file.load(folder / "pytorch_model.bin")
        except torch_file.TorchFileError as e:
            raise ConversionError(str(e)) from e
    raise ConversionError(f"{folder.name}: model.safetensors (or pytorch_model.bin) is missing")


# --- encoder-decoder (M2M100, BART) ----------------------------------------------------------


def _write_seq2seq(
    task: Task, config: dict[str, Any], w: dict[str, np.ndarray], folder: Path, out: Path
) -> dict[str, Any]:
    from ctranslate2.specs import common_spec, transformer_spec

    m2m = task == "translation"
    activation = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}
    act = config.get("activation_function", "relu")
    if act not in activation:
        raise ConversionError(f"{folder.name}: activation {act!r} is not supported")
    spec = transformer_spec.TransformerSpec.from_config(
        (config["encoder_layers"], config["decoder_layers"]),
        config["encoder_attention_heads"],
        pre_norm=m2m or bool(config.get("normalize_before", False)),
        activation=activation[act],
        layernorm_embedding=not m2m and bool(config.get("normalize_embedding", True)),
    )
    embed = _first(w, "model.shared.weight", "model.encoder.embed_tokens.weight")
    scale = math.sqrt(config["d_model"]) if config.get("scale_embedding") else 1.0
    for side, part in (("encoder", spec.encoder), ("decoder", spec.decoder)):
        prefix = f"model.{side}."
        part.scale_embeddings = scale
        emb = part.embeddings[0] if isinstance(part.embeddings, list) else part.embeddings
        emb.weight = w.get(prefix + "embed_tokens.weight", embed)
        if m2m:
            part.position_encodings.encodings = sinusoidal(
                config["max_position_embeddings"], config["d_model"]
            )
        else:
            part.position_encodings.encodings = w[prefix + "embed_positions.weight"][2:]
        if prefix + "layer_norm.weight" in w:
            _norm(part.layer_norm, w, prefix + "layer_norm")
        if prefix + "layernorm_embedding.weight" in w:
            _norm(part.layernorm_embedding, w, prefix + "layernorm_embedding")
        for i, layer in enumerate(part.layer):
            _layer(layer, w, f"{prefix}layers.{i}.", cross=side == "decoder")
    spec.decoder.projection.weight = w.get("lm_head.weight", embed)
    bias = w.get("final_logits_bias")
    if bias is not None and np.any(bias):
        spec.decoder.projection.bias = bias.reshape(-1)
    tokens = _m2m100_vocabulary(folder, config) if m2m else _bart_vocabulary(folder, config)
    spec.register_source_vocabulary(tokens)
    spec.register_target_vocabulary(tokens)
    spec.config.unk_token = "<unk>"
    spec.config.bos_token = "<s>"
    spec.config.eos_token = "</s>"
    spec.config.decoder_start_token = tokens[config.get("decoder_start_token_id", 2)]
    _save(spec, out)
    meta: dict[str, Any] = {
        "max_positions": config["max_position_embeddings"],
        "generation": _generation(folder, config, task),
    }
    if m2m:
        meta["languages"] = [lang for lang in M2M100_LANGUAGES if f"__{lang}__" in tokens]
    return meta


def _save(spec: Any, out: Path) -> None:
    """As CTranslate2's converter saves: every variable checked and typed, float32 kept (the
    engine quantizes at load, as `compute_type` asks)."""
    spec.validate()
    spec.optimize(quantization=None)
    spec.save(str(out))


def _layer(spec: Any, w: dict[str, np.ndarray], p: str, cross: bool) -> None:
    _linear(spec.self_attention.linear[0], w, [p + f"self_attn.{x}_proj" for x in "qkv"])
    _linear(spec.self_attention.linear[1], w, [p + "self_attn.out_proj"])
    _norm(spec.self_attention.layer_norm, w, p + "self_attn_layer_norm")
    if cross:
        _linear(spec.attention.linear[0], w, [p + "encoder_attn.q_proj"])
        _linear(spec.attention.linear[1], w, [p + "encoder_attn.k_proj", p + "encoder_attn.v_proj"])
        _linear(spec.attention.linear[2], w, [p + "encoder_attn.out_proj"])
        _norm(spec.attention.layer_norm, w, p + "encoder_attn_layer_norm")
    _linear(spec.ffn.linear_0, w, [p + "fc1"])
    _linear(spec.ffn.linear_1, w, [p + "fc2"])
    _norm(spec.ffn.layer_norm, w, p + "final_layer_norm")


def _linear(spec: Any, w: dict[str, np.ndarray], names: list[str]) -> None:
    """A linear layer, or several fused along their outputs (PyTorch's [out, in] layout, which
    is CTranslate2's)."""
    spec.weight = np.concatenate([w[n + ".weight"] for n in names])
    if all(n + ".bias" in w for n in names):
        spec.bias = np.concatenate([w[n + ".bias"] for n in names])


def _norm(spec: Any, w: dict[str, np.ndarray], name: str) -> None:
    spec.gamma = w[name + ".weight"]
    spec.beta = w[name + ".bias"]


def _first(w: dict[str, np.ndarray], *names: str) -> np.ndarray:
    for n in names:
        if n in w:
            return w[n]
    raise ConversionError(f"none of {', '.join(names)} is in the weights")


def sinusoidal(positions: int, dim: int, offset: int = 2) -> np.ndarray:
    """fairseq's sinusoidal position table as M2M100 computes it (positions start after the
    padding index, hence the offset rows left out)."""
    half = dim // 2
    freq = np.exp(np.arange(half, dtype=np.float32) * -(math.log(10000.0) / (half - 1)))
    angles = np.arange(positions + offset, dtype=np.float32)[:, None] * freq[None, :]
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if dim % 2:
        table = np.concatenate([table, np.zeros((table.shape[0], 1), np.float32)], axis=1)
    return np.ascontiguousarray(table[offset:], dtype=np.float32)


def _by_id(vocab: dict[str, int], what: str) -> list[str]:
    tokens: list[str | None] = [None] * (max(vocab.values()) + 1)
    for token, i in vocab.items():
        tokens[i] = token
    if any(t is None for t in tokens):
        raise ConversionError(f"{what}: token ids are not contiguous")
    return [t for t in tokens if t is not None]


def _m2m100_vocabulary(folder: Path, config: dict[str, Any]) -> list[str]:
    """vocab.json's tokens by id, the language tokens after them, then fairseq's made-up words
    up to the model's vocabulary size (as M2M100Tokenizer numbers them)."""
    tokens = _by_id(json.loads((folder / "vocab.json").read_text()), "vocab.json")
    tokens += [f"__{lang}__" for lang in M2M100_LANGUAGES if f"__{lang}__" not in tokens]
    size = config["vocab_size"]
    tokens += [f"madeupword{i}" for i in range(size - len(tokens))]
    return tokens[:size]


def _bart_vocabulary(folder: Path, config: dict[str, Any]) -> list[str]:
    data = json.loads((folder / "tokenizer.json").read_text())
    vocab = dict(data["model"]["vocab"])
    for added in data.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    return _by_id(vocab, "tokenizer.json")[: config["vocab_size"]]


def _generation(folder: Path, config: dict[str, Any], task: Task) -> dict[str, Any]:
    """The model's own decoding defaults (generation_config.json, else config.json; BART-cnn's
    summarization parameters), in CTranslate2's terms."""
    src = dict(config)
    src.update(config.get("task_specific_params", {}).get("summarization_cnn", {}))
    with contextlib.suppress(OSError, ValueError):
        src.update(json.loads((folder / "generation_config.json").read_text()))
    return {
        "beam_size": int(src.get("num_beams") or (4 if task == "summarization" else 5)),
        "length_penalty": float(src.get("length_penalty", 1.0)),
        "min_length": int(src.get("min_length") or 0),
        "max_length": int(src.get("max_length") or 200),
        "no_repeat_ngram_size": int(src.get("no_repeat_ngram_size") or 0),
        "forced_bos": src.get("forced_bos_token_id") == config.get("bos_token_id", 0),
    }


# --- encoder with a classification head (DistilBERT) ----------------------------------------


def _write_classifier(
    config: dict[str, Any], w: dict[str, np.ndarray], folder: Path, out: Path
) -> dict[str, Any]:
    from ctranslate2.specs import common_spec, transformer_spec

    if config.get("activation", "gelu") != "gelu":
        raise ConversionError(f"{folder.name}: activation {config.get('activation')!r}")
    encoder = transformer_spec.TransformerEncoderSpec(
        config["n_layers"],
        config["n_heads"],
        pre_norm=False,
        activation=common_spec.Activation.GELU,
        layernorm_embedding=True,
    )
    spec = transformer_spec.TransformerEncoderModelSpec(encoder)
    p = "distilbert."
    spec.encoder.scale_embeddings = False
    spec.encoder.embeddings[0].weight = w[p + "embeddings.word_embeddings.weight"]
    spec.encoder.position_encodings.encodings = w[p + "embeddings.position_embeddings.weight"]
    _norm(spec.encoder.layernorm_embedding, w, p + "embeddings.LayerNorm")
    for i, layer in enumerate(spec.encoder.layer):
        q = f"{p}transformer.layer.{i}."
        _linear(layer.self_attention.linear[0], w, [q + f"attention.{x}_lin" for x in "qkv"])
        _linear(layer.self_attention.linear[1], w, [q + "attention.out_lin"])
        _norm(layer.self_attention.layer_norm, w, q + "sa_layer_norm")
        _linear(layer.ffn.linear_0, w, [q + "ffn.lin1"])
        _linear(layer.ffn.linear_1, w, [q + "ffn.lin2"])
        _norm(layer.ffn.layer_norm, w, q + "output_layer_norm")
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()
    spec.register_vocabulary(vocab)
    spec.config.unk_token = "[UNK]"
    spec.config.layer_norm_epsilon = 1e-12
    _save(spec, out)
    head = ("pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias")
    np.savez(out / "head.npz", allow_pickle=False, **{k: w[k] for k in head})
    id2label = config.get("id2label") or {}
    labels = [str(id2label.get(str(i), f"LABEL_{i}")) for i in range(len(w["classifier.bias"]))]
    return {
        "labels": labels,
        "max_positions": config.get("max_position_embeddings", 512),
        "lowercase": not config.get("_name_or_path", "").endswith("-cased"),
    }
