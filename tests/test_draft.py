"""engine/draft.py's vocabulary rule, on real vocabularies (no weights loaded)."""

from __future__ import annotations

from pathlib import Path

from wai.catalog import embedded_model_path
from wai.engines.llamacpp.draft import same_vocabulary
from wai.engines.llamacpp.gguf import load_tokenizer

LLAMA_VOCAB = Path(__file__).parent / "data" / "ggml-vocab-llama-spm.gguf"


def test_a_model_can_draft_for_itself_and_not_for_another_vocabulary() -> None:
    smol = load_tokenizer(embedded_model_path())
    llama = load_tokenizer(LLAMA_VOCAB)
    assert same_vocabulary(smol, smol) is None
    why = same_vocabulary(smol, llama)
    assert why is not None and "32000 tokens against 49152" in why
