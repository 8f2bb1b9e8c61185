"""engine/gguf.py: GGUF files through llama.cpp (refusals, metadata, KV size) and the
tokenizer the server runs on a vocabulary-only load."""

from __future__ import annotations

from pathlib import Path

import pytest

from wai.catalog import embedded_model_path
from wai.engines.llamacpp.gguf import (
    check_gguf,
    kv_cache_bytes,
    load_tokenizer,
    read_metadata,
    token_piece,
)
from wai.engines.llamacpp.types import ModelLoadError


def test_what_is_not_a_gguf_is_refused_before_llama_cpp_sees_it(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read model file"):
        check_gguf(tmp_path / "missing.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelLoadError, match="is not a GGUF file"):
        check_gguf(text)


def test_a_truncated_gguf_is_a_load_error_not_a_crash(tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(embedded_model_path().read_bytes()[:4096])
    with pytest.raises(ModelLoadError):
        read_metadata(cut)


def test_metadata_without_the_weights() -> None:
    meta = read_metadata(embedded_model_path())
    assert meta["general.architecture"] == "llama"
    assert "tokenizer.chat_template" in meta


def test_the_kv_cache_size_follows_the_hyperparameters() -> None:
    meta = {
        "general.architecture": "llama",
        "llama.block_count": "30",
        "llama.embedding_length": "576",
        "llama.attention.head_count": "9",
        "llama.attention.head_count_kv": "3",
    }
    # 30 layers x 3 KV heads x (64 + 64) dims x 2 bytes (f16) per cell
    assert kv_cache_bytes(meta, 1000) == 1000 * 30 * 3 * 128 * 2
    assert kv_cache_bytes({"general.architecture": "x"}, 1000) == 0  # not said: unknown
    real = read_metadata(embedded_model_path())
    assert kv_cache_bytes(real, 2048) == 2048 * kv_cache_bytes(real, 1)


def test_the_tokenizer_round_trips_and_knows_its_byte_tokens() -> None:
    tok = load_tokenizer(embedded_model_path())
    ids = tok.tokenize("Hello, world", add_special=False, parse_special=False)
    assert b"".join(tok.piece(t) for t in ids) == b"Hello, world"
    assert tok.token_text(tok.eos_id) and tok.is_eog(tok.eos_id)
    byte_tokens = tok.byte_tokens()
    assert byte_tokens is tok.byte_tokens()  # scanned once per tokenizer
    for byte in b'{"a": 1}\n':
        assert token_piece(tok.vocab, byte_tokens[byte], special=True) == bytes([byte])


def test_llama_cpp_warnings_about_what_wai_chose_are_debug_others_stay_warnings() -> None:
    import logging

    from wai.engines.llamacpp.gguf import log_level

    chosen = "llama_init_from_model: model default pooling_type is [1], but [0] was specified"
    assert log_level(3, chosen) == logging.DEBUG
    assert log_level(3, "llama_model_load: something unexpected") == logging.WARNING
    assert log_level(4, chosen) == logging.ERROR  # an error is never quietened
    assert log_level(2, "load_tensors: ...") == logging.DEBUG
