"""GGUF files through llama.cpp: process-wide setup, metadata, and the tokenizer."""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from pathlib import Path
from typing import Any

import llama_cpp as L

from wai.engines.llamacpp.types import ModelLoadError, Tokenizer
from wai.progress import Progress

log = logging.getLogger("wai.engines")

_LLAMA_VOCAB_TYPE_SPM = 1


def token_piece(vocab: Any, token: int, *, special: bool = False, lstrip: int = 0) -> bytes:
    """A token's bytes (special: control tokens spelled out, as a grammar sees them)."""
    buf = ctypes.create_string_buffer(64)
    n = L.llama_token_to_piece(vocab, token, buf, 64, lstrip, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = L.llama_token_to_piece(vocab, token, buf, -n, lstrip, special)
    return buf.raw[:n]


# --- process-wide llama.cpp setup -------------------------------------------------------------


# llama.cpp warnings that say what wai chose on purpose: the embedding engine asks for pooling
# "none" (it pools each request as asked) whatever the file's default
EXPECTED_WARNINGS = ("model default pooling_type is",)


def log_level(level: int, text: str) -> int:
    """Our level for one of llama.cpp's lines. ggml levels: 1 debug, 2 info, 3 warn, 4 error,
    5 continuation. Its info is chatty (every tensor at load), so it goes to our debug level
    with its debug; so do the warnings about what wai asked for on purpose."""
    if level == 3 and any(w in text for w in EXPECTED_WARNINGS):
        return logging.DEBUG
    return {3: logging.WARNING, 4: logging.ERROR}.get(level, logging.DEBUG)


@L.llama_log_callback  # type: ignore[untyped-decorator]
def _llama_log(level: int, text: bytes, _user: Any) -> None:
    line = text.decode("utf-8", "replace").rstrip()
    at = log_level(level, line)
    if log.isEnabledFor(at):
        log.log(at, "llama.cpp: %s", line)


@functools.cache
def init_llama() -> None:
    """llama.cpp's process-wide setup (its log routed to ours), once per process."""
    L.llama_log_set(_llama_log, ctypes.c_void_p(0))
    L.llama_backend_init()


def check_gguf(path: Path) -> None:
    """Refuse what is obviously not a GGUF before handing it to llama.cpp."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelLoadError(f"cannot read model file {path}: {e.strerror}") from e
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file")


def load_model(path: Path, params: Any) -> Any:
    """A llama_model*, or ModelLoadError. A full load (not vocabulary only) reports progress."""
    init_llama()
    check_gguf(path)
    callback = None
    if not params.vocab_only:
        progress = Progress(f"loading {path.name}")

        @L.llama_progress_callback  # type: ignore[untyped-decorator]
        def callback(fraction: float, _user: Any) -> bool:
            progress.update(fraction)
            return True

        params.progress_callback = callback
    model = L.llama_model_load_from_file(str(path).encode(), params)
    if callback is not None:
        params.progress_callback = L.llama_progress_callback()  # the callback dies here
        if model:
            progress.done()
    if not model:
        raise ModelLoadError(f"llama.cpp could not load {path} (truncated or corrupt?)")
    return model


def _load_vocab_only(path: Path) -> Any:
    params = L.llama_model_default_params()
    params.vocab_only = True
    return load_model(path, params)


# --- tokenizer ----------------------------------------------------------------------------------


class LlamaTokenizer(Tokenizer):
    """Tokenizer over a loaded model's vocabulary; safe to call from any thread."""

    def __init__(self, model: Any) -> None:
        self._model = model  # keeps the model (and so the vocab) alive
        self.vocab = L.llama_model_get_vocab(model)
        self.n_vocab = int(L.llama_vocab_n_tokens(self.vocab))
        self.bos_id = int(L.llama_vocab_bos(self.vocab))
        self.eos_id = int(L.llama_vocab_eos(self.vocab))
        self.is_spm = int(L.llama_vocab_type(self.vocab)) == _LLAMA_VOCAB_TYPE_SPM
        self._byte_tokens: dict[int, int] | None = None
        self._byte_tokens_lock = threading.Lock()

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:  # buffer too small: -n is the size needed
            cap = -n
            buf = (L.llama_token * cap)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        return list(buf[:n])

    def pair(self, query: str, doc: str) -> list[int]:
        """A (query, document) pair as the model's Hugging Face tokenizer joins one: BERT's
        [CLS] q [SEP] d [SEP], RoBERTa's <s> q </s></s> d </s>: each text with its special
        tokens, the second without its BOS, and a separator between where the vocabulary ends
        a text with EOS and adds one. (llama.cpp's server drops BERT's final [SEP].)"""
        v = self.vocab
        q = self.tokenize(query, add_special=True, parse_special=False)
        d = self.tokenize(doc, add_special=True, parse_special=False)
        if L.llama_vocab_get_add_bos(v) and d[:1] == [self.bos_id]:
            d = d[1:]
        if L.llama_vocab_get_add_eos(v) and L.llama_vocab_get_add_sep(v):
            q.append(int(L.llama_vocab_sep(v)))
        return q + d

    def end_of_turn_ids(self) -> frozenset[int]:
        """The vocabulary's end-of-generation tokens (EOS, `<|im_end|>`, `<|eot_id|>`, …):
        in a templated prompt, each ends a message."""
        return frozenset(i for i in range(self.n_vocab) if L.llama_vocab_is_eog(self.vocab, i))

    def piece(self, token: int, *, special: bool = False, lstrip: int = 0) -> bytes:
        return token_piece(self.vocab, token, special=special, lstrip=lstrip)

    def token_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        return bool(L.llama_vocab_is_eog(self.vocab, token))

    def byte_tokens(self) -> dict[int, int]:
        """byte value -> a token whose text is exactly that byte (a scan of the vocabulary,
        once per tokenizer: what a grammar is fed text with)."""
        with self._byte_tokens_lock:
            if self._byte_tokens is None:
                found: dict[int, int] = {}
                for token in range(self.n_vocab):
                    piece = self.piece(token, special=True)
                    if len(piece) == 1 and piece[0] not in found:
                        found[piece[0]] = token
                self._byte_tokens = found
            return self._byte_tokens


def load_tokenizer(path: Path) -> LlamaTokenizer:
    """A tokenizer from a GGUF's vocabulary alone (no weights): for tools and tests."""
    return LlamaTokenizer(_load_vocab_only(path))


# --- metadata -----------------------------------------------------------------------------------


def read_metadata(path: Path) -> dict[str, str]:
    """A GGUF's metadata, without loading its weights."""
    model = _load_vocab_only(path)
    try:
        return model_metadata(model)
    finally:
        L.llama_model_free(model)


# llama.cpp's pooling types, as a GGUF declares them (`{arch}.pooling_type`)
POOLING_CLS = 2
POOLING_RANK = 4  # a classification head's scores: a reranker


def declared_pooling(meta: dict[str, str]) -> int | None:
    """The pooling type a GGUF's metadata declares (None: none, as a generative model)."""
    value = meta.get(f"{meta.get('general.architecture', '')}.pooling_type")
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def model_metadata(model: Any) -> dict[str, str]:
    meta: dict[str, str] = {}
    for i in range(int(L.llama_model_meta_count(model))):
        meta[_read_str(L.llama_model_meta_key_by_index, model, i)] = _read_str(
            L.llama_model_meta_val_str_by_index, model, i
        )
    return meta


def _read_str(fn: Any, model: Any, i: int) -> str:
    size = 256
    while True:
        buf = ctypes.create_string_buffer(size)
        n = int(fn(model, i, buf, size))
        if n < size:
            return buf.value.decode("utf-8", "replace") if n >= 0 else ""
        size = n + 1


def kv_cache_bytes(meta: dict[str, str], n_ctx: int) -> int:
    """Size of an f16 K+V cache of n_ctx cells, from the model's hyperparameters (0 if the
    metadata does not say, e.g. per-layer head counts)."""
    arch = meta.get("general.architecture", "")

    def num(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", "")
        return int(value) if value.isdigit() else default

    heads = num("attention.head_count")
    k_len = num("attention.key_length", num("embedding_length") // heads if heads else 0)
    v_len = num("attention.value_length", k_len)
    return n_ctx * num("block_count") * num("attention.head_count_kv", heads) * (k_len + v_len) * 2
