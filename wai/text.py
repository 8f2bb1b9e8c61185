"""Incremental detokenization that never splits a UTF-8 character.

Byte-level vocabularies cut multi-byte characters (accents, emoji) across tokens. The decoder
holds the trailing bytes of an unfinished character until the token that completes it arrives,
so every streamed delta is valid text and the deltas concatenate to the full response.
"""

from __future__ import annotations

import codecs


class IncrementalDetokenizer:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, piece: bytes) -> str:
        """Text completed by this token's bytes (possibly empty)."""
        return self._decoder.decode(piece)

    def flush(self) -> str:
        """Whatever is left at the end of the sequence (a broken tail becomes U+FFFD)."""
        return self._decoder.decode(b"", final=True)
