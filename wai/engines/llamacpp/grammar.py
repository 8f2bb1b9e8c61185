"""A grammar in the engine: llama.cpp's grammar sampler, asked about one token at a time, and
fed text byte by byte. The grammars come compiled (GBNF) from the local backend
(backends/local/json_schema.py).

llama.cpp's grammar sampler takes tokens, and refusing one is only safe through `apply`:
`accept` of a token the grammar cannot take throws a C++ exception through the C API, which
aborts the process (this is how llama.cpp's own lazy grammars crash on a token that straddles
their trigger). So text is fed one byte token at a time, each checked by `apply` first.
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp as L
import numpy as np

from wai.engines.llamacpp.gguf import LlamaTokenizer

# llama_token_data as numpy sees it: {int32 id; float logit; float p}, 12 bytes
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
assert TOKEN_DATA.itemsize == ctypes.sizeof(L.llama_token_data)


def grammar_sampler(vocab: Any, gbnf: str) -> Any:
    """llama.cpp's grammar sampler for `gbnf` (the caller frees it), or None when llama.cpp's
    parser refuses the grammar."""
    sampler = L.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    return sampler or None


class TokenCheck:
    """Asks a grammar sampler whether it would let one token through now, without accepting
    it: a one-candidate array of its own, so that each sampler chain (each thread) has one."""

    def __init__(self) -> None:
        self._one = np.empty(1, dtype=TOKEN_DATA)
        data = self._one.ctypes.data_as(ctypes.POINTER(L.llama_token_data))
        self._array = L.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)

    def allows(self, sampler: Any, token: int, logit: float = 0.0) -> bool:
        one, arr = self._one, self._array
        one["id"], one["logit"], one["p"] = token, logit, 0.0
        arr.size, arr.selected, arr.sorted = 1, -1, False
        L.llama_sampler_apply(sampler, ctypes.byref(arr))
        return bool(np.isfinite(one["logit"][0]))


def feed(sampler: Any, tokenizer: LlamaTokenizer, text: bytes, check: TokenCheck) -> bool:
    """Accept `text` into the grammar sampler byte by byte; False (and the sampler is then
    unusable) as soon as the grammar refuses a byte."""
    tokens = tokenizer.byte_tokens()
    for byte in text:
        token = tokens.get(byte)
        if token is None or not check.allows(sampler, token):
            return False
        L.llama_sampler_accept(sampler, token)
    return True


def accepts(tokenizer: LlamaTokenizer, gbnf: str, text: str) -> bool:
    """Whether `text` is a whole sentence of the grammar (for tests and checks)."""
    sampler = grammar_sampler(tokenizer.vocab, gbnf)
    if sampler is None:
        raise ValueError("llama.cpp refuses the grammar")
    check = TokenCheck()
    try:
        return feed(sampler, tokenizer, text.encode(), check) and check.allows(
            sampler, tokenizer.eos_id
        )
    finally:
        L.llama_sampler_free(sampler)
