"""From sampled tokens to the text a client sees, and when a sequence ends.

Per sequence: bytes -> text without splitting a UTF-8 character (text.IncrementalDetokenizer),
stop strings applied and held back across tokens (text.StopMatcher), and the end rules:
end-of-generation token (unless ignore_eos), a stop string, or max_tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from wai.engines.llamacpp.types import FinishReason
from wai.text import IncrementalDetokenizer, StopMatcher


class PieceSource(Protocol):
    is_spm: bool

    def piece(self, token: int, *, special: bool = False, lstrip: int = 0) -> bytes: ...

    def is_eog(self, token: int) -> bool: ...


class Output:
    def __init__(
        self, tokenizer: PieceSource, *, stop: Sequence[str], max_tokens: int, ignore_eos: bool
    ) -> None:
        self._tok = tokenizer
        self._decoder = IncrementalDetokenizer()
        self._stopper = StopMatcher(list(stop))
        self._max_tokens = max_tokens
        self._ignore_eos = ignore_eos
        self.n_tokens = 0

    def push(self, token: int) -> tuple[str | None, FinishReason | None]:
        """The text this token releases (None for an end-of-generation token, which is not
        text) and the reason the sequence ends here, if it does."""
        self.n_tokens += 1
        if self._tok.is_eog(token) and not self._ignore_eos:
            return None, "stop"
        # SentencePiece vocabularies mark a leading space on the first word; drop it once.
        lstrip = 1 if self._tok.is_spm and self.n_tokens == 1 else 0
        text = self._stopper.push(self._decoder.push(self._tok.piece(token, lstrip=lstrip)))
        if self._stopper.stopped:
            return text, "stop"
        if self.n_tokens >= self._max_tokens:
            return text, "length"
        return text, None

    def tail(self) -> str:
        """Text held back until the end (a possible stop string's start that was not one)."""
        return self._stopper.push(self._decoder.flush()) + self._stopper.flush()
