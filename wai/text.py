"""Incremental detokenization that never splits a UTF-8 character.

Byte-level vocabularies cut multi-byte characters (accents, emoji) across tokens. The decoder
holds the trailing bytes of an unfinished character until the token that completes it arrives,
so every streamed delta is valid text and the deltas concatenate to the full response.
"""

from __future__ import annotations

import codecs
import re


class IncrementalDetokenizer:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, piece: bytes) -> str:
        """Text completed by this token's bytes (possibly empty)."""
        return self._decoder.decode(piece)

    def flush(self) -> str:
        """The end of the sequence. Bytes still held are the start of a character that never
        came (generation stopped inside it): they are not text, so they are dropped rather
        than turned into U+FFFD. Invalid bytes earlier on were replaced as they arrived."""
        self._decoder.reset()
        return ""


class StopMatcher:
    """Applies stop strings to streamed text.

    Text that could be the start of a stop string is held back until it is known not to be
    one, so a client never sees part of a stop string. `push` returns what can be released;
    `stopped` turns true once a stop string has appeared (the text before it is released, the
    stop string and everything after it are dropped).
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buf = self._held + text
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return buf[:cut]
        keep = max((_overlap(buf, s) for s in self.stops), default=0)
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of stop."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


# a sentence ends at . ! ? (and their CJK forms) before whitespace; a line break ends one too
_BOUNDARY = re.compile(r"((?<=[.!?\u3002\uff01\uff1f])\s+|\s*\n\s*)")


def split_sentences(text: str) -> list[str]:
    """The text as sentences and the separators between them, alternating (even indices are
    sentences, possibly empty); joined, they are the text again. Shared by the text-to-text
    engine (what it translates one at a time) and the extractive stand-in."""
    return _BOUNDARY.split(text)
